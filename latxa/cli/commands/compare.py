"""`latxa compare`: the study's variants side by side, from MLflow (+ a plot)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import example


class CompareFormat(str, Enum):
    table = "table"
    json = "json"
    md = "md"


def register(app: typer.Typer) -> None:
    @app.command("compare", help="Print the variants of an MLflow experiment side by side (benchmark means per language, "
                 "final loss, tokens seen), write a PNG plot (default: <state>/compare/<experiment>.png) and print the "
                 "experiment's study view in the MLflow UI. With no --experiment: the experiment of the last run on "
                 "this machine (`latxa demo`, `latxa pipeline run`, training, evaluation)."
                 + example("latxa compare --experiment latxa-instruct --format md --plot compare.png"))
    def compare(experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (one per study). "
                                                         "Default: the last run's, else latxa-instruct."),
                fmt: CompareFormat = typer.Option(CompareFormat.table, "--format", help="table, json or md"),
                tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Default: MLFLOW_TRACKING_URI, the "
                                                           "last run's store if it answers, the running `latxa mlflow up` "
                                                           "server, else the local SQLite store."),
                plot: Optional[Path] = typer.Option(None, "--plot", help="PNG path for the plot."),
                no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the plot.")) -> None:
        from latxa.components import tracking
        from latxa.paths import state_dir
        from latxa.pipelines import compare as cmp

        why = ""
        if experiment is None:
            experiment, tracking_uri, why = cmp.default_experiment(tracking_uri)
        uri = tracking.resolve_tracking_uri(tracking_uri)
        rows = cmp.collect(experiment, uri, why=why)
        if fmt == CompareFormat.json:
            typer.echo(cmp.to_json(rows))
        elif fmt == CompareFormat.md:
            typer.echo(cmp.to_markdown(rows), nl=False)
        else:
            cmp.print_table(rows, title=f"MLflow experiment '{experiment}'")
        notes = []
        if not no_plot:
            notes.append(f"plot: {cmp.plot(rows, plot or state_dir() / 'compare' / f'{experiment}.png')}")
        tracking.refresh_study_view(experiment, uri)
        links = cmp.mlflow_links(experiment, uri)
        if links:
            notes.append(f"MLflow runs table: {links[0]}\nMLflow charts (loss curves, scores): {links[1]}")
        for note in notes:  # on stderr with --format json, so stdout stays one JSON document
            typer.echo(note, err=fmt == CompareFormat.json)
