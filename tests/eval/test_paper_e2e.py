"""The paper suite end to end, offline, on the tiny model under the study's real model names: all 29 benchmarks
from the stand-in mirror, per-task shots, the chat template by model kind, --resume, the paper's tables, and the
configs lm-eval wrote equal to `latxa eval tasks --resolved`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latxa.components.eval.registry import default_registry

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BASE = "meta-llama__Llama-3.1-8B"
VARIANT = "HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101"
COMPARED = ("doc_to_text", "doc_to_choice", "doc_to_target", "target_delimiter", "fewshot_delimiter", "num_fewshot",
            "test_split", "validation_split", "training_split", "fewshot_split", "output_type", "metric_list",
            "filter_list", "generation_kwargs", "dataset_path", "dataset_name", "dataset_kwargs", "process_docs",
            "process_results")


def latxa(*args: str, env: dict | None = None, timeout: float = 1500) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("latxa")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def by_task(folder: Path) -> dict[str, dict]:
    """top-level task (the one each file was run for) -> its results file."""
    out = {}
    for path in sorted(folder.glob("results_*.json")):
        data = json.loads(path.read_text())
        out[data["latxa"]["task"]] = data
    return out


@pytest.fixture(scope="module")
def paper_run(paper_mirror, hf_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_out")
    env = {"HF_HOME": str(hf_home)}
    res = latxa("eval", "run", "--model", "meta-llama/Llama-3.1-8B", "--suite", "paper", "--datasets", str(paper_mirror),
                "--limit", "2", "--out", str(out), "--format", "json", env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return out, env, res


def test_all_29_tasks_complete_offline_from_the_mirror(paper_run):
    out, _, res = paper_run
    files = by_task(out / BASE)
    assert sorted(files) == sorted(default_registry().suite("paper").tasks)
    for task, data in files.items():
        assert task in data["results"], task
        leaves = data["group_subtasks"]
        flat = [t for ts in leaves.values() for t in ts if t not in leaves] or [task]
        assert all(data["n-samples"][leaf]["effective"] == 2 for leaf in flat if leaf in data["n-samples"]), task
    assert len(files["eus_exams_eu"]["group_subtasks"]["eus_exams_eu"]) == 4
    assert len(files["bbq"]["group_subtasks"]["bbq"]) == 18 and len(files["basqbbq"]["group_subtasks"]["basqbbq"]) == 16
    assert {"acc,none", "bias,none"} <= set(files["bbq"]["results"]["bbq"])
    assert "exact_match,flexible-extract" in files["mgsm_native_cot_eu"]["results"]["mgsm_native_cot_eu"]
    assert "[29/29]" in res.stderr


def test_five_shots_four_for_the_bias_tasks_and_no_chat_template_for_a_base_model(paper_run):
    out, _, _ = paper_run
    for task, data in by_task(out / BASE).items():
        want = 4 if task in ("bbq", "basqbbq") else 5
        assert data["n-shot"] and set(data["n-shot"].values()) == {want}, task
        assert all(c["num_fewshot"] == want for c in data["configs"].values()), task
        assert data["chat_template"] is None and data["fewshot_as_multiturn"] is False, task
        assert data["latxa"]["model_kind"] == "base" and data["latxa"]["apply_chat_template"] is False
        assert data["config"]["model"] == "hf" and data["config"]["model_args"].startswith("pretrained=meta-llama/Llama-3.1-8B")
    # a base model's prompt is plain text: five "Galdera: ...Erantzuna: X" blocks, then the question
    (samples,) = (out / BASE).glob("samples_eus_proficiency_*.jsonl")
    prompt = json.loads(samples.read_text().splitlines()[0])["arguments"]["gen_args_0"]["arg_0"]
    assert "<|start_header_id|>" not in prompt and prompt.count("Galdera:") == 6


def test_aggregate_fills_every_cell_of_the_language_means(paper_run):
    out, _, _ = paper_run
    res = latxa("eval", "aggregate", str(out), "--format", "json")
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)["models"][BASE]
    assert model["coverage"] == {"eu": {"tasks": 14, "of": 14}, "en": {"tasks": 9, "of": 9}, "es": {"tasks": 4, "of": 4}}
    assert all(model["languages"][lang] is not None for lang in ("eu", "en", "es"))
    assert model["missing"] == [] and model["notes"] == [] and model["unregistered_tasks"] == []
    assert set(model["extra"]) == {"bbq", "basqbbq"}


def test_written_configs_equal_the_resolved_dump(paper_run):
    out, env, _ = paper_run
    res = latxa("eval", "tasks", "--suite", "paper", "--resolved", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    resolved = json.loads(res.stdout)
    written = {t: c for data in by_task(out / BASE).values() for t, c in data["configs"].items()}
    assert sorted(written) == sorted(resolved["configs"])
    for task, cfg in written.items():
        for key in COMPARED:
            assert cfg.get(key) == resolved["configs"][task].get(key), (task, key)
    groups = {g: s for data in by_task(out / BASE).values() for g, s in data["group_subtasks"].items()}
    assert groups == resolved["group_subtasks"]


def test_a_finetuned_variant_runs_from_its_branch_with_the_chat_template(paper_run, paper_mirror):
    out, env, _ = paper_run
    res = latxa("eval", "run", "--model", "exp_2_101", "--suite", "paper", "--task", "arc_eu_easy", "--task", "bbq",
                "--datasets", str(paper_mirror), "--limit", "2", "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    files = by_task(out / VARIANT)
    assert sorted(files) == ["arc_eu_easy", "bbq"]
    for task, data in files.items():
        assert data["chat_template"] and data["fewshot_as_multiturn"] is True, task
        assert data["latxa"]["model_kind"] == "finetuned" and data["latxa"]["variant"] == "exp_2_101"
        assert "revision=exp_2_101" in data["config"]["model_args"]
        assert set(data["n-shot"].values()) == {4 if task == "bbq" else 5}
    (samples,) = (out / VARIANT).glob("samples_arc_eu_easy_*.jsonl")
    prompt = json.loads(samples.read_text().splitlines()[0])["arguments"]["gen_args_0"]["arg_0"]
    assert prompt.count("<|start_header_id|>user<|end_header_id|>") == 6       # 5 shots as turns + the question
    assert prompt.count("<|start_header_id|>assistant<|end_header_id|>") == 6  # 5 answers + the generation prompt


def test_resume_skips_finished_tasks_and_reruns_a_missing_one(paper_run, paper_mirror):
    out, env, _ = paper_run
    folder = out / BASE
    before = sorted(folder.glob("results_*.json"))
    victim = next(p for p in before if json.loads(p.read_text())["latxa"]["task"] == "mmlu_es")
    victim.unlink()
    res = latxa("eval", "run", "--model", "meta-llama/Llama-3.1-8B", "--suite", "es", "--datasets", str(paper_mirror),
                "--limit", "2", "--out", str(out), "--resume", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    after = sorted(folder.glob("results_*.json"))
    new = sorted(set(after) - set(before))
    assert [json.loads(p.read_text())["latxa"]["task"] for p in new] == ["mmlu_es"]
    assert res.stderr.count("skipped (--resume)") == 3
    # other settings are other work: a different limit runs again
    res = latxa("eval", "run", "--model", "meta-llama/Llama-3.1-8B", "--suite", "es", "--task", "mmlu_es",
                "--datasets", str(paper_mirror), "--limit", "3", "--out", str(out), "--resume", env=env)
    assert res.returncode == 0 and "skipped (--resume)" not in res.stderr


def test_api_protocol_through_an_openai_compatible_endpoint(tiny_model, paper_mirror, tmp_path):
    """paper-api on a real OpenAI-compatible server (the serving layer's routes): multiple choice as one generated
    letter under the system instruction, exact match; MGSM as free generation without it."""
    import socket
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn")
    openai_api = pytest.importorskip("latxa.serving.openai_api")
    from fastapi import FastAPI, Request

    from latxa.components.eval.runner import run_eval
    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import GenerationSettings, ModelSpec

    app = FastAPI()
    bodies: list[dict] = []

    @app.middleware("http")
    async def record(request: Request, call_next):
        if request.url.path.endswith("/chat/completions"):
            bodies.append(json.loads(await request.body()))
        return await call_next(request)

    settings = GenerationSettings(temperature=0.0, system_prompt=None, max_tokens=16)
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
        run = run_eval(f"http://127.0.0.1:{port}", "paper-api", tmp_path / "out", limit=2, served_model="tiny",
                       tasks=["eus_trivia", "mgsm_native_cot_es"], datasets=paper_mirror)
    finally:
        server.should_exit = True
        thread.join(30)
    trivia = run.results["results"]["eus_trivia"]
    assert "exact_match,strict_match" in trivia and "acc,none" not in trivia
    assert "exact_match,flexible-extract" in run.results["results"]["mgsm_native_cot_es"]
    mc = [b for b in bodies if b["messages"][0]["role"] == "system"]
    assert len(mc) == 2 and len(bodies) == 4
    for body in mc:
        assert body["messages"][0]["content"] == "Respond always with a single letter: A, B, C or D."
        assert body["max_tokens"] == 1
        assert [m["role"] for m in body["messages"][1:]] == ["user", "assistant"] * 5 + ["user"]
        assert all(m["content"] in "ABCD" for m in body["messages"][2:-1:2])   # few-shot answers are letters
    cfg = run.results["configs"]["eus_trivia"]
    assert cfg["output_type"] == "generate_until" and cfg["generation_kwargs"] == {"until": [], "max_gen_toks": 1}
    files = by_task(tmp_path / "out" / "tiny")
    assert files["eus_trivia"]["system_instruction"] == "Respond always with a single letter: A, B, C or D."
    assert files["mgsm_native_cot_es"]["system_instruction"] is None
