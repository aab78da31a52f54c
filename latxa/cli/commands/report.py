"""`latxa report`: the paper's arena analysis (tables, figures, tests, index.html) from votes and benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import example


def register(app: typer.Typer) -> None:
    @app.command(
        "report",
        help="Write the paper's arena analysis to one folder: the arena table (LaTeX + Markdown: ranks, scores, 90% "
        "intervals and rank changes per dimension), win-rate and battle-count heatmaps, the participants figure, "
        "the research questions (ratings grouped by Basque corpus, instruction languages, Basque instructions, "
        "English instructions and backbone, with interval-overlap tests and bar charts), the language trade-off, "
        "the arena-benchmark Spearman table and heatmap, report.json and an index.html showing them all. Ratings "
        "use the paper's convention (100 rounds, seed 42). --votes: a database URL, the published dataset (a "
        "folder with its card, .jsonl.gz, .parquet; --dataset-config picks the config, default the card's "
        "default), an export of `latxa arena export`, or a votes JSONL; default: the arena database. --results: "
        "lm-eval results, one folder per model (the study's layout); without it the benchmark parts are skipped."
        + example("latxa report --votes ebaluatoia/ --results ../shared/data/latxa_instruct/evaluation/benchmarks/"
                  "results --out report/"),
    )
    def report(
        out: Path = typer.Option(..., "--out", help="Output folder (created)."),
        votes: Optional[str] = typer.Option(None, "--votes", help="Votes source (default: the arena database)."),
        results: Optional[Path] = typer.Option(None, "--results", help="Benchmark results folder (lm-eval JSON)."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL when --votes is not given."),
        dataset_config: Optional[str] = typer.Option(None, "--dataset-config",
                                                     help="Config of a published dataset (e.g. 25-03-sanitized)."),
        rounds: int = typer.Option(100, "--bootstrap", help="Bootstrap rounds (the paper: 100)."),
        seed: int = typer.Option(42, "--seed", help="Seed (the paper: 42)."),
    ) -> None:
        from latxa.cli.commands._votes import load_records
        from latxa.components.arena.report import build_report
        from latxa.errors import LatxaError

        if rounds < 1:
            raise LatxaError("--bootstrap must be at least 1 round.")
        records, where = load_records(votes, db=db, config=dataset_config, full_rows=True)
        doc = build_report(records, out, results=results, rounds=rounds, seed=seed, progress=True, source=where)
        for a in doc["artefacts"]:
            typer.echo(f"wrote {', '.join(str(out / f) for f in a['files'])}")
        for s in doc["skipped"]:
            typer.echo(f"skipped {s['name']}: {s['why']}", err=True)
        typer.echo(f"index: {out / 'index.html'}")
