"""Runner argument handling: model folder / URL / HF name -> lm-eval model arguments, and bad input."""

from __future__ import annotations

import json

import pytest

from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import default_registry
from latxa.components.eval.runner import model_spec, resolve_tasks, run_eval, simple_evaluate_kwargs


def test_url_becomes_local_chat_completions_with_the_chat_route():
    spec = model_spec("http://127.0.0.1:8000", served_model="exp_2_101")
    assert spec.lm_type == "local-chat-completions" and spec.is_url and spec.chat
    assert spec.model_args["base_url"] == "http://127.0.0.1:8000/v1/chat/completions"
    assert spec.model_args["model"] == "exp_2_101" and spec.name == "exp_2_101"
    assert model_spec("https://arena.example/v1/").model_args["base_url"] == "https://arena.example/v1/chat/completions"
    kwargs = simple_evaluate_kwargs(spec, ["eu_mini_gen_qnli"], limit=3)
    assert kwargs["apply_chat_template"] and kwargs["fewshot_as_multiturn"] and "device" not in kwargs


def test_completions_url_needs_a_tokenizer(tmp_path):
    with pytest.raises(EvalError, match="needs --tokenizer"):
        model_spec("http://h:1/v1/completions", chat=False)
    spec = model_spec("http://h:1", chat=False, tokenizer=str(tmp_path))
    assert spec.lm_type == "local-completions" and spec.model_args["base_url"] == "http://h:1/v1/completions"


def test_model_folder_args_and_chat_detection(tiny_model):
    spec = model_spec(str(tiny_model), device="cpu", batch_size=2)
    assert spec.lm_type == "hf" and spec.model_args["pretrained"] == str(tiny_model.resolve())
    assert spec.chat  # the tiny model carries the Llama-3.1 chat template
    assert not model_spec(str(tiny_model), chat=False).chat
    kwargs = simple_evaluate_kwargs(spec, ["eu_mini_qnli"], limit=2)
    assert kwargs["batch_size"] == 2 and kwargs["device"] == "cpu" and "batch_size" not in kwargs["model_args"]


def test_bad_models_are_one_sentence(tmp_path):
    with pytest.raises(EvalError, match="no such model folder"):
        model_spec(str(tmp_path / "missing"))
    with pytest.raises(EvalError, match=r"not a Hugging Face model folder \(no config.json\)"):
        model_spec(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(EvalError, match="the model folder does not load"):
        model_spec(str(tmp_path))


def test_chat_endpoint_on_a_loglikelihood_suite_points_to_the_generative_one(tmp_path):
    with pytest.raises(EvalError, match="use --suite eu-mini-gen"):
        run_eval("http://127.0.0.1:9", "eu-mini", tmp_path)


def test_unknown_or_foreign_tasks_and_bad_limit(tmp_path, tiny_model):
    reg = default_registry()
    with pytest.raises(EvalError, match="unknown task"):
        resolve_tasks("eu-mini", ["eu_mini_nope"], reg)
    with pytest.raises(EvalError, match="not in suite 'eu-mini'"):
        resolve_tasks("eu-mini", ["eus_trivia"], reg)
    with pytest.raises(EvalError, match="--limit must be positive"):
        run_eval(str(tiny_model), "eu-mini", tmp_path, limit=0)


def test_cli_bad_model_exits_2_with_one_line(cli, tmp_path):
    res = cli("eval", "run", "--model", str(tmp_path), "--suite", "eu-mini", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {tmp_path}: not a Hugging Face model folder (no config.json)."
    res = cli("eval", "run", "--model", str(tmp_path), "--suite", "nope", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "unknown suite 'nope'" in res.stderr
