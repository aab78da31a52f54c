"""The study pipeline's SLURM path end to end: `latxa pipeline run --cluster local` runs the KFP pipeline
with kfp.local, and its training step goes through the SLURM bridge to the real single-node cluster (a job that
starts Ray inside the allocation and runs `latxa train`); evaluation and registration follow in kfp.local."""

from __future__ import annotations

import json

import pytest

VARIANT = "exp_1_010"


@pytest.mark.slow
def test_study_pipeline_trains_through_the_slurm_bridge(slurm_cluster, tiny_model, latxa_home, cli, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"   # a file store the job on this node reaches too
    res = cli("pipeline", "run", "--variants", VARIANT, "--cluster", "local", "--model", str(tiny_model),
              "--max-steps", "3", "--eval-limit", "3", "--experiment", "slurm-e2e", "--tracking-uri", uri,
              "--format", "json", timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["pipeline"] == "study-slurm" and [r["variant"] for r in out["runs"]] == [VARIANT]
    run = out["runs"][0]
    tags, metrics = run["tags"], run["metrics"]

    # training ran as a SLURM job that the cluster reports COMPLETED
    job_id = tags["slurm.job_id"]
    st = cli("slurm", "status", job_id, "--profile", "local", "--format", "json")
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["state"] == "COMPLETED"
    # ... inside the KFP step that submitted it, with the pipeline's provenance
    assert tags["kfp.task"] == tags["kfp.task.train"] == "slurm-train-model"
    assert tags["kfp.task.eval"] == "evaluate-model" and tags["kfp.task.register"] == "register-model"
    assert run["params"]["total_steps"] == "3" and run["params"]["world_size"] == "2"
    assert metrics["final_loss"] > 0 and 0.0 <= metrics["eval.eu-mini.mean_eu"] <= 100.0

    # the model the job exported is the one registered in MLflow
    client = MlflowClient(tracking_uri=uri)
    versions = client.search_model_versions(f"name='latxa-{VARIANT}'")
    mine = [v for v in versions if v.run_id == run["run_id"]]
    assert len(mine) == 1 and mine[0].tags["kfp.run_id"] == tags["kfp.run_id"]
    assert client.get_run(run["run_id"]).info.status == "FINISHED"
