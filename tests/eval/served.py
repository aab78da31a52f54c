"""The serving layer's /v1 routes on the tiny model in a thread: what the API-model evaluation tests talk to."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def served_tiny(tiny_model: Path, max_tokens: int, middleware=None):
    """The serving layer's real /v1 routes on the tiny model, in a uvicorn thread on a free loopback port; yields
    the base URL. ``middleware(request, call_next)`` sees every request (the tests record what lm-eval sends)."""
    uvicorn = pytest.importorskip("uvicorn")
    openai_api = pytest.importorskip("latxa.serving.openai_api")
    from fastapi import FastAPI

    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import GenerationSettings, ModelSpec

    app = FastAPI()
    if middleware is not None:
        app.middleware("http")(middleware)
    settings = GenerationSettings(temperature=0.0, system_prompt=None, max_tokens=max_tokens)
    openai_api.add_openai_routes(app, LocalBackends([ModelSpec(name="tiny", path=str(tiny_model), generation=settings)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started, "the in-thread OpenAI server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
