"""`latxa demo`: the main job on the embedded default (what `make demo` runs).

Builds the tiny offline model, starts the local MLflow server, runs the study's sweep pipeline with
kfp.local for a few contrasting variants on the shipped Basque sample, then prints the comparison
table and how to open MLflow.
"""

from __future__ import annotations

import time

import typer

from latxa.cli.commands._common import example

# Contrasting data mixtures on one backbone: Basque corpus + English instructions (the paper's recipe for
# the released model), Basque instructions only, and English instructions only.
DEMO_VARIANTS = "exp_2_101,exp_2_010,exp_2_001"


def register(app: typer.Typer) -> None:
    @app.command(
        "demo",
        help="Run the main job on the embedded default: build the tiny offline model, start the local MLflow server, "
        "run the study pipeline (kfp.local, local Ray Train, lm-eval eu-mini) for a few contrasting variants on the "
        "shipped Basque sample, and print the comparison table." + example("latxa demo --variants exp_2_101,exp_2_010"),
    )
    def demo(
        variants: str = typer.Option(DEMO_VARIANTS, "--variants", help="Comma-separated variant codes."),
        max_steps: int = typer.Option(20, "--max-steps", help="Training steps per variant."),
        eval_limit: int = typer.Option(10, "--eval-limit", help="Items per eu-mini task."),
        experiment: str = typer.Option("latxa-demo", "--experiment", help="MLflow experiment of the demo."),
        server: bool = typer.Option(True, "--server/--no-server", help="Start `latxa mlflow up` (else log to SQLite)."),
    ) -> None:
        from latxa.components import tracking
        from latxa.components.tiny_model import ensure_tiny_model
        from latxa.paths import state_dir, tiny_model_dir
        from latxa.pipelines import compare as cmp
        from latxa.pipelines import mlflow_server
        from latxa.pipelines.runner import parse_variants, run_local

        t0 = time.time()
        codes = parse_variants(variants)
        path = ensure_tiny_model(tiny_model_dir())
        typer.echo(f"[demo] tiny model ready at {path}")
        uri = None
        if server:
            info = mlflow_server.up()
            uri = info.uri
            typer.echo(f"[demo] MLflow tracking server at {uri}")
        typer.echo(f"[demo] running the {'study' if len(codes) == 1 else 'sweep'} pipeline with kfp.local for "
                   f"{', '.join(codes)} ({max_steps} training steps each, eu-mini limit {eval_limit})")
        res = run_local(codes, profile="local", experiment=experiment, tracking_uri=uri, max_steps=max_steps,
                        eval_limit=eval_limit)
        rows = [r for r in cmp.collect(experiment, res.tracking_uri) if r["variant"] in codes]
        typer.echo("")
        cmp.print_table(rows, title=f"Latxa-Instruct demo: MLflow experiment '{experiment}'")
        plot = cmp.plot(rows, state_dir() / "compare" / f"{experiment}.png")
        typer.echo(f"\n[demo] finished in {time.time() - t0:.0f} s; plot: {plot}")
        links = cmp.mlflow_links(experiment, res.tracking_uri)
        if links:
            typer.echo(f"[demo] MLflow, the variants side by side: {links[0]}")
            typer.echo(f"[demo] MLflow, loss curves and scores across variants: {links[1]}")
            typer.echo("[demo] registered models: latxa-<code> under Models; `latxa mlflow down` stops the server, "
                       "`latxa mlflow up` starts it again.")
        else:
            typer.echo(f"[demo] runs are in {tracking.default_tracking_uri()}: `latxa mlflow up` serves them at "
                       "http://127.0.0.1:5000")
        typer.echo("[demo] compare again any time: latxa compare")
