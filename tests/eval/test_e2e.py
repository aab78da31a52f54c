"""End to end on the tiny model, offline: `latxa eval run` (eu-mini) + MLflow nested run, an OpenAI-compatible
endpoint (the serving layer's routes on a local uvicorn), and the KFP component under kfp.local."""

# No `from __future__ import annotations`: the KFP pipeline below needs real annotations.
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
pytestmark = pytest.mark.slow


def _samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def eu_mini_run(tiny_model, tmp_path_factory, cli_module):
    tmp = tmp_path_factory.mktemp("eval_run")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out = tmp / "out"
    res = cli_module("eval", "run", "--model", str(tiny_model), "--suite", "eu-mini", "--limit", "3", "--out", str(out),
                     "--variant", "exp_2_101", env={**OFFLINE, "MLFLOW_TRACKING_URI": uri})
    assert res.returncode == 0, res.stderr[-3000:]
    return res, out, uri


@pytest.fixture(scope="module")
def cli_module():
    """The shared `cli` fixture is function-scoped; the module-scoped run needs the same runner."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]

    def run(*args: str, env: dict | None = None, timeout: float = 900):
        exe = Path(sys.executable).with_name("latxa")
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=repo)

    return run


def _results(out: Path) -> dict:
    """task -> the lm-eval results file holding it (the runner writes one file per task, as the study did)."""
    by_task = {}
    for path in sorted((out / "tiny").glob("results_*.json")):
        data = json.loads(path.read_text())
        for task in data["results"]:
            by_task[task] = data
    return by_task


def test_run_writes_lm_eval_results_and_samples(eu_mini_run):
    res, out, _ = eu_mini_run
    tasks = ["eu_mini_eus_trivia", "eu_mini_eus_exams", "eu_mini_qnli", "eu_mini_truthfulqa_mc1"]
    files = sorted((out / "tiny").glob("results_*.json"))
    assert len(files) == 4
    files = _results(out)
    assert sorted(files) == sorted(tasks)
    for task in tasks:
        data = files[task]
        assert list(data["results"]) == [task]
        assert data["fewshot_as_multiturn"] is True and data["chat_template"]  # instruct model: chat template
        assert data["latxa"]["model_kind"] == "instruct" and data["latxa"]["apply_chat_template"] is True
    assert files["eu_mini_eus_trivia"]["n-shot"]["eu_mini_eus_trivia"] == 5
    assert files["eu_mini_truthfulqa_mc1"]["n-shot"]["eu_mini_truthfulqa_mc1"] == 0
    for task in tasks:
        data = files[task]
        assert data["n-samples"][task]["effective"] == 3
        (sfile,) = list((out / "tiny").glob(f"samples_{task}_*.jsonl"))
        rows = _samples(sfile)
        assert len(rows) == 3
        # lm-eval's score is the mean of the per-sample scores it logged
        assert data["results"][task]["acc,none"] == pytest.approx(sum(r["acc"] for r in rows) / 3)
        # and each per-sample acc is argmax(loglikelihood) == target
        for r in rows:
            lls = [float(resp[0][0]) for resp in r["resps"]]
            assert r["acc"] == float(lls.index(max(lls)) == int(r["target"]))
    assert "eu_mini_eus_trivia" in res.stdout and "(4/4)" in res.stdout


def test_aggregate_of_the_run(eu_mini_run, cli):
    _, out, _ = eu_mini_run
    res = cli("eval", "aggregate", str(out), "--suite", "eu-mini", "--format", "json")
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)["models"]["tiny"]
    assert model["coverage"]["eu"] == {"tasks": 4, "of": 4}
    assert model["languages"]["eu"] == pytest.approx(sum(model["tasks"].values()) / 4, abs=1e-3)


def test_mlflow_nested_run_under_the_variant(eu_mini_run):
    from latxa.components import tracking
    from mlflow import MlflowClient

    _, out, uri = eu_mini_run
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_name == "exp_2_101"]
    evals = [r for r in runs if r.data.tags.get(tracking.TAG_STAGE) == "eval"]
    assert len(parent) == 1 and len(evals) == 1
    ev = evals[0]
    assert ev.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    assert ev.data.tags[tracking.TAG_VARIANT] == "exp_2_101"
    results_files = sorted((out / "tiny").glob("results_*.json"))
    results = {t: m for f in results_files for t, m in json.loads(f.read_text())["results"].items()}
    for task, metrics in results.items():
        assert ev.data.metrics[tracking.eval_task_metric("eu-mini", task)] == pytest.approx(100 * metrics["acc,none"])
    assert ev.data.metrics[tracking.eval_mean_metric("eu-mini", "eu")] == pytest.approx(
        sum(100 * m["acc,none"] for m in results.values()) / 4)
    arts = {a.path for a in client.list_artifacts(ev.info.run_id, "eval")}
    assert {"eval/aggregate.json", "eval/tables.md", "eval/languages.png", "eval/categories.png", "eval/lm_eval"} <= arts
    assert [a.path for a in client.list_artifacts(ev.info.run_id, "eval/lm_eval")] == [f"eval/lm_eval/{f.name}" for f in results_files]


def test_eval_log_nests_a_second_evaluation_under_the_same_variant_run(eu_mini_run, cli):
    from latxa.components import tracking
    from mlflow import MlflowClient

    _, out, uri = eu_mini_run
    res = cli("eval", "log", str(out), "--name", "tiny", "--suite", "eu-mini", "--variant", "exp_2_101",
              "--tracking-uri", uri)
    assert res.returncode == 0, res.stderr[-2000:]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(tracking.DEFAULT_EXPERIMENT).experiment_id])
    parents = [r for r in runs if r.info.run_name == "exp_2_101"]
    evals = [r for r in runs if r.data.tags.get(tracking.TAG_STAGE) == "eval"]
    assert len(parents) == 1 and len(evals) == 2  # found the existing variant run, did not make another
    assert {r.data.tags["mlflow.parentRunId"] for r in evals} == {parents[0].info.run_id}
    assert res.stdout.strip() in {r.info.run_id for r in evals}


def test_openai_compatible_endpoint(tiny_model, tmp_path):
    """A real OpenAI-compatible server (the serving layer's routes) on the tiny model, eu-mini-gen through it."""
    uvicorn = pytest.importorskip("uvicorn")
    openai_api = pytest.importorskip("latxa.serving.openai_api")
    from fastapi import FastAPI

    from latxa.components.eval.runner import run_eval
    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import GenerationSettings, ModelSpec

    app = FastAPI()
    calls = []

    @app.middleware("http")
    async def count(request, call_next):
        calls.append(request.url.path)
        return await call_next(request)

    settings = GenerationSettings(temperature=0.0, system_prompt=None, max_tokens=8)
    openai_api.add_openai_routes(app, LocalBackends([ModelSpec(name="tiny", path=str(tiny_model), generation=settings)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        run = run_eval(f"http://127.0.0.1:{port}", "eu-mini-gen", tmp_path / "out", limit=2,
                       tasks=["eu_mini_gen_qnli"], served_model="tiny")
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
    assert calls.count("/v1/chat/completions") == 2
    assert run.spec.lm_type == "local-chat-completions" and run.results_path.parent.name == "tiny"
    score = run.results["results"]["eu_mini_gen_qnli"]["exact_match,strict_match"]
    rows = _samples(run.samples_paths[0])
    assert len(rows) == 2
    assert score == pytest.approx(sum(r["exact_match"] for r in rows) / 2)
    messages = json.loads(rows[0]["arguments"]["gen_args_0"]["arg_0"][0])
    assert [m["role"] for m in messages][-2:] == ["assistant", "user"]  # few-shot as multi-turn chat
    assert rows[0]["target"] in ("A", "B")


def test_kfp_component_under_kfp_local(tiny_model, tmp_path):
    from kfp import dsl, local
    from kfp.dsl import Model

    from latxa.pipelines.steps import evaluate_model
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", *OFFLINE)}
    os.environ.update({"MLFLOW_TRACKING_URI": uri, **OFFLINE})
    try:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
                   workspace_root=str(tmp_path / "ws"))

        @dsl.pipeline(name="eval-tiny")
        def pipe(model_dir: str):
            imp = dsl.importer(artifact_uri=model_dir, artifact_class=Model, reimport=False)
            evaluate_model(suite="eu-mini", model=imp.output, limit=2, tasks="eu_mini_qnli", variant="exp_1_101",
                     experiment="kfp-eval")

        pipe(model_dir=str(tiny_model))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (exec_out,) = list((tmp_path / "root").glob("eval-tiny-*/evaluate-model/executor_output.json"))
    out = json.loads(exec_out.read_text())
    metrics = out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    results = out["artifacts"]["results"]["artifacts"][0]
    results_json = Path(results["uri"]) / results["metadata"]["results_json"]
    data = json.loads(results_json.read_text())
    assert list(data["results"]) == ["eu_mini_qnli"] and data["n-samples"]["eu_mini_qnli"]["effective"] == 2
    assert metrics["eval.eu-mini.eu_mini_qnli"] == pytest.approx(100 * data["results"]["eu_mini_qnli"]["acc,none"])
    assert metrics["eval.eu-mini.n_tasks_eu"] == 1
    assert out["parameterValues"]["Output"] == str(results_json)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(results["metadata"]["mlflow_run_id"])
    assert run.data.tags["variant"] == "exp_1_101" and "mlflow.parentRunId" in run.data.tags
    assert client.get_experiment(run.info.experiment_id).name == "kfp-eval"     # the experiment parameter
