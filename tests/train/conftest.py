"""Fixtures for the training tests: the packed dataset of one variant, made by the real data layer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latxa.net import free_port

VARIANT = "exp_1_010"   # BASE_EU + I_EU: Basque instructions only (small, fast)


@pytest.fixture(scope="session")
def packed_data(tiny_model, tmp_path_factory) -> Path:
    """`latxa data prepare` output for VARIANT with the tiny tokenizer (profile local: seq_len 256)."""
    out = tmp_path_factory.mktemp("train_data") / VARIANT
    try:
        from latxa.components.data import prepare
    except ImportError:  # the data layer is absent: build the same format with the contract-following helper
        sys.path.insert(0, str(Path(__file__).parent))
        from packing_helper import make_packed

        from latxa.paths import SAMPLE_DATA

        return make_packed(out, tiny_model, SAMPLE_DATA / "instructions" / "eu.jsonl", VARIANT, seq_len=256)
    prepare(VARIANT, out, tokenizer=tiny_model, profile="local", progress=False, num_proc=1, use_cache=False)
    return out


@pytest.fixture(scope="module")
def mlflow_http_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, proxied artifacts) on a random port; stopped afterwards."""
    root = tmp_path_factory.mktemp("mlflow_http")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"})
    uri = f"http://127.0.0.1:{port}"
    from latxa.components.tracking import server_healthy

    deadline = time.time() + 300   # generous: a shared 2-core machine can be very slow to import mlflow
    while not server_healthy(uri, 1.0):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, 15)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def run_latxa(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real `latxa` entry point in a subprocess (usable from module-scoped fixtures)."""
    exe = Path(sys.executable).with_name("latxa")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
                          cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="session")
def latxa_run():
    return run_latxa
