"""The study pipeline's SLURM path end to end: `latxa pipeline run --cluster local` runs the KFP pipeline with
kfp.local, and every heavy step is a job on the real single-node cluster (prepare -> train -> export -> evaluate ->
register), passing slurm:// references to the cluster's files between them; the steps bring back only metadata.
Also: a step killed while it waits and run again re-attaches to its job instead of submitting a second one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

VARIANT = "exp_1_010"


def _accounted() -> list[tuple[str, str, str]]:
    """(job id, name, state) of every job the local cluster's accounting holds (it outlives a test session when
    the cluster was already up, so tests compare against what was there before they started)."""
    out = subprocess.run(["sacct", "-c", "-P", "-n", "-o", "JobID,JobName,State"], capture_output=True, text=True,
                         check=True).stdout
    return [tuple(line.split("|")[:3]) for line in out.splitlines() if line.count("|") >= 2]


@pytest.mark.slow
def test_study_pipeline_runs_its_steps_as_slurm_jobs_passing_cluster_references(slurm_cluster, tiny_model, latxa_home,
                                                                                cli, tmp_path):
    from mlflow.tracking import MlflowClient

    before = {job_id for job_id, _, _ in _accounted()}

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"   # a file store the job on this node reaches too
    root = latxa_home / "kfp" / "runs"
    res = cli("pipeline", "run", "--variants", VARIANT, "--cluster", "local", "--model", str(tiny_model),
              "--max-steps", "3", "--eval-limit", "2", "--experiment", "latxa-instruct", "--tracking-uri", uri,
              "--format", "json", timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["pipeline"] == "study-slurm" and [r["variant"] for r in out["runs"]] == [VARIANT]
    run = out["runs"][0]
    tags = run["tags"]

    # every artifact on the KFP side is a reference to the cluster's files, and each step read its input's reference
    refs = {}
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 100_000:
            try:
                data = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and str(data.get("slurm_ref", "")).startswith("slurm://local/"):
                refs[path.parent.name + "/" + path.name] = data
    kinds = {k.split("/")[-1] for k in refs}
    assert {"dataset", "model", "exported", "results"} <= kinds, sorted(refs)
    by_kind = {k.split("/")[-1]: v for k, v in refs.items()}
    data_path = by_kind["dataset"]["slurm_ref"][len("slurm://local"):]
    run_path = by_kind["model"]["slurm_ref"][len("slurm://local"):]
    plan = json.loads(open(f"{run_path}/run.json").read())["plan"]
    assert plan["data_dir"] == f"{data_path}/train"            # the train job got the prepare step's reference
    assert by_kind["model"]["checkpoint"].startswith(f"slurm://local{run_path}/ray/")
    assert by_kind["exported"]["slurm_ref"].startswith("slurm://local/") and by_kind["exported"]["export"]["step"] == 3

    # five jobs ran on the cluster, all COMPLETED, the MLflow run says which trained it
    ran = [(name, state) for job_id, name, state in _accounted() if job_id not in before]
    for step in ("prep", "train", "export", "eval", "register"):          # one job each, this run's
        assert [st for name, st in ran if name == f"{step}-{VARIANT}"] == ["COMPLETED"], ran
    assert tags["slurm.job_id"] and tags["kfp.task.train"] == "slurm-train-model"
    assert tags["kfp.task.eval"] == "slurm-evaluate-model" and tags["kfp.task.register"] == "slurm-register-model"
    assert run["params"]["total_steps"] == "3" and 0.0 <= run["metrics"]["eval.eu-mini.mean_eu"] <= 100.0
    client = MlflowClient(tracking_uri=uri)
    (mv,) = [v for v in client.search_model_versions(f"name='latxa-{VARIANT}'") if v.run_id == run["run_id"]]
    assert mv.tags["kfp.run_id"] == tags["kfp.run_id"] and mv.tags["latxa.model_path"].startswith("slurm://local/")


REATTACH = """
import os
import sys
from latxa.slurm.bridge import SlurmBridge
from latxa.slurm.kfp_bridge import run_job
from latxa.slurm.render import render_command
bridge = SlurmBridge("local")
job = render_command(bridge.profile, ["bash", "-c", "sleep 6; echo finished"], name=os.environ["JOB_NAME"], time="3")
st = run_job(bridge, job, key="kfp-run-1/slurm-train-model/exp_2_101", poll_s=0.3, max_poll_s=1.0)
print("FINAL", st.job_id, st.state, flush=True)
"""


def test_a_killed_wait_step_reattaches_to_its_job_when_run_again(slurm_cluster, latxa_home, tmp_path):
    name = f"reattach-{uuid.uuid4().hex[:8]}"        # this run's jobs only (accounting keeps earlier sessions')
    step = [sys.executable, "-c", REATTACH]
    env = {**os.environ, "JOB_NAME": name}
    first = subprocess.Popen(step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    from latxa.slurm.bridge import SlurmBridge

    keyfile = SlurmBridge("local")._key_path("kfp-run-1/slurm-train-model/exp_2_101")
    while not keyfile.is_file():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)
    first.kill()                      # the KFP pod dies while waiting
    first.wait()
    again = subprocess.run(step, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    final = [line for line in again.stdout.splitlines() if line.startswith("FINAL")][-1].split()
    assert final[2] == "COMPLETED"
    # SLURM ran one job for that step
    mine = [job_id for job_id, job_name, _ in _accounted() if job_name == name]
    squeued = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
    assert len(set(mine) | set(squeued.split())) == 1, (mine, squeued)
    assert mine[-1] == final[1]
    # a third run of the finished step re-attaches too: it reports the completed job, submits nothing
    third = subprocess.run(step, capture_output=True, text=True, timeout=60, env=env)
    assert third.returncode == 0 and f"FINAL {final[1]} COMPLETED" in third.stdout
