"""The main job end to end: `latxa pipeline run --local` (kfp.local SubprocessRunner) on the tiny model and the
shipped sample, logging to a real `mlflow server`; then MLflow is read back through its REST API."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_kfp import run_latxa  # noqa: E402

VARIANT = "exp_2_101"


def _get(uri: str, path: str, **query) -> dict:
    url = f"{uri}{path}?{urllib.parse.urlencode(query)}" if query else uri + path
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(uri: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(uri + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_local_pipeline_end_to_end(mlflow_server, tiny_model):
    uri = mlflow_server["uri"]
    res = run_latxa("pipeline", "run", "--variants", VARIANT, "--model", str(tiny_model),
                    "--max-steps", "3", "--eval-limit", "3", "--experiment", "e2e", "--tracking-uri", uri,
                    "--format", "json", env=mlflow_server["env"], timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["pipeline"] == "study" and [r["variant"] for r in out["runs"]] == [VARIANT]

    # --- MLflow, through its REST API ---
    exp = _get(uri, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="e2e")["experiment"]
    runs = _post(uri, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    tags_of = lambda r: {t["key"]: t["value"] for t in r["data"].get("tags", [])}  # noqa: E731
    train_runs = [r for r in runs if tags_of(r).get("latxa.stage") == "train"]
    assert len(train_runs) == 1, [tags_of(r) for r in runs]
    run = train_runs[0]
    run_id = run["info"]["run_id"]
    tags = tags_of(run)
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == VARIANT
    # compare-view columns and KFP provenance
    assert {k: tags[k] for k in ("variant", "backbone", "corpus_eu", "inst_eu", "inst_en")} == {
        "variant": VARIANT, "backbone": "INST_EN", "corpus_eu": "1", "inst_eu": "0", "inst_en": "1"}
    assert tags["kfp.run_id"]
    assert tags["kfp.task"] == "train-variant"
    assert {s: tags[f"kfp.task.{s}"] for s in ("prepare", "train", "eval", "register")} == {
        "prepare": "prepare-data", "train": "train-variant", "eval": "evaluate-model", "register": "register-model"}
    assert tags["latxa.pipeline"] == "study" and len(tags["data_hash"]) >= 16
    # params and metrics: training loss per step, eu-mini scores
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    assert params["variant"] == VARIANT and params["total_steps"] == "3" and float(params["lr"]) > 0
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    history = _get(uri, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="loss")["metrics"]
    assert len(history) >= 1 and all(m["value"] > 0 for m in history)
    assert metrics["final_loss"] > 0 and metrics["tokens_seen"] > 0
    assert 0.0 <= metrics["eval.eu-mini.mean_eu"] <= 100.0
    assert sum(k.startswith("eval.eu-mini.eu_mini_") for k in metrics) >= 2
    # the evaluation is a nested run tagged with its own KFP task
    evals = [r for r in runs if tags_of(r).get("mlflow.parentRunId") == run_id]
    assert len(evals) == 1 and tags_of(evals[0])["kfp.task"] == "evaluate-model"
    assert tags_of(evals[0])["kfp.run_id"] == tags["kfp.run_id"]
    # a registered model version from this run, tagged with the KFP task
    versions = _get(uri, "/api/2.0/mlflow/model-versions/search", filter=f"name='latxa-{VARIANT}'")["model_versions"]
    mine = [v for v in versions if v["run_id"] == run_id]
    assert len(mine) == 1
    vtags = {t["key"]: t["value"] for t in mine[0].get("tags", [])}
    assert vtags["kfp.run_id"] == tags["kfp.run_id"] and vtags["kfp.task"] == "train-variant"
    assert vtags["kfp.task.register"] == "register-model"
    # the exported model passed between steps as a KFP Model artifact is a loadable HF folder
    model_dir = Path(tags["latxa.model_path"])
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()

    cmp = run_latxa("compare", "--experiment", "e2e", "--tracking-uri", uri, "--format", "json", "--no-plot",
                    env=mlflow_server["env"])
    assert cmp.returncode == 0, cmp.stderr
    row = json.loads(cmp.stdout)["variants"][0]
    assert row["variant"] == VARIANT and row["run_id"] == run_id
    assert row["means"]["eu"] == pytest.approx(metrics["eval.eu-mini.mean_eu"])
