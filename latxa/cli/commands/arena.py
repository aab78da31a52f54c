"""`latxa arena ...`: ratings, export, database migrations and a standalone arena server."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


class Convention(str, Enum):
    latxa = "latxa"
    paper = "paper"


def _print_tables(result: dict, where: str, header: list[str], row) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{result['votes']} votes from {where}, {result['bootstrap']} bootstrap rounds")
    for dim, rows in result["ratings"].items():
        table = Table(*header, title=dim)
        for name, r in rows.items():
            table.add_row(*row(name, r, dim))
        console.print(table)
    pending = result.get("pending") or {}
    if pending:
        console.print("not enough battles yet: " + ", ".join(f"{m} ({p['needed']} more)" for m, p in pending.items()))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The human-evaluation arena: ratings, dataset export, database, standalone server.",
                        no_args_is_help=True)

    @group.command(
        "ratings",
        help="Bradley-Terry ratings per dimension (overall, content, language). --convention latxa (the default): "
        "the full-data maximum-likelihood fit (ties count half) on the 400-point scale anchored at 1000, bootstrap "
        "confidence intervals (--bootstrap, --ci), rank = 1 + models whose lower bound is above this model's upper "
        "bound, plus online Elo and win rates. --convention paper: the study notebook's procedure exactly (100 "
        "rounds, seed 42, score = mean of the bootstrap ratings as an integer, 90% interval +a/-b around the "
        "median, rank(method=max) on the score). Votes: the arena database (default, --db), or --votes SOURCE: a "
        "database URL, the published dataset (a folder with its card, .jsonl.gz, .parquet; --dataset-config) or "
        "a votes JSONL (model_a, model_b, winner, winner_content, winner_language)."
        + example("latxa arena ratings --votes ebaluatoia/ --convention paper --format json"),
    )
    def ratings(
        votes: Optional[str] = typer.Option(None, "--votes", help="Votes: a file, dataset folder or database URL "
                                            "(default: the arena database)."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in the state folder)."),
        dataset_config: Optional[str] = typer.Option(None, "--dataset-config",
                                                     help="Config of a published dataset folder (default: its default, "
                                                     "e.g. 25-03)."),
        convention: Convention = typer.Option(Convention.latxa, "--convention",
                                              help="latxa (ours) or paper (the study's notebook)."),
        fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
        bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap rounds (latxa: 1000; paper: 100)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap resampling (latxa: 0; paper: 42)."),
        ci: float = typer.Option(0.95, "--ci", help="Confidence level of the intervals (latxa convention)."),
        prior_sd: Optional[float] = typer.Option(None, "--prior-sd", help="A weak N(1000, sd^2) prior on the ratings, "
                                                 "in rating points (latxa convention; default: none, the plain MLE)."),
        min_battles: int = typer.Option(0, "--min-battles", help="List only models with at least this many battles."),
        plots: Optional[Path] = typer.Option(None, "--plots", help="Write ratings.png and win_rate.png here."),
        extra: bool = typer.Option(False, "--extra", help="With --format json: also print Elo and win-rate matrices."),
    ) -> None:
        from latxa.cli.commands._votes import load_records
        from latxa.components.arena.ratings import compute_ratings, plot_ratings, votes_from_records
        from latxa.errors import LatxaError

        if not 0 < ci < 1:
            raise LatxaError("--ci must be between 0 and 1, e.g. 0.95.")
        records, where = load_records(votes, db=db, config=dataset_config)
        if convention == Convention.paper:
            from latxa.components.arena.paper import ROUNDS, SEED, paper_ratings

            result = paper_ratings(records, bootstrap or ROUNDS, SEED if seed is None else seed,
                                   progress=fmt == OutputFormat.table)
            if fmt == OutputFormat.json:
                emit_json({"convention": "paper", "ratings": result["ratings"], "votes": result["votes"],
                           "bootstrap": result["bootstrap"], "seed": result["seed"]})
                return
            _print_tables(result, where, ["rank", "model", "rating", "90% CI", "battles"],
                          lambda name, r, _dim: [str(r["rank"]), name, str(r["rating"]), r["ci"], str(r["battles"])])
            return
        data = votes_from_records(records, where)
        result = compute_ratings(data, bootstrap=bootstrap or 1000, seed=0 if seed is None else seed, ci=ci,
                                 progress=fmt == OutputFormat.table, prior_sd=prior_sd, min_battles=min_battles)
        if plots and len(data):
            for p in plot_ratings(result, plots):
                typer.echo(f"wrote {p}", err=True)
        if fmt == OutputFormat.json:
            out = {"ratings": result["ratings"], "votes": result["votes"]}
            if min_battles:
                out["pending"] = result["pending"]
            if extra:
                out["extra"] = result["extra"]
            emit_json(out)
            return

        def row(name, r, dim):
            elo = result["extra"].get(dim, {}).get("elo", {})
            return [str(r["rank"]), name, f"{r['rating']:.1f}", f"{r['ci_low']:.1f} - {r['ci_high']:.1f}",
                    f"{elo.get(name, 0):.1f}", str(r["battles"])]

        _print_tables(result, where, ["rank", "model", "rating", f"{int(ci * 100)}% CI", "elo", "battles"], row)

    @group.command(
        "export",
        help="Write the arena's votes in the published Ebaluatoia dataset's exact format (HiTZ/ebaluatoia): "
        "data/NAME.jsonl.gz and data/NAME.sanitized.jsonl.gz (flagged participants dropped, e-mails/URLs/phones "
        "masked) with a dataset card naming the configs NAME and NAME-sanitized; ids are conversation UUIDs, "
        "usernames salted pseudonyms, timestamps naive local ISO (--timezone), conversations start with the "
        "system turn." + example("latxa arena export --out exports/arena --name 25-03 --timezone Europe/Madrid"),
    )
    def export(
        out: Path = typer.Option(..., "--out", help="Output folder."),
        db: Optional[str] = typer.Option(None, "--db", help="Database URL (default: SQLite in the state folder)."),
        name: Optional[str] = typer.Option(None, "--name", help="Config name (default: YY-MM of today)."),
        salt: Optional[str] = typer.Option(None, "--salt", envvar="LATXA_ARENA_EXPORT_SALT",
                                           help="Salt of the pseudonyms (default: one kept in the database)."),
        timezone: str = typer.Option("UTC", "--timezone", help="Time zone of the timestamps (the study: the "
                                     "server's local time, e.g. Europe/Madrid)."),
        config: Optional[Path] = typer.Option(None, "--config", help="Serving YAML: models' export_name values."),
    ) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from latxa.errors import LatxaError
        from latxa.serving.arena.db import open_db
        from latxa.serving.arena.export import export_rows, write_dataset

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise LatxaError(f"--timezone {timezone!r} is not a time zone name (e.g. UTC, Europe/Madrid).") from None
        names = {}
        if config:
            from latxa.serving.registry import load_serve_config

            names = {m.name: m.export_name for m in load_serve_config(config).models if m.export_name}
        _, sf = open_db(db)
        with sf() as s:
            full = export_rows(s, sanitized=False, salt=salt, timezone=timezone, export_names=names)
            clean = export_rows(s, sanitized=True, salt=salt, timezone=timezone, export_names=names)
        counts = write_dataset(full, clean, out, name or dt.date.today().strftime("%y-%m"))
        for cfg_name, n in counts.items():
            typer.echo(f"{out} (config {cfg_name}): {n} votes")

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
        protocol: Optional[str] = typer.Option(None, "--protocol", help="Arena protocol: latxa (ours, default) or "
                                               "ebaluatoia-2025 (the study's)."),
    ) -> None:
        from latxa.serving.app import serve_standalone
        from latxa.serving.registry import load_serve_config

        cfg = load_serve_config(config, protocol=protocol)
        if db:
            cfg.arena.database_url = db
        if admin_token:
            cfg.arena.admin_token = admin_token
        if min_reading_seconds is not None:
            cfg.arena.min_reading_seconds = min_reading_seconds
        typer.echo(f"arena on http://{host}:{port}/api (protocol {cfg.arena.protocol}; models: "
                   f"{', '.join(m.name for m in cfg.models)})")
        serve_standalone(cfg, host, port)

    app.add_typer(group, name="arena")
