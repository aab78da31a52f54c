"""Fixtures for the SLURM bridge tests: the real single-node cluster (slurm/local/up.sh), started once per session.

If the cluster was not running before the session, it is stopped again at the end (slurm/local/down.sh).
On a fresh machine (CI) up.sh installs slurm-wlm and munge first (as root, or with sudo).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "slurm" / "local" / "up.sh"
DOWN = REPO / "slurm" / "local" / "down.sh"


def _cluster_dir() -> Path:
    return Path(os.environ.get("LATXA_SLURM_DIR", "/tmp/latxa-slurm"))


def _running(d: Path) -> bool:
    pid = d / "run" / "slurmctld.pid"
    try:
        os.kill(int(pid.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def slurm_cluster(latxa_home) -> Path:
    """The local cluster's folder (slurm.conf inside); SLURM_CONF is set for the session."""
    d = _cluster_dir()
    was_running = _running(d)
    if not shutil.which("slurmctld") and os.geteuid() != 0 and not shutil.which("sudo"):
        pytest.fail("slurm-wlm is not installed and this user cannot install it; run `make slurm-up` first")
    res = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        pytest.fail(f"slurm/local/up.sh failed:\n{res.stdout}\n{res.stderr}")
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    yield d
    if not was_running:
        subprocess.run(["bash", str(DOWN)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def bridge(slurm_cluster, latxa_home):
    from latxa.slurm.bridge import SlurmBridge

    return SlurmBridge("local")

