"""Evaluation fixtures: the stand-in dataset mirror, a Hugging Face hub cache holding the tiny model under the
study's real model names (the 8B variants as branches of one repository), and the local SLURM cluster."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mirror_data import write_mirror  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO.parent / "shared" / "data" / "latxa_instruct" / "evaluation" / "benchmarks" / "results"

# The SLURM fixtures live with the bridge's tests; the array test reuses them.
_spec = importlib.util.spec_from_file_location("_slurm_fixtures", REPO / "tests" / "slurm" / "conftest.py")
_slurm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_slurm)
slurm_cluster = _slurm.slurm_cluster
bridge = _slurm.bridge


@pytest.fixture(scope="session")
def paper_mirror(tmp_path_factory) -> Path:
    """A few rows per dataset, config and split of the paper suite, BBQ/BasqBBQ stand-ins under MIRROR/json."""
    return write_mirror(tmp_path_factory.mktemp("eval_mirror"))


def put_in_hub_cache(hub: Path, repo: str, model_dir: Path, revisions: tuple[str, ...] = ("main",)) -> None:
    """``model_dir`` as ``repo`` in an HF hub cache (``HF_HOME/hub``), one snapshot per revision (branch)."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    for rev in revisions:
        sha = hashlib.sha1(f"{repo}@{rev}".encode()).hexdigest()
        snap = folder / "snapshots" / sha
        if not snap.is_dir():
            shutil.copytree(model_dir, snap)
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / rev).write_text(sha)


@pytest.fixture(scope="session")
def hf_home(tiny_model, tmp_path_factory) -> Path:
    """HF_HOME whose hub cache holds the tiny model as Llama-3.1-8B (base) and as the Latxa-Instruct variants repo
    with the exp_2_101 branch: the production names, resolved offline."""
    home = tmp_path_factory.mktemp("hf_home")
    hub = home / "hub"
    put_in_hub_cache(hub, "meta-llama/Llama-3.1-8B", tiny_model)
    put_in_hub_cache(hub, "HiTZ/Latxa-Llama-3.1-8B-Instruct", tiny_model, ("main", "exp_2_101"))
    return home
