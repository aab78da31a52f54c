"""Surviving SLURM with nobody watching, on the real local cluster: no bridge `wait` runs while these jobs requeue.

- A training job sent USR1 (what `--signal=B:USR1@<lead>` sends before the time limit) checkpoints at once, stops,
  requeues itself (`scontrol requeue`), resumes from that checkpoint and ends with the same weights as an
  uninterrupted run.
- A command job whose log shows a transient failure (an NCCL error) is requeued once and then completes; a code
  error (a TypeError) or bad input (exit status 2) is not retried.

SLURM holds a requeued job for about two minutes before it may start again (its begin time); the tests move that
begin time to now with `scontrol update`, the only thing they do to the jobs besides sending the signal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latxa.slurm.render import render_command

pytestmark = pytest.mark.slurm

STEPS = 600          # long enough (~40 s here) for the signal to land mid-run


def _scontrol(job_id: str) -> dict:
    res = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    out = {}
    for tok in res.stdout.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out.setdefault(k, v)
    return out


def _follow_without_a_client(job_id: str, timeout: float = 600) -> dict:
    """Poll scontrol until the job is final; when SLURM holds a requeued job for its begin time, release it now."""
    deadline = time.monotonic() + timeout
    held_since = None
    while time.monotonic() < deadline:
        info = _scontrol(job_id)
        state = info.get("JobState", "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        if state == "PENDING" and info.get("Reason") == "BeginTime":
            # not at once: slurmd revoked the last attempt's credential, and a relaunch within the same second
            # is killed ("Job credential revoked"); SLURM's own hold is longer still
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= 3.0:
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        else:
            held_since = None
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {_scontrol(job_id)}")


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.slow
def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_weights(slurm_cluster, tiny_model, latxa_home,
                                                                             bridge, cli, tmp_path):
    data, out, ref = tmp_path / "data", tmp_path / "run", tmp_path / "ref"
    res = cli("data", "prepare", "--variant", "exp_2_101", "--out", str(data), "--quiet")
    assert res.returncode == 0, res.stderr
    args = ["--variant", "exp_2_101", "--data", str(data), "--max-steps", str(STEPS), "--checkpoint-every", "1000",
            "--no-track"]
    res = cli("slurm", "submit", "--profile", "local", "--out", str(out), "--name", "usr1-train",
              *[f"--train-arg={a}" for a in args[4:]], "--data", str(data), "--variant", "exp_2_101")
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().splitlines()[-1]
    # the uninterrupted run, meanwhile, outside SLURM
    baseline = subprocess.Popen([str(Path(sys.executable).with_name("latxa")), "train", *args,
                                 "--out", str(ref)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = Path(bridge.record(job).log_for(job))
    deadline = time.monotonic() + 600
    def steps_done() -> int:
        found = re.findall(rf"\| *(\d+)/{STEPS} \[", log.read_text() if log.exists() else "")
        return int(found[-1]) if found else 0

    while steps_done() < 3:
        assert time.monotonic() < deadline, "training did not get going within 10 minutes"
        assert _scontrol(job).get("JobState") in ("PENDING", "RUNNING"), log.read_text()[-3000:]
        time.sleep(0.3)
    # what SLURM's --signal=B:USR1@<lead> does before the time limit: USR1 to the batch shell only
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    final = _follow_without_a_client(job)
    text = log.read_text()
    assert final["JobState"] == "COMPLETED" and final["Restarts"] == "1", text[-4000:]
    stopped = re.search(rf"stop requested: checkpoint at step (\d+)/{STEPS} saved", text)
    resumed = re.search(rf"\[train\] resumed from .+? at step (\d+)/{STEPS}", text)
    assert stopped and resumed and stopped.group(1) == resumed.group(1) and int(stopped.group(1)) < STEPS, text[-4000:]
    assert "training exited with status 75" in text and "requeue 1/2: checkpoint saved on request" in text
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert baseline.wait(timeout=600) == 0, baseline.stdout.read()[-3000:]
    a, b = _weights(out / "model"), _weights(ref / "model")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() <= 1e-6, k


def _sh(bridge, code: str, name: str) -> str:
    return bridge.submit(render_command(bridge.profile, ["bash", "-c", code], name=name, time="5"))


def test_a_transient_failure_is_requeued_once_a_code_error_is_not(bridge):
    transient = _sh(bridge, 'if [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then echo "NCCL error: unhandled system error '
                            '(run 1)"; exit 1; fi; echo "second attempt ok"', "flaky")
    code = _sh(bridge, 'echo "TypeError: unsupported operand type(s)"; exit 1', "buggy")
    bad_input = _sh(bridge, 'echo "NCCL error: but the input was bad"; exit 2', "bad-input")
    info = _follow_without_a_client(transient, timeout=300)
    log = bridge.logs(transient, tail=0)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    assert "requeue 1/2: transient failure: NCCL error: unhandled system error (run 1)" in log
    assert "second attempt ok" in log
    for job, why in ((code, "exit status 1 and no transient failure in the log"), (bad_input, "exit status 2 (bad input)")):
        info = _follow_without_a_client(job, timeout=120)
        assert info["JobState"] == "FAILED" and info["Restarts"] == "0"
        assert f"not retried: {why}" in bridge.logs(job, tail=0)
