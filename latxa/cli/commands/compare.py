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
                 "final loss, tokens seen) and write a PNG plot (default: <state>/compare/<experiment>.png)."
                 + example("latxa compare --experiment latxa-instruct --format md --plot compare.png"))
    def compare(experiment: str = typer.Option("latxa-instruct", "--experiment", help="MLflow experiment (one per study)."),
                fmt: CompareFormat = typer.Option(CompareFormat.table, "--format", help="table, json or md"),
                tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Default: MLFLOW_TRACKING_URI, the "
                                                           "running `latxa mlflow up` server, else the local SQLite store."),
                plot: Optional[Path] = typer.Option(None, "--plot", help="PNG path for the plot."),
                no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the plot.")) -> None:
        from latxa.paths import state_dir
        from latxa.pipelines import compare as cmp

        rows = cmp.collect(experiment, tracking_uri)
        if fmt == CompareFormat.json:
            typer.echo(cmp.to_json(rows))
        elif fmt == CompareFormat.md:
            typer.echo(cmp.to_markdown(rows), nl=False)
        else:
            cmp.print_table(rows, title=f"MLflow experiment '{experiment}'")
        if not no_plot:
            path = cmp.plot(rows, plot or state_dir() / "compare" / f"{experiment}.png")
            typer.echo(f"plot: {path}", err=fmt == CompareFormat.json)
