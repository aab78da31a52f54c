"""`latxa study prepare|rehearse|submit`: the study's job chain on SLURM (prep -> train -> export -> eval -> register)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example

_PROFILE_HELP = "Cluster profile: leonardo-8b (the 17 8B variants), leonardo-70b (the 70B), leonardo, or a YAML file."


def _variants(values: list[str] | None, default: list[str]) -> list[str]:
    from latxa.components.registry import TRAINED_8B

    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    if out == ["trained"]:
        return list(TRAINED_8B)
    return out or default


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The study on a SLURM cluster: prepare a variant's data, rehearse the whole job chain in "
                        "minutes (here or on the debug QoS), submit the real runs.", no_args_is_help=True)

    @group.command(
        "prepare",
        help="Prepare everything a run reads, in one step (the chain's prep job): the variant's mixture into OUT/train, "
        "each held-out set of the data config into OUT/heldout/NAME (same tokenizer, forced chat template and seq_len), "
        "and the memory-mapped copies every rank opens." + example(
            "latxa study prepare --variant exp_2_101 --profile leonardo-8b --config production "
            "--tokenizer meta-llama/Llama-3.1-8B-Instruct --out $FAST/latxa/prepared/exp_2_101"),
    )
    def prepare(
        variant: str = typer.Option(..., "--variant", help="Variant code (70b-exp_2_101 or the profile for the 70B)."),
        out: Path = typer.Option(..., "--out", help="Folder for train/, heldout/ and study-data.json."),
        profile: str = typer.Option("local", "--profile", help="Study profile (seq_len, seed, model size)."),
        config: Optional[str] = typer.Option(None, "--config", help="Data config: production, production-70b, sample "
                                             "or a YAML file (default: the shipped sample)."),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Model folder or HF name[@revision] from HF_HOME."),
        smoke: bool = typer.Option(False, "--smoke", help="The study config's smoke overrides (short rows)."),
        no_heldout: bool = typer.Option(False, "--no-heldout", help="Skip the held-out sets."),
        num_proc: Optional[int] = typer.Option(None, "--num-proc", min=1, help="Tokenizer processes (default: CPUs)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.study_data import prepare_study_data

        info = prepare_study_data(variant, out, profile=profile, config=config, tokenizer=tokenizer, smoke=smoke,
                                  heldout=not no_heldout, num_proc=num_proc, progress=not quiet)
        if fmt == OutputFormat.json:
            emit_json(info)
            return
        t = info["train"]
        typer.echo(f"prepared {variant}: {t['path']} ({t['rows']} rows, {t['tokens']:,} tokens, "
                   f"{'cache hit' if t['cache_hit'] else 'built'})")
        for name, h in info["heldout"].items():
            typer.echo(f"  held-out {name}: {h['path']} ({h['examples']} examples in {h['rows']} rows)")

    @group.command(
        "rehearse",
        help="Run the real profile's whole job chain (prep -> train -> export -> eval -> register, afterok) in "
        "minutes: here on the local SLURM cluster (make slurm-up) with smoke overrides (1 node, no GPU, a few steps, "
        "stand-in models from --hf-home and data from --data-root under the production names), or on the cluster "
        "itself with --on-cluster (the profile's smoke settings: debug QoS, real models and data). Exit 1 if a job "
        "fails." + example("latxa study rehearse --profile leonardo-8b --hf-home /tmp/standin/hf --data-root /tmp/standin/data"),
    )
    def rehearse(
        profile: str = typer.Option("leonardo-8b", "--profile", "-p", help=_PROFILE_HELP),
        variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="Variant(s) to rehearse (repeat or "
                                                    "comma-separate: a sweep; default exp_2_101)."),
        on_cluster: bool = typer.Option(False, "--on-cluster", help="Submit to the profile's cluster (its smoke "
                                        "settings) instead of the local test cluster."),
        hf_home: Optional[Path] = typer.Option(None, "--hf-home", help="Local rehearsal: the HF_HOME with the backbones "
                                               "(default: $HF_HOME)."),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="Local rehearsal: the data root with the "
                                                 "production file names (default: $LATXA_DATA_ROOT)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Local rehearsal: where every job's state goes "
                                            "(default: <state>/rehearsals/PROFILE-TIME)."),
        eval_limit: int = typer.Option(2, "--eval-limit", min=1, help="Items per evaluation task."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Training steps (default: the smoke "
                                                "settings')."),
        timeout: float = typer.Option(3600, "--timeout", help="Give up after this many seconds."),
        array: bool = typer.Option(False, "--array", help="Train the variants as one job array (a sweep)."),
        max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="--array: tasks at once."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from rich.console import Console

        from latxa.slurm.rehearse import rehearse as run

        console = Console(stderr=True)
        t0 = time.monotonic()

        def show(name: str, state: str) -> None:
            console.print(f"[{time.monotonic() - t0:7.1f}s] {name}: {state}")

        res = run(profile, _variants(variant, []), on_cluster=on_cluster, root=root,
                  hf_home=str(hf_home) if hf_home else None, data_root=str(data_root) if data_root else None,
                  eval_limit=eval_limit, max_steps=max_steps, timeout=timeout, array=array, max_parallel=max_parallel,
                  on_update=show)
        if fmt == OutputFormat.json:
            emit_json(res.as_dict())
        else:
            typer.echo(f"rehearsal of {res.profile} ({res.mode}) {'passed' if res.ok else 'FAILED'} in {res.seconds:.0f} s")
            for r in res.runs:
                typer.echo(f"  {r['variant']}: {r['status']} from {r['model_name']}"
                           f"{'@' + r['model_revision'] if r['model_revision'] not in (None, 'main') else ''}; "
                           f"registered {r['registered_model']} v{r['model_version']}")
        if not res.ok:
            sys.exit(1)

    @group.command(
        "submit",
        help="Submit the study's chain for real on the profile's cluster: one prep job per mixture, the training "
        "(a job array over the variants, each on its own backbone), then export, evaluation and registration per "
        "variant, all linked by afterok. --dry-run prints the chain instead." + example(
            "latxa study submit --profile leonardo-8b --variant trained"),
    )
    def submit(
        profile: str = typer.Option("leonardo-8b", "--profile", "-p", help=_PROFILE_HELP),
        variant: Optional[List[str]] = typer.Option(None, "--variant", "-v", help="Variants, comma-separated, or "
                                                    "'trained' (the 17 of the study; the 70B profile: exp_2_101)."),
        data_config: Optional[str] = typer.Option(None, "--data-config", help="Default: the profile's data_configs."),
        eval_suite: str = typer.Option("paper", "--eval-suite", help="Evaluation suite (`latxa eval tasks`)."),
        array: bool = typer.Option(False, "--array", help="Train all variants as one job array (after every prep job) "
                                   "instead of one job per variant."),
        max_parallel: Optional[int] = typer.Option(None, "--max-parallel", help="--array: at most this many tasks at once."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the chain (jobs, dependencies, paths); submit nothing."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    ) -> None:
        from latxa.components.config import load_config
        from latxa.slurm.bridge import SlurmBridge
        from latxa.slurm.chain import build_chain, submit_chain
        from latxa.slurm.profiles import load_profile

        prof = load_profile(profile)
        size = load_config().resolve(prof.study_profile).target.model_size
        default = ["exp_2_101"] if size == "70b" else []
        codes = _variants(variant, default)
        if size == "70b" and variant and [v.strip() for v in variant] == ["trained"]:
            codes = ["exp_2_101"]
        if not codes:
            from latxa.errors import LatxaError

            raise LatxaError("Give --variant CODE[,CODE...] or --variant trained.")
        chain = build_chain(prof, codes, data_config=data_config, eval_suite=eval_suite, array=array,
                            max_parallel=max_parallel)
        if not dry_run:
            submit_chain(SlurmBridge(prof), chain)
        if fmt == OutputFormat.json:
            emit_json(chain.as_dict())
            return
        for j in chain.summary():
            after = f" after {', '.join(j['after'])}" if j["after"] else ""
            typer.echo(f"{j['step']:9s}{j['name']}{' = job ' + j['job_id'] if j['job_id'] else ''}{after}")

    app.add_typer(group, name="study")
