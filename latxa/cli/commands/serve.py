"""`latxa serve`: Ray Serve with the arena models (OpenAI-compatible /v1) and the arena API (/api)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import example


def register(app: typer.Typer) -> None:
    @app.command(
        "serve",
        help="Start Ray Serve on 127.0.0.1 with one deployment per arena model and a gateway that answers the "
        "OpenAI API (/v1/models, /v1/chat/completions, streamed or not) and the arena API (/api, see "
        "docs/arena-api.md). Without --config the models are three seeds of the offline tiny model plus exported "
        "models under <state>/exports. Completions need an API key: the server accepts the comma-separated keys "
        "in $LATXA_API_KEYS (none set: /v1/chat/completions refuses every request). Stops cleanly on Ctrl-C or "
        "SIGTERM." + example("LATXA_API_KEYS=sk-mine latxa serve --port 8000    # or: latxa serve --config my-arena.yaml"),
    )
    def serve(
        config: Optional[Path] = typer.Option(None, "--config", help="Serving YAML (models, generation settings, arena)."),
        host: Optional[str] = typer.Option(None, "--host", help="Bind address (default from the config: 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, "--port", help="HTTP port (default from the config: 8000; 0 not allowed)."),
        no_ray: bool = typer.Option(False, "--no-ray", help="Serve in this process with uvicorn instead of Ray Serve."),
        num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs for the local Ray cluster (default: up to 2)."),
    ) -> None:
        from latxa.errors import LatxaError
        from latxa.serving.registry import load_serve_config

        cfg = load_serve_config(config)
        host = host or cfg.host
        port = cfg.port if port is None else port
        if len(cfg.arena_models()) < 2:
            raise LatxaError("the arena needs at least two models with arena: true in the serving config.")
        names = ", ".join(m.name for m in cfg.models)
        if no_ray:
            from latxa.serving.app import serve_standalone

            typer.echo(f"serving on http://{host}:{port} (models: {names}; no Ray)")
            serve_standalone(cfg, host, port)
            return
        import signal
        import threading

        from latxa.serving import ray_app

        done = threading.Event()
        try:
            ray_app.start(cfg, host, port, num_cpus)
            # after ray.init, which installs its own C++ SIGTERM handler
            signal.signal(signal.SIGTERM, lambda *_: done.set())
            signal.signal(signal.SIGINT, lambda *_: done.set())
            typer.echo(f"serving on http://{host}:{port} (models: {names})", err=False)
            import sys

            sys.stdout.flush()
            done.wait()
        finally:
            typer.echo("shutting down Ray Serve")
            ray_app.stop()
