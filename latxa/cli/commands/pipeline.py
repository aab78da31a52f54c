"""`latxa pipeline compile|run|submit`: the study as Kubeflow Pipelines (KFP v2)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


class DescribeFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The study pipelines (KFP v2): compile IR YAML, describe their run form, run locally with "
                        "kfp.local, submit to KFP.",
                        no_args_is_help=True)

    @group.command("compile", help="Write the IR YAML of each pipeline (study, study-slurm, sweep, sweep-slurm) into OUT, "
                   "ready to upload in the KFP UI. --image sets the default container image of every step."
                   + example("latxa pipeline compile --out build/pipelines --image registry.example.org/latxa:0.1.0"))
    def compile_(out: Optional[Path] = typer.Option(None, "--out", help="Folder for the YAML files (default: <state>/pipelines)."),
                 image: Optional[str] = typer.Option(None, "--image", help="Container image of the components."),
                 only: Optional[str] = typer.Option(None, "--only", help="Comma-separated subset: study,sweep,..."),
                 fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.paths import state_dir
        from latxa.pipelines.runner import compile_all

        names = [n.strip() for n in only.split(",") if n.strip()] if only else None
        written = compile_all(out or state_dir() / "pipelines", image=image, names=names)
        if fmt == OutputFormat.json:
            emit_json({k: str(v) for k, v in written.items()})
        else:
            for name, path in written.items():
                typer.echo(f"{name}: {path}")

    @group.command("describe", help="Show a pipeline's run form as the KFP dashboard will present it after upload: each "
                   "parameter's field label (name - type), its prefilled value, whether it is required, and its "
                   "description from the compiled IR (the dashboard itself does not display the descriptions)."
                   + example("latxa pipeline describe sweep --format md"))
    def describe(name: str = typer.Argument("study", help="study, study-slurm, sweep or sweep-slurm."),
                 image: Optional[str] = typer.Option(None, "--image", help="Container image of the components."),
                 fmt: DescribeFormat = typer.Option(DescribeFormat.table, "--format", help="table, md or json")) -> None:
        from latxa.pipelines.runner import describe as do_describe

        form = do_describe(name, image=image)
        if fmt == DescribeFormat.json:
            emit_json(form)
            return
        required = lambda p: "optional" if p["optional"] else "required"  # noqa: E731
        if fmt == DescribeFormat.md:
            summary = " ".join(form["description"].split())
            lines = [f"**{form['pipeline']}**: {summary}", "",
                     "| field (KFP run form) | prefilled | | description |", "|---|---|---|---|"]
            lines += [f"| `{p['label']}` | {('`' + p['prefilled'] + '`') if p['prefilled'] else '(empty)'} | "
                      f"{required(p)} | {p['description']} |" for p in form["parameters"]]
            typer.echo("\n".join(lines))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("field (KFP run form)", "prefilled", "", "description",
                      title=f"{form['pipeline']}: {form['description'].splitlines()[0] if form['description'] else ''}")
        for p in form["parameters"]:
            table.add_row(p["label"], p["prefilled"] or "(empty)", required(p), p["description"])
        Console(width=160).print(table)

    @group.command("run", help="Run the pipeline on this machine with kfp.local (SubprocessRunner, no containers): "
                   "tiny model, shipped sample data, local Ray, the MLflow store of `latxa mlflow status`. One variant "
                   "runs the study pipeline, several the sweep pipeline (ParallelFor). Prints one line per variant. "
                   "For a KFP cluster use `latxa pipeline submit`."
                   + example("latxa pipeline run --variants exp_2_101,exp_2_100 --max-steps 20"))
    def run(variants: str = typer.Option("exp_2_101", "--variants", help="Comma-separated codes, or 'trained'."),
            profile: str = typer.Option("local", "--profile", help="Study profile (GPU profiles go through `submit`)."),
            experiment: str = typer.Option("latxa-instruct", "--experiment", help="MLflow experiment (one per study)."),
            tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Default: MLFLOW_TRACKING_URI, the "
                                                       "running `latxa mlflow up` server, else SQLite under the state folder."),
            model: Optional[str] = typer.Option(None, "--model", help="Base model folder (default: the tiny offline model)."),
            max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Cap training steps (default: the profile's epochs)."),
            seq_len: Optional[int] = typer.Option(None, "--seq-len", min=1, help="Packed row length (default: the profile's)."),
            eval_suite: str = typer.Option("eu-mini", "--eval-suite"),
            eval_limit: Optional[int] = typer.Option(None, "--eval-limit", min=1, help="Items per eval task (default: all)."),
            cluster: Optional[str] = typer.Option(None, "--cluster", help="Train through the SLURM bridge on this cluster "
                                                  "profile (e.g. local: the single-node test cluster of `make slurm-up`)."),
            fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.pipelines.runner import parse_variants, run_local

        res = run_local(parse_variants(variants), profile=profile, experiment=experiment, tracking_uri=tracking_uri,
                        base_model=model, max_steps=max_steps, seq_len=seq_len, eval_suite=eval_suite,
                        eval_limit=eval_limit, cluster=cluster)
        if fmt == OutputFormat.json:  # one line, last on stdout (the steps' logs come before it)
            import json

            typer.echo(json.dumps(res.__dict__, default=str, ensure_ascii=False))
            return
        typer.echo(f"{res.pipeline} pipeline finished in {res.seconds:.0f} s; MLflow {res.tracking_uri}, experiment '{res.experiment}':")
        for r in res.runs:
            typer.echo(f"  {r['variant']}: run {r['run_id']} {r['status']} final_loss={r['metrics'].get('final_loss', float('nan')):.4f} "
                       f"kfp.task={r['tags'].get('kfp.task', '?')}")
        missing = sorted(set(res.variants) - {r["variant"] for r in res.runs})
        if missing:
            typer.secho(f"no MLflow run found for: {', '.join(missing)}", fg="red", err=True)
            sys.exit(1)

    @group.command("submit", help="Upload the pipeline to a KFP endpoint (a new version when it exists) and start a run "
                   "through kfp.Client. GPU profiles (leonardo-8b, ...) or --cluster use the SLURM-bridge pipeline."
                   + example("latxa pipeline submit --host http://kfp.example.org --variants trained --profile leonardo-8b "
                             "--tracking-uri http://mlflow.mlops:5000 --image registry.example.org/latxa:0.1.0"))
    def submit(host: str = typer.Option(..., "--host", help="KFP API endpoint, e.g. http://localhost:8080."),
               variants: str = typer.Option("exp_2_101", "--variants", help="Comma-separated codes, or 'trained'."),
               profile: str = typer.Option("local", "--profile"),
               cluster: Optional[str] = typer.Option(None, "--cluster", help="SLURM cluster profile (default for GPU profiles: leonardo)."),
               image: Optional[str] = typer.Option(None, "--image", help="Container image of the components."),
               experiment: str = typer.Option("latxa-instruct", "--experiment"),
               tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow URI as seen from the cluster's pods."),
               max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Cap training steps."),
               eval_suite: str = typer.Option("eu-mini", "--eval-suite"),
               namespace: Optional[str] = typer.Option(None, "--namespace", help="KFP multi-user namespace."),
               wait: Optional[float] = typer.Option(None, "--wait", min=1, help="Seconds to wait for the run to finish (default: do not wait)."),
               fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.pipelines.runner import parse_variants
        from latxa.pipelines.runner import submit as do_submit

        res = do_submit(host, parse_variants(variants), profile=profile, cluster=cluster, image=image, experiment=experiment,
                        tracking_uri=tracking_uri, max_steps=max_steps, eval_suite=eval_suite, namespace=namespace, wait=wait)
        if fmt == OutputFormat.json:
            emit_json(res)
        else:
            typer.echo(f"submitted {res['pipeline']} run {res['run_id']} (pipeline {res['pipeline_id']}, version "
                       f"{res['version_id']}); follow it at {res['url']}")

    app.add_typer(group, name="pipeline")
