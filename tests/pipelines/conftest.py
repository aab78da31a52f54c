"""Fixtures of the pipelines tests: one real `mlflow server` for the whole area (starting one is slow on 2 cores)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_kfp import run_latxa  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow_home")


@pytest.fixture(scope="session")
def mlflow_server(mlflow_home):
    """`latxa mlflow up` on a random free port in a private LATXA_HOME; stopped at the end of the session."""
    from latxa.net import free_port

    env = {"LATXA_HOME": str(mlflow_home)}
    res = run_latxa("mlflow", "up", "--port", str(free_port()), "--format", "json", env=env, timeout=400)
    assert res.returncode == 0, res.stderr + res.stdout
    info = json.loads(res.stdout)
    yield {"env": env, **info}
    run_latxa("mlflow", "down", env=env, timeout=120)
