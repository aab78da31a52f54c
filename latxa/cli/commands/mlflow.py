"""`latxa mlflow up|down|status|sync`: the local MLflow tracking server (embedded default)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from latxa.cli.commands._common import OutputFormat, emit_json, example


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The MLflow tracking server: SQLite + local artifacts under the state folder on 127.0.0.1.",
                        no_args_is_help=True)

    @group.command("up", help="Start `mlflow server` on 127.0.0.1 (detached) and wait until it answers; prints its URI. "
                   "Port 5000 when free, else a free one (--port 0 always picks a free one)." + example("latxa mlflow up --port 5000"))
    def up(port: Optional[int] = typer.Option(None, "--port", help="TCP port (0: any free port)."),
           timeout: float = typer.Option(180, help="Seconds to wait for /health."),
           fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.pipelines import mlflow_server

        info = mlflow_server.up(port=port, timeout=timeout)
        if fmt == OutputFormat.json:
            emit_json({"running": True, **info.as_dict()})
        else:
            typer.echo(f"MLflow tracking server running at {info.uri} (pid {info.pid}; backend {info.backend_store_uri}; "
                       f"artifacts {info.artifact_root}).\nOpen {info.uri} in a browser; `latxa mlflow down` stops it.")

    @group.command("down", help="Stop the server started by `latxa mlflow up`." + example("latxa mlflow down"))
    def down() -> None:
        from latxa.pipelines import mlflow_server

        info = mlflow_server.down()
        typer.echo(f"stopped the tracking server at {info.uri}" if info else "no tracking server was running")

    @group.command("status", help="Is the local server running, and does it answer? Exit 1 when it is not running."
                   + example("latxa mlflow status --format json"))
    def status(fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.components import tracking
        from latxa.pipelines import mlflow_server

        info = mlflow_server.status()
        healthy = bool(info and tracking.server_healthy(info.uri))
        if fmt == OutputFormat.json:
            emit_json({"running": info is not None, "healthy": healthy, **(info.as_dict() if info else {}),
                       "tracking_uri": tracking.resolve_tracking_uri()})
        elif info is None:
            typer.echo(f"no tracking server running (runs log to {tracking.resolve_tracking_uri()})")
        else:
            typer.echo(f"{info.uri} pid {info.pid} {'healthy' if healthy else 'NOT answering'}")
        if info is None:
            sys.exit(1)

    @group.command("sync", help="Push metrics buffered locally while the tracking server was unreachable; with --from, "
                   "copy an MLflow file store (what Leonardo's jobs log to) into the tracking server: runs, metric "
                   "histories, artifacts, nesting and registered model versions, only what is new."
                   + example("latxa mlflow sync --from file:$WORK/latxa/mlruns --tracking-uri http://mlflow.example.org"))
    def sync(tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
             source: Optional[str] = typer.Option(None, "--from", help="A file store to copy from (file:/path/mlruns)."),
             no_artifacts: bool = typer.Option(False, "--no-artifacts", help="--from: copy runs without their artifacts."),
             fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        from latxa.components import tracking

        uri = tracking.check_reachable(tracking_uri)
        if source:
            from latxa.components.tracking_sync import sync_store

            report = sync_store(source, uri, artifacts=not no_artifacts,
                                progress=None if fmt == OutputFormat.json else (lambda m: typer.echo(f"copied {m}", err=True)))
            if fmt == OutputFormat.json:
                emit_json(report.as_dict())
            else:
                typer.echo(f"{source} -> {uri}: {report.runs_copied} run(s) copied ({report.metrics} metric values), "
                           f"{report.runs_skipped} already there; {report.versions_copied} model version(s) copied, "
                           f"{report.versions_skipped} already there")
            return
        sent = tracking.sync_buffers(uri)
        left = sorted(p.stem for p in tracking.buffer_dir().glob("*.jsonl"))
        for run_id, n in sent.items():
            typer.echo(f"run {run_id}: synced {n} buffered records")
        if left:
            typer.echo(f"still buffered (server did not take them): {', '.join(left)}")
            sys.exit(1)
        if not sent:
            typer.echo("nothing buffered")

    @group.command("command", help="Print the production `mlflow server` command (PostgreSQL + S3, proxied artifacts) "
                   "for an env file; ${VARS} come from the environment. Secrets print as ***."
                   + example("latxa mlflow command --env-file production.env    # your copy of mlflow/production.env.example"))
    def command(env_file: str = typer.Option(..., "--env-file", help="KEY=VALUE file, see mlflow/production.env.example."),
                fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json")) -> None:
        import shlex

        from latxa.pipelines.mlflow_server import production_command

        cmd, env = production_command(env_file)
        masked = {k: ("***" if "SECRET" in k or "KEY_ID" in k else v) for k, v in env.items()}

        def hide(arg: str) -> str:  # a password inside the database URI
            import re

            return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", arg)

        shown = [hide(a) for a in cmd]
        if fmt == OutputFormat.json:
            emit_json({"command": shown, "env": masked})
        else:
            typer.echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in masked.items()) + (" " if masked else "")
                       + " ".join(shlex.quote(a) for a in shown))

    app.add_typer(group, name="mlflow")
