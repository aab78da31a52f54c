"""`latxa data prepare|show`: per-variant data preparation (mixture, chat template, masks, packing, cache)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import emit_json, example


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Training data: mix a variant's sources, apply the chat template with loss masks, "
                             "tokenize in parallel and pack into Parquet shards.", no_args_is_help=True)

    @group.command(
        "prepare",
        help="Prepare the packed training data of one variant: Basque corpus if C_EU=1, Basque instructions if "
        "I_EU=1, English if I_EN=1; loss on assistant turns only. Writes DIR/shards/*.parquet, DIR/stats.json and "
        "DIR/manifest.json. A second run with the same inputs is a cache hit and does no work."
        + example("latxa data prepare --variant exp_2_101 --out /tmp/exp_2_101"),
    )
    def prepare_cmd(
        variant: str = typer.Option(..., "--variant", help="Variant code, e.g. exp_2_101."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <state>/data/<variant>). "
                                           "Replaced only if it holds a dataset this tool wrote and nothing else; "
                                           "any other folder or file is refused and left as it is."),
        config: Optional[Path] = typer.Option(None, "--config", help="Data-source YAML (default: the shipped sample, "
                                              "components/configs/data/sample.yaml)."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Model/tokenizer folder or cached HF name "
                                                "(default: the tiny offline model)."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Row length (default: the study profile's)."),
        profile: str = typer.Option("local", "--profile", help="Study profile for seq_len, seed and train_on."),
        study_config: Optional[Path] = typer.Option(None, "--study-config", help="Study YAML (default: shipped)."),
        chat_template: Optional[Path] = typer.Option(None, "--chat-template", help="Jinja chat template overriding "
                                                     "the tokenizer's."),
        on_error: OnError = typer.Option(OnError.fail, "--on-error", help="fail: stop at the first bad record "
                                         "(file:line); skip: skip and record it in stats.json."),
        num_proc: Optional[int] = typer.Option(None, "--num-proc", min=1, help="Tokenizer processes (default: CPUs)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not use or fill the shared cache in the state "
                                      "folder (a matching --out is still reused)."),
        shard_rows: Optional[int] = typer.Option(None, "--shard-rows", min=1, help="Rows per Parquet shard."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        from latxa.components.data import prepare
        from latxa.paths import state_dir

        res = prepare(variant, out or state_dir() / "data" / variant, config=config, tokenizer=tokenizer, seq_len=seq_len, profile=profile,
                      study_config=study_config, chat_template=chat_template, on_error=on_error.value,
                      num_proc=num_proc, use_cache=not no_cache, shard_rows=shard_rows, progress=not quiet)
        s = res.stats
        status = "cache hit" if res.cache_hit else "prepared"
        typer.echo(
            f"{status}: {res.out_dir} ({s['rows']} rows x {s['seq_len']}, {s['tokens']:,} tokens, "
            f"{s['trainable_tokens']:,} trainable, packing {s['packing_efficiency']:.4f}; read {s['read']} = written "
            f"{s['written']} + skipped {s['skipped']}; cache key {res.cache_key})"
        )

    @group.command("show", help="Print a prepared dataset's stats.json (and manifest) as JSON."
                   + example("latxa data show /tmp/exp_2_101"))
    def show(path: Path = typer.Argument(..., help="A folder written by `latxa data prepare`.")) -> None:
        from latxa.components.data.load import read_manifest, read_stats

        emit_json({"manifest": read_manifest(path), "stats": read_stats(path)})

    @group.command(
        "clean",
        help="Write the '-cleaned' copy of Magpie instruction files the reference's 8B configs name: drops the "
        "conversations whose conversation_id starts with translation_ (the reference README's advice) and normalises "
        "roles to user/assistant. Prints read = written + dropped." + example(
            "latxa data clean Magpie-Llama-3.1-8B-Instruct-Filtered-1M.jsonl "
            "--out $WORK/latxa/datasets/InstructDatasets/Magpie-Llama-3.1-8B-Instruct-Filtered-1M-cleaned.jsonl"),
    )
    def clean(
        inputs: list[Path] = typer.Argument(..., help="JSONL or Parquet files (the HF dataset's export)."),
        out: Path = typer.Option(..., "--out", help="The cleaned JSONL file."),
        drop_prefix: Optional[list[str]] = typer.Option(None, "--drop-id-prefix", help="conversation_id prefixes "
                                                        "to drop (default: translation_)."),
    ) -> None:
        from latxa.components.data.reference_sets import clean_instructions

        c = clean_instructions(list(inputs), out, drop_id_prefixes=tuple(drop_prefix or ["translation_"]))
        typer.echo(f"{out}: read {c['read']} = written {c['written']} + dropped {c['dropped']} {c['reasons']}")

    @group.command(
        "heldout",
        help="Build a held-out set of the reference from local copies of its source: 'aya' (CohereForAI/aya_dataset "
        "train+test, Basque) -> AYA.jsonl, or 'magpie-ultra' (argilla/magpie-ultra-v0.1, deduplicated, seed-33 "
        "sample of 1000) -> Magpie-Ultra-1K.jsonl." + example(
            "latxa data heldout aya aya_train.parquet aya_test.parquet --out $WORK/latxa/datasets/InstructDatasets/AYA.jsonl"),
    )
    def heldout(
        which: str = typer.Argument(..., help="aya or magpie-ultra"),
        inputs: list[Path] = typer.Argument(..., help="JSONL or Parquet files of the source dataset."),
        out: Path = typer.Option(..., "--out", help="The JSONL file to write."),
    ) -> None:
        from latxa.components.data.reference_sets import build_aya, build_magpie_ultra
        from latxa.components.data.sources import DataError

        builders = {"aya": build_aya, "magpie-ultra": build_magpie_ultra}
        if which not in builders:
            raise DataError(f"Unknown held-out set '{which}' (known: aya, magpie-ultra).")
        c = builders[which](list(inputs), out)
        typer.echo(f"{out}: read {c['read']} = written {c['written']} + dropped {c['dropped']} {c['reasons']}")

    app.add_typer(group, name="data")
