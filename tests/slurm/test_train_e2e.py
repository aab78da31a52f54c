"""End to end on the real local cluster with the real `latxa train`: Ray started inside the allocation, data prepared
in the job, the tiny model trained; SLURM's time limit cuts the first attempt, the bridge resubmits, training
resumes from its checkpoint, and the job ends COMPLETED with the exported model.

To make the time limit hit at a known point (and not race the training's speed), the test lowers the running
job's limit with `scontrol update TimeLimit=1` once the first checkpoint exists and freezes (SIGSTOP) that job's
Ray actors, so the first attempt cannot finish before SLURM ends it with TIMEOUT. Everything else is untouched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

VARIANT = "exp_2_101"
STEPS = 24
CKPT_EVERY = 4


def _job_ray_actors(job_id: str) -> list[int]:
    """PIDs of this job's Ray actor/worker processes (title ``ray::...``, environment SLURM_JOB_ID=job_id)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            if not cmd.startswith(b"ray::"):
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in env:
            pids.append(int(d.name))
    return pids


def _checkpoints(out: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has registered (its snapshot file), i.e. the ones a resume can use."""
    snap = out / "ray" / VARIANT / "checkpoint_manager_snapshot.json"
    try:
        results = json.loads(snap.read_text()).get("checkpoint_results", [])
    except (OSError, ValueError):
        return []
    return sorted(int(r["metrics"]["step"]) for r in results)


def test_train_job_times_out_is_resubmitted_and_resumes(slurm_cluster, tiny_model, latxa_home, cli, tmp_path):
    from latxa.slurm.bridge import SlurmBridge

    try:
        from latxa.cli.commands import train as _train  # noqa: F401  (the Training layer's CLI)
    except ImportError:
        pytest.fail("`latxa train` (Training layer) is not available")
    out = tmp_path / "run"
    res = cli("slurm", "submit", "--variant", VARIANT, "--profile", "local", "--out", str(out),
              f"--train-arg=--max-steps={STEPS}", f"--train-arg=--checkpoint-every={CKPT_EVERY}", "--name", "e2e-train")
    assert res.returncode == 0, res.stderr
    first = res.stdout.strip().splitlines()[-1]
    bridge = SlurmBridge("local")
    frozen: list[int] = []
    try:
        # 1. wait until the first attempt's first checkpoint is registered (Ray up, data prepared, training running)
        deadline = time.monotonic() + 600
        while not _checkpoints(out):
            st = bridge.status(first)
            assert not st.terminal, f"job {first} ended {st.state} before its first checkpoint:\n{bridge.logs(first, 60)}"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
        # 2. freeze the job's Ray actors and cut its time limit: SLURM ends it with TIMEOUT
        frozen = _job_ray_actors(first)
        assert frozen, "found none of the job's Ray processes"
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        subprocess.run(["scontrol", "update", f"JobId={first}", "TimeLimit=1"], check=True, capture_output=True)
        # 3. the bridge's wait: sees TIMEOUT, resubmits the staged script, follows the new job to COMPLETED
        res = cli("slurm", "wait", first, "--resubmit", "2", "--poll", "1", "--timeout", "900", "--format", "json",
                  timeout=960)
        assert res.returncode == 0, res.stdout + res.stderr
        final = json.loads(res.stdout)
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert final["state"] == "COMPLETED" and final["attempts"] and final["attempts"][0] == first
    assert final["job_id"] != first
    assert bridge.status(first).state == "TIMEOUT"
    assert "DUE TO TIME LIMIT" in bridge.logs(first, tail=200)
    # the second attempt resumed from the checkpoint the first one left, and finished the run
    log2 = bridge.logs(final["job_id"], tail=0)
    resumed = re.search(r"\[train\] resumed from (.+?) at step (\d+)/(\d+)", log2)
    assert resumed, log2[-3000:]
    assert int(resumed.group(2)) >= CKPT_EVERY and int(resumed.group(3)) == STEPS
    assert "Ray cluster ready: 1/1 node(s) joined" in log2 and "training exited with status 0" in log2
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    model = Path(run["model"])
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert max(_checkpoints(out)) == STEPS
    # the CLI's JSON status of the final job
    res = cli("slurm", "status", final["job_id"], "--format", "json")
    status = json.loads(res.stdout)
    assert status["job_id"] == final["job_id"] and status["state"] == "COMPLETED" and status["attempts"] == [first]
