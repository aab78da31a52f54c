"""MLflow conventions, in one place, so the UI's compare view lines variants up.

- one experiment per study (default ``latxa-instruct``),
- one run per variant (run name = variant code), nested runs for evaluations,
- a parent run per sweep, tagged ``latxa.sweep``,
- the same tag and param names everywhere (below),
- one registered model per variant: ``latxa-<code>`` (e.g. ``latxa-exp_2_101``).

The embedded default is a SQLite store and a local artifact folder under the state
folder; set MLFLOW_TRACKING_URI (or pass a URI) for an HTTP tracking server.
"""

from __future__ import annotations

import os
from pathlib import Path

from latxa.paths import state_dir

DEFAULT_EXPERIMENT = "latxa-instruct"

# Tags every variant run carries (the compare view's columns).
TAG_VARIANT = "variant"
TAG_PAPER_NAME = "paper_name"
TAG_BACKBONE = "backbone"
TAG_CORPUS_EU = "corpus_eu"
TAG_INST_EU = "inst_eu"
TAG_INST_EN = "inst_en"
TAG_DATA_HASH = "data_hash"
TAG_GIT_COMMIT = "git_commit"
TAG_STAGE = "latxa.stage"          # prepare | train | eval | sweep
TAG_SWEEP = "latxa.sweep"
TAG_KFP_RUN = "kfp.run_id"
TAG_KFP_TASK = "kfp.task"
TAG_SLURM_JOB = "slurm.job_id"


def registered_model_name(variant_code: str) -> str:
    return f"latxa-{variant_code}"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else SQLite under the state folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    path = state_dir() / "mlflow" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def variant_tags(variant_code: str) -> dict[str, str]:
    """The tags that identify a variant run (string values, as MLflow stores them)."""
    from components.registry import parse

    v = parse(variant_code)
    return {
        TAG_VARIANT: v.code,
        TAG_PAPER_NAME: v.paper_name,
        TAG_BACKBONE: v.backbone_info.paper,
        TAG_CORPUS_EU: str(int(v.corpus_eu)),
        TAG_INST_EU: str(int(v.inst_eu)),
        TAG_INST_EN: str(int(v.inst_en)),
    }


def git_commit() -> str:
    """The project's commit, or 'unknown' outside a checkout."""
    import subprocess

    from latxa.paths import REPO_ROOT

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
