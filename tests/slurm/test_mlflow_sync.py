"""`latxa mlflow sync --from file:...`: a Leonardo-style file store (a variant run with its metric history and
artifacts, an evaluation nested under it, a registered model version) copied into a tracking store, once."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def file_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.create_experiment("latxa-instruct")
    run = c.create_run(exp, run_name="70b-exp_2_101", tags={"variant": "70b-exp_2_101", "model_size": "70b"})
    rid = run.info.run_id
    c.log_param(rid, "lr", "1e-05")
    for step in range(1, 6):
        c.log_metric(rid, "loss", 8.0 - step, step=step)
    c.log_metric(rid, "eval_loss", 7.5, step=5)
    art = tmp_path / "model"
    art.mkdir()
    (art / "config.json").write_text('{"model_type": "llama"}')
    c.log_artifacts(rid, str(art), "model")
    c.set_terminated(rid, "FINISHED")
    child = c.create_run(exp, run_name="eval-eu-mini", tags={"mlflow.parentRunId": rid, "latxa.stage": "eval"})
    c.log_metric(child.info.run_id, "eval.eu-mini.mean_eu", 41.0)
    c.set_terminated(child.info.run_id, "FINISHED")
    c.create_registered_model("latxa-70b-exp_2_101")
    c.create_model_version("latxa-70b-exp_2_101", source=f"{run.info.artifact_uri}/model", run_id=rid)
    return uri


def test_sync_copies_a_file_store_once(file_store, tmp_path, cli):
    from mlflow.tracking import MlflowClient

    dest = f"sqlite:///{tmp_path / 'server.db'}"
    home = tmp_path / "home"
    res = cli("mlflow", "sync", "--from", file_store, "--tracking-uri", dest, "--format", "json",
              env={"LATXA_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["runs_copied"], report["metrics"], report["versions_copied"]) == (2, 7, 1)
    c = MlflowClient(tracking_uri=dest)
    exp = c.get_experiment_by_name("latxa-instruct")
    runs = {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}
    parent, child = runs["70b-exp_2_101"], runs["eval-eu-mini"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id        # nesting kept, under the new id
    assert [m.value for m in c.get_metric_history(parent.info.run_id, "loss")] == [7.0, 6.0, 5.0, 4.0, 3.0]
    assert parent.data.params["lr"] == "1e-05" and parent.info.status == "FINISHED"
    assert [a.path for a in c.list_artifacts(parent.info.run_id, "model")] == ["model/config.json"]
    # a local destination keeps the artifacts under the state folder, never in ./mlruns of the working directory
    assert parent.info.artifact_uri.startswith(home.resolve().as_uri() + "/")
    (mv,) = c.search_model_versions("name='latxa-70b-exp_2_101'")
    assert mv.run_id == parent.info.run_id
    again = json.loads(cli("mlflow", "sync", "--from", file_store, "--tracking-uri", dest, "--format", "json").stdout)
    assert (again["runs_copied"], again["runs_skipped"], again["versions_copied"]) == (0, 2, 0)
    res = cli("mlflow", "sync", "--from", "http://elsewhere", "--tracking-uri", dest)
    assert res.returncode == 2 and "takes a file store URI" in res.stderr
