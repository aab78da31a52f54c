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


# The /v1 key every test server accepts (read from the environment variable the serving config names).
TEST_API_KEY = "sk-latxa-test-0123456789"


@pytest.fixture
def api_key(monkeypatch) -> str:
    monkeypatch.setenv("LATXA_API_KEYS", TEST_API_KEY)
    return TEST_API_KEY


# Arena settings of every test server: no reading delay, limits far above what a test sends.
TEST_ARENA = dict(min_reading_seconds=0.0, admin_token="admin-secret", rate_votes_per_minute=1000,
                  rate_battles_per_minute=1000, rate_messages_per_minute=1000, rate_auth_per_minute_ip=1000,
                  rate_requests_per_minute_ip=100000, leaderboard_cache_seconds=0)


def _database_url(request, arena_db: str, tmp_path: Path, made: list, prefix: str) -> str:
    """A fresh arena database for the next server of a test: SQLite in ``tmp_path``, or the PostgreSQL one."""
    if arena_db == "postgresql":
        if made:
            raise RuntimeError("one PostgreSQL arena per test")
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/{prefix}-{len(made)}.db"


@pytest.fixture
def make_arena(request, arena_db, tmp_path, serve_models, local_backends, api_key):
    """make_arena(**arena_settings) -> (TestClient, ArenaSettings) on a fresh database (SQLite, or PostgreSQL when
    the test parametrizes `arena_db`)."""
    from fastapi.testclient import TestClient

    from latxa.serving.app import build_app
    from latxa.serving.registry import ApiSettings, ArenaSettings, ServeConfig

    clients = []

    def make(api=None, **overrides):
        url = _database_url(request, arena_db, tmp_path, clients, "arena")
        settings = ArenaSettings(**{"database_url": url, **TEST_ARENA, **overrides})
        models, backends = serve_models, local_backends
        if settings.protocol != "latxa":   # the protocol's generation settings, as load_serve_config applies them
            from latxa.serving.arena.protocol import load_protocol
            from latxa.serving.generation import LocalBackends
            from latxa.serving.registry import GenerationSettings

            gen = {**load_protocol(settings.protocol).generation, "max_tokens": 6}
            models = [m.model_copy(update={"generation": GenerationSettings(**gen)}) for m in serve_models]
            backends = LocalBackends(models)
            backends._models = local_backends._models   # the same loaded tiny models
        cfg = ServeConfig(models=models, arena=settings, api=ApiSettings(**(api or {})))
        client = TestClient(build_app(cfg, backends, rng=random.Random(7)))
        clients.append(client)
        return client, settings

    yield make
    for c in clients:
        c.close()


class LiveServer:
    """The serving app on a real uvicorn server (the configuration `latxa arena serve` runs with) in a thread,
    on 127.0.0.1 and a free port: for what an in-process TestClient cannot show (streaming as it happens,
    disconnects, HTTP-level limits)."""

    def __init__(self, cfg, backends, rng=None):
        import threading
        import time

        import uvicorn

        from latxa.net import free_port
        from latxa.serving.app import build_app, server_config

        self.cfg, self.backends = cfg, backends
        self.app = build_app(cfg, backends, rng=rng)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(self.app, cfg, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def live_arena(request, arena_db, tmp_path, serve_models, local_backends, api_key):
    """live_arena(models=None, backends=None, api=None, limits=None, **arena_settings) -> LiveServer on a fresh
    database (SQLite, or PostgreSQL when the test parametrizes `arena_db`)."""
    from latxa.serving.registry import ApiSettings, ArenaSettings, ServeConfig, ServerLimits

    servers = []

    def make(models=None, backends=None, api=None, limits=None, rng=None, **overrides):
        url = _database_url(request, arena_db, tmp_path, servers, "live")
        settings = ArenaSettings(**{"database_url": url, **TEST_ARENA, **overrides})
        cfg = ServeConfig(models=models or serve_models, arena=settings, api=ApiSettings(**(api or {})),
                          limits=ServerLimits(**(limits or {})))
        server = LiveServer(cfg, backends or local_backends, rng=rng or random.Random(7))
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


def tiny_variant(tiny_model, dest: Path, *, max_positions: int | None = None, emit_token: int | None = None) -> Path:
    """A copy of the tiny model, changed the way a test needs: a longer context and no end-of-turn token (so an
    answer runs until max_tokens), or a generation config that makes it emit one token over and over; both through
    sequence_bias, a standard transformers generation setting (e.g. the byte-level token of U+0000)."""
    import json

    if (dest / "config.json").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(tiny_model, tmp)
    gen = json.loads((tmp / "generation_config.json").read_text())
    if max_positions:
        cfg = json.loads((tmp / "config.json").read_text())
        cfg["max_position_embeddings"] = max_positions
        (tmp / "config.json").write_text(json.dumps(cfg))
        eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
        gen["sequence_bias"] = [[[t], -100.0] for t in eos]
    if emit_token is not None:
        gen["sequence_bias"] = [[[emit_token], 100.0]]
    (tmp / "generation_config.json").write_text(json.dumps(gen))
    tmp.rename(dest)
    return dest


@pytest.fixture(scope="session")
def long_models(serve_models, tmp_path_factory):
    """The three tiny seeds with a 16k context and arena answers of up to 12,000 tokens (minutes each here): a
    model kept generating stays busy until its client goes away."""
    from latxa.serving.registry import GenerationSettings, ModelSpec

    root = tmp_path_factory.mktemp("long-models")
    return [ModelSpec(name=m.name, path=str(tiny_variant(Path(m.path), root / m.name, max_positions=16384)),
                      generation=GenerationSettings(max_tokens=12000)) for m in serve_models]


@pytest.fixture(scope="session")
def long_backends(long_models):
    from latxa.serving.generation import LocalBackends

    return LocalBackends(long_models)


NUL_TOKEN = 194   # the tiny tokenizer's byte-level token for U+0000 (checked in the test that uses it)


@pytest.fixture(scope="session")
def nul_models(serve_models, tmp_path_factory):
    """tiny-a as served, and a model that answers U+0000 over and over (as one of ten ordinary Basque prompts
    made a real model do): a real tiny Llama whose generation config biases it to that byte token."""
    from latxa.serving.registry import GenerationSettings, ModelSpec

    root = tmp_path_factory.mktemp("nul-model")
    nul = tiny_variant(Path(serve_models[1].path), root / "tiny-nul", emit_token=NUL_TOKEN)
    return [serve_models[0], ModelSpec(name="tiny-nul", path=str(nul), generation=GenerationSettings(max_tokens=6))]


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


# ----------------------------------------------------------------------------- the study's votes, synthetic
STUDY_ARENA_MODELS = (
    "exp_0_010", "exp_0_011", "exp_0_101", "exp_0_110", "exp_0_111", "exp_1_001", "exp_1_010", "exp_1_011",
    "exp_1_101", "exp_1_110", "exp_1_111", "exp_2_010", "exp_2_011", "exp_2_100", "exp_2_101", "exp_2_110",
    "exp_2_111", "Llama-3.1-8B-Instruct", "Latxa 3.1 70B Instruct", "gpt-4o", "claude-3-5-sonnet-20241022")
# latent strengths (rating points over 1000), roughly the published table's order
STUDY_STRENGTH = {"gpt-4o": 190, "claude-3-5-sonnet-20241022": 150, "Latxa 3.1 70B Instruct": 140, "exp_2_111": 50,
                  "exp_2_110": 50, "exp_2_101": 38, "exp_0_111": 25, "exp_1_111": 22, "exp_0_101": 17,
                  "exp_1_011": 8, "exp_1_101": 5, "exp_1_001": 5, "exp_1_010": -9, "exp_0_110": -15,
                  "exp_1_110": -18, "exp_2_100": -58, "exp_2_011": -64, "exp_2_010": -82, "exp_0_011": -85,
                  "exp_0_010": -104, "Llama-3.1-8B-Instruct": -278}


def synthetic_study_votes(n: int = 2000, seed: int = 0, users: int = 60) -> list[dict]:
    """Votes in HiTZ/ebaluatoia's published format on the study's 21 model names (never the real data)."""
    import datetime as dt
    import math
    import uuid as _uuid

    rng = random.Random(seed)
    people = [(str(rng.randrange(-2**63, 2**63)), rng.choices(["C1-C2", "B1-B2", "A1-A2"], [80, 18, 2])[0],
               rng.choices(["Bachelor", "Vocational ed", "High School"], [72, 7, 21])[0]) for _ in range(users)]
    start = dt.datetime(2025, 3, 19, 7, 0, 0)
    system = {"role": "system", "content": "You are a helpful Artificial Intelligence assistant called Latxa, ..."}
    rows = []
    for i in range(n):
        a, b = rng.sample(STUDY_ARENA_MODELS, 2)
        p = 1 / (1 + 10 ** ((STUDY_STRENGTH[b] - STUDY_STRENGTH[a]) / 400))

        def outcome(p=p, shift=0.0):
            return "tie" if rng.random() < 0.18 else ("model_a" if rng.random() < min(1, max(0, p + shift)) else "model_b")

        content, language = outcome(), outcome(shift=rng.uniform(-0.1, 0.1))
        if content == language:
            winner = content
        elif "tie" in (content, language):
            winner = content if content != "tie" else language
        else:
            winner = rng.choice([content, language, "tie"])
        who = people[int(math.floor(rng.random() ** 1.5 * users))]
        ts = start + dt.timedelta(seconds=i * 90 + rng.randrange(60), microseconds=rng.randrange(1, 10**6))
        rows.append({"id": str(_uuid.UUID(int=rng.getrandbits(128), version=4)), "username": who[0],
                     "user_language": who[1], "user_education": who[2], "timestamp": ts.isoformat(),
                     "model_a": a, "model_b": b,
                     "conv_a": [system, {"role": "user", "content": "Kaixo"}, {"role": "assistant", "content": "Kaixo!"}],
                     "conv_b": [system, {"role": "user", "content": "Kaixo"}, {"role": "assistant", "content": "Aupa!"}],
                     "winner": winner, "winner_content": content, "winner_language": language})
    rng.shuffle(rows)   # files need not be in time order; the reader sorts
    return rows


@pytest.fixture(scope="session")
def study_dataset(tmp_path_factory):
    """A published-format dataset folder (card + data/25-03.jsonl.gz + its sanitized twin) of synthetic votes."""
    from latxa.components.arena.dataset import write_published

    rows = synthetic_study_votes()
    out = tmp_path_factory.mktemp("ebaluatoia")
    write_published(out, "25-03", rows, rows[: len(rows) // 2], "Synthetic votes in the published format (tests).")
    return out, rows
