"""`latxa eval run --slurm`: several models as one SLURM job array on the real local cluster (one task per
model), each task running `latxa eval run --array-task` for its model; then `latxa eval aggregate` over all."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_two_models_as_an_array_then_the_tables(bridge, cli, tiny_model, tmp_path):
    other = tmp_path / "tiny-b"
    shutil.copytree(tiny_model, other)
    out = tmp_path / "out"
    res = cli("eval", "run", "--model", str(tiny_model), "--model", str(other), "--suite", "eu-mini", "--task",
              "eu_mini_qnli", "--limit", "2", "--out", str(out), "--resume", "--slurm", "local", "--time", "15")
    assert res.returncode == 0, res.stderr[-3000:]
    job = res.stdout.strip().splitlines()[-1]
    assert "task 0: tiny" in res.stderr and "task 1: tiny-b" in res.stderr
    rec = bridge.record(job)
    assert rec.array == "0-1" and rec.kind == "command"
    script = bridge.transport.run(["cat", rec.script]).stdout
    assert "#SBATCH --array=0-1" in script and "#SBATCH --nodes=1" in script and "--array-task" in script
    st = bridge.wait(job, timeout=900, poll=1.0)
    assert st.state == "COMPLETED", bridge.logs(job)
    for name in ("tiny", "tiny-b"):
        (path,) = (out / name).glob("results_*.json")
        data = json.loads(path.read_text())
        assert data["latxa"]["task"] == "eu_mini_qnli" and data["n-samples"]["eu_mini_qnli"]["effective"] == 2
    log0 = bridge.logs(f"{job}_0", tail=None)
    assert "[1/1] eu_mini_qnli" in log0
    res = cli("eval", "aggregate", str(out), "--suite", "eu-mini", "--format", "json")
    assert res.returncode == 0 and set(json.loads(res.stdout)["models"]) == {"tiny", "tiny-b"}
