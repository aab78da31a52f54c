"""`latxa arena ...`: ratings, export, database migrations and a standalone arena server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


def _records_from_db(db: Optional[str]) -> list[dict]:
    from latxa.serving.arena.db import open_db, rated_votes

    _, sf = open_db(db)
    with sf() as s:
        return rated_votes(s)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The human-evaluation arena: ratings, dataset export, database, standalone server.",
                        no_args_is_help=True)

    @group.command(
        "ratings",
        help="Bradley-Terry ratings (ties count half) with bootstrap confidence intervals per dimension (overall, "
        "content, language) on the 400-point scale anchored at 1000, plus online Elo and win rates. Reads the "
        "arena database, or --votes FILE.jsonl in the published schema (model_a, model_b, winner, winner_content, "
        "winner_language). rank = 1 + number of models whose lower bound is above this model's upper bound."
        + example("latxa arena ratings --votes votes.jsonl --format json --bootstrap 1000 --seed 0 --plots out/"),
    )
    def ratings(
        votes: Optional[Path] = typer.Option(None, "--votes", help="Votes JSONL (default: the arena database)."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in the state folder)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
        bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap rounds for the confidence intervals."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
        ci: float = typer.Option(0.95, "--ci", help="Confidence level of the intervals (0.90 as in the paper)."),
        plots: Optional[Path] = typer.Option(None, "--plots", help="Write ratings.png and win_rate.png here."),
        extra: bool = typer.Option(False, "--extra", help="With --format json: also print Elo and win-rate matrices."),
    ) -> None:
        from latxa.errors import LatxaError
        from latxa.serving.ratings import compute_ratings, load_votes_jsonl, plot_ratings, votes_from_records

        if not 0 < ci < 1:
            raise LatxaError("--ci must be between 0 and 1, e.g. 0.95.")
        data = load_votes_jsonl(votes) if votes else votes_from_records(_records_from_db(db), "database")
        result = compute_ratings(data, bootstrap=bootstrap, seed=seed, ci=ci, progress=fmt == OutputFormat.table)
        if plots and len(data):
            for p in plot_ratings(result, plots):
                typer.echo(f"wrote {p}", err=True)
        if fmt == OutputFormat.json:
            out = {"ratings": result["ratings"], "votes": result["votes"]}
            if extra:
                out["extra"] = result["extra"]
            emit_json(out)
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"{result['votes']} votes, {len(result['models'])} models, {bootstrap} bootstrap rounds")
        for dim, rows in result["ratings"].items():
            table = Table("rank", "model", "rating", f"{int(ci * 100)}% CI", "elo", "battles", title=dim)
            elo = result["extra"].get(dim, {}).get("elo", {})
            for name, r in rows.items():
                table.add_row(str(r["rank"]), name, f"{r['rating']:.1f}", f"{r['ci_low']:.1f} - {r['ci_high']:.1f}",
                              f"{elo.get(name, 0):.1f}", str(r["battles"]))
            console.print(table)

    @group.command(
        "export",
        help="Write the arena's votes as a Hugging Face datasets dataset (Parquet) in the published Ebaluatoia "
        "schema with salted-hash participant ids: configs NAME and NAME-sanitized (flagged participants dropped, "
        "e-mails/URLs/phones masked), plus a dataset card." + example("latxa arena export --out exports/arena"),
    )
    def export(
        out: Path = typer.Option(..., "--out", help="Output folder."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in the state folder)."),
        name: Optional[str] = typer.Option(None, "--name", help="Config name (default: YY-MM of today)."),
        salt: Optional[str] = typer.Option(None, "--salt", envvar="LATXA_ARENA_EXPORT_SALT",
                                           help="Salt of the id hashes (default: one kept in the database)."),
    ) -> None:
        from latxa.serving.arena.db import open_db
        from latxa.serving.arena.export import export_rows, write_dataset

        _, sf = open_db(db)
        with sf() as s:
            full = export_rows(s, sanitized=False, salt=salt)
            clean = export_rows(s, sanitized=True, salt=salt)
        counts = write_dataset(full, clean, out, name or dt.date.today().strftime("%y-%m"))
        for config, n in counts.items():
            typer.echo(f"{out / config}: {n} votes")

    @group.command("migrate", help="Create or upgrade the arena database schema (Alembic)."
                   + example("latxa arena migrate --db postgresql+psycopg://arena@db/arena"))
    def migrate(db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in the state folder).")) -> None:
        from latxa.serving.arena.db import default_url, open_db

        engine, _ = open_db(db, migrate_schema=True)
        engine.dispose()
        typer.echo(f"database at head revision: {db or default_url()}")

    @group.command(
        "serve",
        help="Serve the arena API and the OpenAI routes in this process (uvicorn, in-process models, no Ray): "
        "for development and the UI's tests. `latxa serve` is the production path." + example("latxa arena serve --port 8010"),
    )
    def serve(
        config: Optional[Path] = typer.Option(None, "--config", help="Serving YAML."),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8010, "--port"),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (overrides the config)."),
        admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="LATXA_ARENA_ADMIN_TOKEN",
                                                  help="Token for the admin endpoints."),
        min_reading_seconds: Optional[float] = typer.Option(None, "--min-reading-seconds"),
    ) -> None:
        from latxa.serving.app import serve_standalone
        from latxa.serving.registry import load_serve_config

        cfg = load_serve_config(config)
        if db:
            cfg.arena.database_url = db
        if admin_token:
            cfg.arena.admin_token = admin_token
        if min_reading_seconds is not None:
            cfg.arena.min_reading_seconds = min_reading_seconds
        typer.echo(f"arena on http://{host}:{port}/api (models: {', '.join(m.name for m in cfg.models)})")
        serve_standalone(cfg, host, port)

    app.add_typer(group, name="arena")
