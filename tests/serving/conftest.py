"""Fixtures for the serving tests: the default tiny-model set, in-process backends, arena apps on fresh databases."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import uuid
from glob import glob
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def serve_models(tiny_model):
    """The default model set (three seeds of the tiny model), with short answers for tests."""
    from latxa.serving.registry import load_serve_config

    cfg = load_serve_config()
    for m in cfg.models:
        m.generation.max_tokens = 6
    return cfg.models


@pytest.fixture(scope="session")
def local_backends(serve_models):
    from latxa.serving.generation import LocalBackends

    return LocalBackends(serve_models)


@pytest.fixture
def arena_db(request):
    """The storage backend of `make_arena`: "sqlite" unless a test parametrizes it (indirect) with "postgresql"."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def make_arena(request, arena_db, tmp_path, serve_models, local_backends):
    """make_arena(**arena_settings) -> (TestClient, ArenaSettings) on a fresh database (SQLite, or PostgreSQL when
    the test parametrizes `arena_db`)."""
    from fastapi.testclient import TestClient

    from latxa.serving.app import build_app
    from latxa.serving.registry import ArenaSettings, ServeConfig

    clients = []

    def make(**overrides):
        if arena_db == "postgresql":
            if clients:
                raise RuntimeError("one PostgreSQL arena per test")
            url = request.getfixturevalue("postgres_url")
        else:
            url = f"sqlite:///{tmp_path}/arena-{len(clients)}.db"
        base = dict(database_url=url, min_reading_seconds=0.0,
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


# ----------------------------------------------------------------------------------------------------------
# A real PostgreSQL server (Debian's postgresql package), for the "PostgreSQL by URL" storage path.
# ----------------------------------------------------------------------------------------------------------
def _pg_bindir() -> Path | None:
    for d in sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(d) / "initdb").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a random port (trust auth, fsync on); stopped at the end.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the package creates.
    """
    from latxa.net import free_port

    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed; `make test` installs it (scripts/sysdeps.sh: Debian postgresql)")
    root = Path(tempfile.mkdtemp(prefix="latxa-pg-"))   # not under pytest's 0700 tmp: the server user must reach it
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=300)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "120",
                    "-o", opts, "start"], check=True, capture_output=True, timeout=180)
    try:
        yield {"host": "127.0.0.1", "port": port}
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the test server, as a SQLAlchemy URL (psycopg 3 driver)."""
    import psycopg

    name = "arena_" + uuid.uuid4().hex[:12]
    with psycopg.connect(host=postgres_server["host"], port=postgres_server["port"], user="postgres",
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@{postgres_server['host']}:{postgres_server['port']}/{name}"
