"""`latxa model tiny|fetch|path|list|register`: the offline tiny Llama, backbones by Hugging Face name in HF_HOME
(fetched on a login node, resolved offline everywhere else), and registering a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Models: the offline tiny Llama, backbones by Hugging Face name (fetched into HF_HOME on a "
                        "login node, resolved offline by runs), registration of trained runs.", no_args_is_help=True)

    @group.command(
        "tiny",
        help="Build a random-init Llama-architecture model and a byte-level BPE tokenizer trained on the shipped "
        "Basque sample, with the Llama-3.1 chat template. No network needed; deterministic for a seed."
        + example("latxa model tiny --out /tmp/tiny --hidden-size 64 --layers 2"),
    )
    def tiny(
        out: Optional[Path] = typer.Option(None, "--out", help="Folder to write the Hugging Face model into "
                                           "(default: <state>/models/tiny, where every local run looks)."),
        vocab_size: int = typer.Option(2048, help="BPE vocabulary size (special tokens included)."),
        hidden_size: int = typer.Option(64),
        intermediate_size: int = typer.Option(128),
        layers: int = typer.Option(2, help="Number of decoder layers."),
        heads: int = typer.Option(4),
        kv_heads: int = typer.Option(2),
        seed: int = typer.Option(33),
    ) -> None:
        from latxa.components.tiny_model import TinySpec, build_tiny_model, count_parameters
        from latxa.errors import LatxaError

        if hidden_size % heads or heads % kv_heads:
            raise LatxaError(f"--hidden-size ({hidden_size}) must be divisible by --heads ({heads}), and --heads by --kv-heads ({kv_heads}).")
        spec = TinySpec(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads, seed=seed)
        from latxa.paths import tiny_model_dir

        path = build_tiny_model(out or tiny_model_dir(), spec)
        typer.echo(f"tiny model written to {path} ({count_parameters(path):,} parameters)")

    @group.command(
        "fetch",
        help="Download a model by Hugging Face name into HF_HOME (the hub cache every run resolves offline), on a "
        "machine with internet such as Leonardo's login node. A complete cached revision is not downloaded again. "
        "Refuses when HF_HUB_OFFLINE is set." + example(
            "HF_HOME=$WORK/latxa/hf latxa model fetch HiTZ/Latxa-Llama-3.1-8B-Instruct --revision exp_2_101"),
    )
    def fetch(
        name: str = typer.Argument(..., help="org/name, optionally name@revision."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
        include: Optional[list[str]] = typer.Option(None, "--include", help="File pattern to download (repeat; "
                                                    "default: configs, safetensors, tokenizer files)."),
        refresh: bool = typer.Option(False, "--refresh", help="Ask the hub again even if the revision is cached."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        import os

        from latxa.components.hub import fetch_model

        found = fetch_model(name, revision, include=tuple(include) if include else None, refresh=refresh,
                            token=os.environ.get("HF_TOKEN"))
        if fmt == OutputFormat.json:
            emit_json(found.as_dict())
        else:
            typer.echo(f"{found.ref} (commit {found.commit}) is in {found.path}")

    @group.command(
        "path",
        help="Print the local folder of a model folder or Hugging Face name, resolved offline from HF_HOME "
        "(what `latxa train --model` and `latxa data prepare --tokenizer` use)." + example(
            "latxa model path meta-llama/Llama-3.1-8B-Instruct"),
    )
    def path(
        name: str = typer.Argument(..., help="A folder, org/name or org/name@revision."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.hub import resolve_model

        found = resolve_model(name, revision)
        if fmt == OutputFormat.json:
            emit_json(found.as_dict())
        else:
            typer.echo(str(found.path))

    @group.command("list", help="List the models and revisions in HF_HOME's hub cache, and whether each is complete."
                   + example("latxa model list --format json"))
    def list_(fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.components.hub import cached_models, hub_cache_dir

        rows = cached_models()
        if fmt == OutputFormat.json:
            emit_json({"cache": str(hub_cache_dir()), "models": rows})
            return
        typer.echo(f"hub cache: {hub_cache_dir()}")
        for r in rows:
            typer.echo(f"  {r['name']}@{r['revision']}  {r['commit'][:12]}  {'complete' if r['complete'] else 'INCOMPLETE'}")

    @group.command(
        "register",
        help="Register a trained run's exported model in the MLflow Model Registry as latxa-<variant> "
        "(latxa-70b-<variant> for the 70B), with its evaluation means on the variant run." + example(
            "latxa model register --run $CINECA_SCRATCH/latxa/runs/exp_2_101 --model $WORK/latxa/models/exp_2_101"),
    )
    def register_(
        run: Path = typer.Option(..., "--run", help="The run folder (`latxa train --out`)."),
        model: Optional[Path] = typer.Option(None, "--model", help="The exported folder (default: RUN/model)."),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Default: the run's own."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.train.register import register_run

        info = register_run(run, model, tracking_uri=tracking_uri)
        if fmt == OutputFormat.json:
            emit_json(info)
        else:
            typer.echo(f"registered {info['registered_model']} version {info['version']} (MLflow run {info['run_id']} "
                       f"at {info['tracking_uri']})")

    app.add_typer(group, name="model")
