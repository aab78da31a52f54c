"""Where things live: the repository, the shipped sample data and the local state folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO_ROOT / "data"


def state_dir() -> Path:
    """Local state (models, caches, MLflow store, SLURM spool). Override with LATXA_HOME."""
    path = Path(os.environ.get("LATXA_HOME", REPO_ROOT / ".latxa")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_model_dir() -> Path:
    """Default location of the tiny offline model built by `latxa model tiny`."""
    return state_dir() / "models" / "tiny"
