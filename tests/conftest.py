"""Shared fixtures: offline environment, an isolated state folder, the tiny model built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tests never touch a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Local Ray clusters started by tests stay on loopback (see latxa/cli.py).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


# Areas run in `make test`'s jobs lane beside the SLURM tests, so that the two lanes take about as long (the
# pipelines' kfp.local sweeps are ~5 of the suite's ~32 sequential minutes; BENCHMARKS.md has the figures).
JOBS_LANE_AREAS = ("pipelines",)


def pytest_collection_modifyitems(config, items):
    """Every test that uses the local SLURM cluster is marked ``slurm``, whatever its module says; those and the
    tests of :data:`JOBS_LANE_AREAS` are marked ``lane_jobs``. `make test` runs ``-m lane_jobs`` and
    ``-m "not lane_jobs"`` as two pytest sessions side by side (scripts/test_lanes.py), so only the jobs lane
    starts the SLURM cluster."""
    tests_dir = Path(__file__).parent
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
        try:
            area = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            area = ""
        if item.get_closest_marker("slurm") or area in JOBS_LANE_AREAS:
            item.add_marker(pytest.mark.lane_jobs)


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean():
    """No run writes into the checkout: MLflow 3 falls back to ``sqlite:///mlflow.db`` in the working directory
    when a client gets no tracking URI, which once left stray databases at the repository root."""
    stray = [REPO / "mlflow.db", REPO / "mlruns"]
    before = {p for p in stray if p.exists()}
    yield
    leaked = [str(p) for p in stray if p.exists() and p not in before]
    assert not leaked, f"the test session wrote {', '.join(leaked)} into the checkout"


@pytest.fixture(scope="session")
def latxa_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("latxa_home")
    os.environ["LATXA_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_model(latxa_home) -> Path:
    from latxa.components.tiny_model import build_tiny_model

    return build_tiny_model(latxa_home / "models" / "tiny")


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `latxa` entry point in a subprocess."""
    exe = Path(sys.executable).with_name("latxa")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd or REPO,
    )


@pytest.fixture(scope="module")
def chromium(request):
    """A headless Debian Chromium under Playwright's sync API for one test module (its ``CHROMIUM`` and
    ``CHROMIUM_ARGS``). The sync API runs an event loop in this thread while it is open: a second driver refuses to
    start and ``asyncio.run`` fails, so each module closes its own before the next runs (never session-scoped)."""
    from playwright.sync_api import sync_playwright

    executable = getattr(request.module, "CHROMIUM", "/usr/bin/chromium")
    if not Path(executable).exists():
        pytest.fail(f"{executable} is missing: run `make sysdeps` (apt-get install chromium).")
    args = getattr(request.module, "CHROMIUM_ARGS", ["--headless", "--no-sandbox", "--disable-gpu"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def hostile_json() -> dict[str, str]:
    """JSON lines a plain ``json.loads`` turns into a traceback (RecursionError; ValueError past Python's integer digit
    limit) -> the words every JSONL reader's one-sentence refusal must hold."""
    return {"[" * 100_000: "nested deeper than 64 levels",
            '{"model_a": ' + "7" * 5000 + "}": "an integer with more than"}


def _one_sentence(code: int, stderr: str, where: str, reason: str) -> None:
    """Exit 2, no traceback, and stderr ends with one ``error: <where>: ...<reason>...`` line."""
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {where}: ") and reason in last and len(last) < 400, last


@pytest.fixture(scope="session")
def one_sentence():
    """one_sentence(exit_code, stderr, "file:line", reason): the CLI refused bad input the way rule 4 says."""
    return _one_sentence
