"""Runner argument handling: model folder / URL / HF name -> lm-eval model arguments, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

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


# ---- model kinds, hub names, GPU defaults, backends (argument building only: no GPU here) ----------------------
from latxa.components.eval import runner as runner_mod  # noqa: E402
from latxa.components.eval.runner import ensure_backend  # noqa: E402


def test_a_variant_code_is_its_branch_of_the_instruct_repository_and_gets_the_chat_template():
    spec = model_spec("exp_2_101", check_loads=False)
    assert spec.model_args == {"pretrained": "HiTZ/Latxa-Llama-3.1-8B-Instruct", "revision": "exp_2_101", "dtype": "auto"}
    assert spec.kind == "finetuned" and spec.chat and spec.variant == "exp_2_101"
    assert spec.name == "HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101"          # the study's results folder name
    same = model_spec("HiTZ/Latxa-Llama-3.1-8B-Instruct", revision="exp_2_101", check_loads=False)
    assert same.model_args == spec.model_args and same.kind == "finetuned"
    baseline = model_spec("exp_2_000", check_loads=False)            # no data: the backbone itself
    assert baseline.model_args["pretrained"] == "meta-llama/Llama-3.1-8B-Instruct" and baseline.kind == "instruct"
    with pytest.raises(EvalError, match="exp_0_001 was not trained in the study"):
        model_spec("exp_0_001", check_loads=False)


def test_base_models_get_no_chat_template_and_instruct_ones_do():
    for name in ("meta-llama/Llama-3.1-8B", "HiTZ/Latxa-Llama-3.1-8B"):
        spec = model_spec(name, check_loads=False)
        assert spec.kind == "base" and not spec.chat, name
        kw = simple_evaluate_kwargs(spec, ["arc_eu_easy"])
        assert kw["apply_chat_template"] is False and kw["fewshot_as_multiturn"] is False
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct", "HiTZ/Latxa-Llama-3.1-70B-Instruct"):
        spec = model_spec(name, check_loads=False)
        assert spec.kind == "instruct" and spec.chat, name
    assert not model_spec("exp_2_101", chat=False, check_loads=False).chat          # --no-chat wins


def test_gpu_defaults_bf16_batch_auto_and_parallelize_for_70b():
    cpu = model_spec("exp_2_101", check_loads=False)
    assert cpu.model_args["dtype"] == "auto" and cpu.batch_size == 1
    gpu = model_spec("exp_2_101", device="cuda", check_loads=False)
    assert gpu.model_args["dtype"] == "bfloat16" and gpu.batch_size == "auto" and "parallelize" not in gpu.model_args
    big = model_spec("HiTZ/Latxa-Llama-3.1-70B-Instruct", device="cuda", attn_implementation="flash_attention_2",
                     check_loads=False)
    assert big.model_args == {"pretrained": "HiTZ/Latxa-Llama-3.1-70B-Instruct", "dtype": "bfloat16",
                              "attn_implementation": "flash_attention_2", "parallelize": True}
    assert big.name == "HiTZ__Latxa-Llama-3.1-70B-Instruct"
    assert "parallelize" not in model_spec("HiTZ/Latxa-Llama-3.1-70B-Instruct", device="cuda", parallelize=False,
                                           check_loads=False).model_args
    assert model_spec("exp_2_101", batch_size="auto:10", check_loads=False).batch_size == "auto:10"
    with pytest.raises(EvalError, match="--batch-size big"):
        model_spec("exp_2_101", batch_size="big", check_loads=False)


def test_vllm_arguments_tensor_parallel_over_the_node_for_70b(monkeypatch):
    monkeypatch.setattr(runner_mod, "cuda_device_count", lambda: 4)
    big = model_spec("meta-llama/Llama-3.1-70B-Instruct", backend="vllm", device="cuda", max_length=4096,
                     check_loads=False)
    assert big.lm_type == "vllm" and big.batch_size == "auto"
    assert big.model_args == {"pretrained": "meta-llama/Llama-3.1-70B-Instruct", "dtype": "bfloat16",
                              "tensor_parallel_size": 4, "gpu_memory_utilization": 0.9, "max_model_len": 4096}
    small = model_spec("exp_1_011", backend="vllm", device="cuda", check_loads=False)
    assert small.model_args["tensor_parallel_size"] == 1 and small.model_args["revision"] == "exp_1_011"
    assert model_spec("exp_1_011", backend="vllm", device="cuda", tensor_parallel_size=2,
                      check_loads=False).model_args["tensor_parallel_size"] == 2
    with pytest.raises(EvalError, match="--backend tgi: choose hf or vllm"):
        model_spec("exp_1_011", backend="tgi", check_loads=False)


def test_vllm_is_refused_in_one_sentence_where_it_is_not_installed():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    spec = model_spec("exp_2_101", backend="vllm", device="cuda", check_loads=False)
    with pytest.raises(EvalError) as err:
        ensure_backend(spec)
    assert str(err.value) == ("--backend vllm needs the vllm package, which is not installed here (install it on a "
                              "GPU machine: pip install vllm; or use --backend hf).")


def test_cli_vllm_refusal_and_a_hub_model_missing_from_the_cache(cli, tmp_path, hf_home):
    import importlib.util

    env = {"HF_HOME": str(hf_home)}
    if importlib.util.find_spec("vllm") is None:
        res = cli("eval", "run", "--model", "exp_2_101", "--backend", "vllm", "--device", "cuda", "--suite", "paper",
                  "--out", str(tmp_path / "o"), env=env)
        assert res.returncode == 2 and res.stderr.strip().startswith("error: --backend vllm needs the vllm package")
    res = cli("eval", "run", "--model", "exp_1_101", "--suite", "paper", "--out", str(tmp_path / "o"), env=env)
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: HiTZ/Latxa-Llama-3.1-8B-Instruct (revision exp_1_101) is not in the local "
                                  "Hugging Face cache: download it where there is internet (`huggingface-cli download "
                                  "HiTZ/Latxa-Llama-3.1-8B-Instruct --revision exp_1_101`) or give a model folder.")


def test_api_models_as_the_study_ran_them(monkeypatch, tmp_path):
    gpt = model_spec("openai:gpt-4o-2024-11-20")
    assert gpt.lm_type == "openai-chat-completions" and gpt.kind == "api" and gpt.chat
    assert gpt.args_string() == "model=gpt-4o-2024-11-20,max_length=8192,temperature=0.0,max_retries=5"
    assert gpt.args_for(True) == gpt.model_args                       # multiple choice: 1 generated letter
    assert gpt.args_for(False)["max_gen_toks"] == 1024                 # MGSM
    claude = model_spec("claude-3-5-sonnet-20241022")
    assert claude.lm_type == "anthropic-chat-completions" and claude.model_args["max_length"] == 10000
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EvalError, match="gpt-4o-2024-11-20 is an API model: set OPENAI_API_KEY"):
        ensure_backend(gpt)
    with pytest.raises(EvalError, match="gives no log-likelihoods: use --suite paper-api"):
        run_eval("openai:gpt-4o-2024-11-20", "paper", tmp_path)


def test_the_array_job_command_repeats_the_options_with_absolute_paths(tmp_path, monkeypatch):
    from latxa.cli.commands.eval import _job_argv

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m1").mkdir()
    opts = dict(suite="paper", out=Path("out"), limit=2, task=["bbq"], name=None, revision=None, kind=None, chat=None,
                backend="hf", device="cuda", dtype=None, batch_size="auto:4", tensor_parallel_size=None,
                parallelize=False, attn_implementation=None, max_length=None, num_fewshot=None,
                datasets=Path("mirror"), bias_data=None, mcq_to_generative=None, resume=True, include_path=None,
                served_model=None, tokenizer=None, variant=None, mlflow=True)
    argv = _job_argv(["m1", "exp_2_101"], opts)
    assert argv == ["latxa", "eval", "run", "--model", str(tmp_path / "m1"), "--model", "exp_2_101",
                    "--suite", "paper", "--out", str(tmp_path / "out"), "--limit", "2", "--task", "bbq",
                    "--backend", "hf", "--device", "cuda", "--batch-size", "auto:4", "--no-parallelize",
                    "--datasets", str(tmp_path / "mirror"), "--resume", "--mlflow", "--array-task"]
