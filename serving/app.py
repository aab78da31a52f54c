"""One ASGI app: the OpenAI-compatible routes (/v1) and the arena API (/api), over any model backends."""

from __future__ import annotations

import random

from fastapi import FastAPI

from latxa.serving.registry import ServeConfig


def build_app(cfg: ServeConfig, backends, rng: random.Random | None = None) -> FastAPI:
    from latxa.serving.arena.app import create_arena_app
    from latxa.serving.arena.db import open_db
    from latxa.serving.arena.protocol import load_protocol
    from latxa.serving.openai_api import add_openai_routes

    app = FastAPI(title="Latxa serving: OpenAI-compatible models and the arena API", version="1",
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None)
    # /v1 lists and names the models; a protocol that never reveals them keeps it off unless the config asks
    if cfg.openai_api or (cfg.openai_api is None and load_protocol(cfg.arena.protocol).reveal):
        add_openai_routes(app, backends)
    _, session_factory = open_db(cfg.arena.database_url, migrate_schema=True)  # the server's start migrates
    create_arena_app(cfg.arena, session_factory, backends, rng=rng, app=app)
    return app


def serve_standalone(cfg: ServeConfig, host: str | None = None, port: int | None = None) -> None:
    """Serve with uvicorn in this process and in-process models (no Ray): the arena's light mode."""
    import uvicorn

    from latxa.serving.generation import LocalBackends

    app = build_app(cfg, LocalBackends(cfg.models))
    uvicorn.run(app, host=host or cfg.host, port=cfg.port if port is None else port, log_level="warning",
                timeout_graceful_shutdown=5)
