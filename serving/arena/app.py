"""The arena API (FastAPI): participants, anonymous battles, the three-question vote, reveal, ratings, admin.

The contract is docs/arena-api.md. The routes live in one router per resource (``latxa.serving.arena.routes``:
participants/sessions, battles/messages, votes, leaderboard/config, admin); they reach the shared state
(:class:`~latxa.serving.arena.core.Arena`) through ``app.state.arena``. Model backends are injected as a
:class:`~latxa.serving.arena.backends.Backends`, so the same app runs standalone with in-process models, or inside
the Ray Serve gateway with deployment handles.
"""

from __future__ import annotations

import random

from fastapi import FastAPI

from latxa.serving.arena.backends import Backends
from latxa.serving.arena.core import ApiError, Arena, _token_hash, install_error_handlers
from latxa.serving.arena.routes import admin, battles, leaderboard, participants, votes
from latxa.serving.registry import ArenaSettings

__all__ = ["ApiError", "Arena", "ROUTERS", "_token_hash", "create_arena_app", "install_error_handlers"]

# Mount order is the OpenAPI document's order.
ROUTERS = (leaderboard.router, participants.router, battles.router, votes.router, admin.router)


def create_arena_app(settings: ArenaSettings, session_factory, backends: Backends,
                     rng: random.Random | None = None, app: FastAPI | None = None) -> FastAPI:
    """Build the arena FastAPI app (or add its routes to ``app``)."""
    app = app or FastAPI(title="Latxa arena API", version="1", openapi_url="/api/openapi.json",
                         docs_url="/api/docs", redoc_url=None)
    app.state.arena = Arena(settings, session_factory, backends, rng)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
