"""Fixtures for the serving tests: the default tiny-model set, in-process backends, arena apps on fresh databases."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def serve_models(tiny_model):
    """The default model set (three seeds of the tiny model), with short answers for tests."""
    from serving.registry import load_serve_config

    cfg = load_serve_config()
    for m in cfg.models:
        m.generation.max_tokens = 6
    return cfg.models


@pytest.fixture(scope="session")
def local_backends(serve_models):
    from serving.generation import LocalBackends

    return LocalBackends(serve_models)


@pytest.fixture
def make_arena(tmp_path, serve_models, local_backends):
    """make_arena(**arena_settings) -> (TestClient, ArenaSettings) on a fresh SQLite database."""
    from fastapi.testclient import TestClient

    from serving.app import build_app
    from serving.registry import ArenaSettings, ServeConfig

    clients = []

    def make(**overrides):
        base = dict(database_url=f"sqlite:///{tmp_path}/arena-{len(clients)}.db", min_reading_seconds=0.0,
                    admin_token="admin-secret", rate_votes_per_minute=1000, rate_battles_per_minute=1000,
                    rate_messages_per_minute=1000, rate_auth_per_minute_ip=1000, rate_requests_per_minute_ip=100000,
                    leaderboard_cache_seconds=0)
        settings = ArenaSettings(**{**base, **overrides})
        cfg = ServeConfig(models=serve_models, arena=settings)
        client = TestClient(build_app(cfg, local_backends, rng=random.Random(7)))
        clients.append(client)
        return client, settings

    yield make
    for c in clients:
        c.close()


def register(client, username: str, password: str = "pasahitza-8", **extra) -> dict:
    body = {"username": username, "password": password, "consent": True, "basque_level": "C1", "education": "master",
            **extra}
    r = client.post("/api/participants", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def reg():
    return register
