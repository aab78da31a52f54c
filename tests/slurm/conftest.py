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



# ---------------------------------------------------------------------------------------------------------------
# Stand-ins for what only Leonardo has: the backbones under their real Hugging Face names, and the raw data under
# the production config's real file names. Small and built once per session.
# ---------------------------------------------------------------------------------------------------------------
BACKBONES = {   # name -> (seed, instruct?)
    "meta-llama/Llama-3.1-8B": (101, False),
    "HiTZ/Latxa-Llama-3.1-8B": (102, False),
    "meta-llama/Llama-3.1-8B-Instruct": (103, True),
    "meta-llama/Llama-3.1-70B-Instruct": (104, True),
}
# a released variant: branches of HiTZ/Latxa-Llama-3.1-8B-Instruct, as the reference published them
RELEASED = ("HiTZ/Latxa-Llama-3.1-8B-Instruct", {"main": 105, "exp_2_101": 106})
CORPUS_SOURCES = ["hplt-v1", "booktegi", "culturax", "egunkaria", "wikipedia", "euscrawl-v1.1", "colossal-oscar"]


def _snapshot(hub: Path, name: str, refs: dict[str, int], tiny: Path, instruct: bool) -> None:
    """One repo in the hub cache layout: models--org--name/{refs/<rev>, snapshots/<sha>/} with random weights."""
    import hashlib
    import json
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    repo = hub / ("models--" + name.replace("/", "--"))
    for rev, seed in refs.items():
        sha = hashlib.sha1(f"{name}@{rev}".encode()).hexdigest()
        snap = repo / "snapshots" / sha
        snap.mkdir(parents=True, exist_ok=True)
        for f in tiny.iterdir():
            if f.suffix != ".safetensors" and f.is_file():
                shutil.copy2(f, snap / f.name)
        cfg = json.loads((snap / "tokenizer_config.json").read_text())
        if instruct:
            cfg["eos_token"] = "<|eot_id|>"
        else:   # base models ship no chat template; the study forces Llama-3.1-Instruct's
            cfg.pop("chat_template", None)
            (snap / "chat_template.jinja").unlink(missing_ok=True)
            cfg["eos_token"] = "<|end_of_text|>"
        (snap / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
        torch.manual_seed(seed)
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny)).save_pretrained(snap, safe_serialization=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / rev).write_text(sha)


@pytest.fixture(scope="session")
def standin_hf_home(tiny_model, tmp_path_factory) -> Path:
    """An HF_HOME whose hub cache holds small random Llamas under the study's real names (and a released variant with
    branches main and exp_2_101)."""
    home = tmp_path_factory.mktemp("hf_home")
    hub = home / "hub"
    for name, (seed, instruct) in BACKBONES.items():
        _snapshot(hub, name, {"main": seed}, tiny_model, instruct)
    _snapshot(hub, RELEASED[0], RELEASED[1], tiny_model, True)
    return home


@pytest.fixture(scope="session")
def standin_data_root(tmp_path_factory) -> Path:
    """A LATXA_DATA_ROOT with the production configs' real file names, filled from the shipped samples."""
    from latxa.paths import SAMPLE_DATA

    root = tmp_path_factory.mktemp("data_root")
    inst, pre = root / "InstructDatasets", root / "PretrainDatasets"
    inst.mkdir()
    pre.mkdir()
    eu = (SAMPLE_DATA / "instructions" / "eu.jsonl").read_text().splitlines()
    en = (SAMPLE_DATA / "instructions" / "en.jsonl").read_text().splitlines()
    corpus = (SAMPLE_DATA / "corpus" / "eu_corpus.jsonl").read_text().splitlines()

    def write(path: Path, lines: list[str]) -> None:
        path.write_text("\n".join(lines) + "\n")

    write(inst / "Magpie-Llama-3.1-8B-Instruct-Filtered-translated-1M-cleaned.jsonl", eu[:60])
    write(inst / "Magpie-Llama-3.1-8B-Instruct-Filtered-1M-cleaned.jsonl", en[:40])
    write(inst / "Magpie-Llama-3.1-70B-Instruct-Filtered-1M.jsonl", en[20:60])
    write(inst / "AYA.jsonl", eu[600:612])
    write(inst / "Magpie-Ultra-1K.jsonl", en[50:62])
    for i, src in enumerate(CORPUS_SOURCES):
        write(pre / f"Latxa_{src}_train.jsonl", corpus[i * 8:(i + 1) * 8])
    return root
