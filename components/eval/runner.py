"""Run lm-eval through its Python API on a model folder, a hub model, an OpenAI-compatible endpoint or an API model.

``run_eval`` is what ``latxa eval run``, the KFP component and the benchmark script call. It resolves the
suite from the registry, builds lm-eval's model once, and then, as the study did (one ``lm_eval`` call per
benchmark), runs ``lm_eval.simple_evaluate`` once per registry task with that task's few-shot count, writing
lm-eval's own files with its ``EvaluationTracker``::

    OUT/<name>/results_<ISO time>.json           (one per task: results, configs, n-shot, ... and "latxa")
    OUT/<name>/samples_<task>_<ISO time>.jsonl   (one line per evaluated document)

so ``latxa eval aggregate OUT`` reads it like the study's results folders, and ``resume=True`` skips the tasks
a previous run already finished with the same settings.

How a model is prompted follows its kind (:mod:`latxa.components.eval.models`): base models get plain few-shot
prompts; instruct and fine-tuned models the chat template with the few-shot examples as turns; ``chat=`` overrides.
Each results file records the kind and those choices under ``"latxa"``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from latxa.components.eval import models as study
from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import Benchmark, Registry, Suite, default_registry

URL_RE = re.compile(r"^https?://", re.I)
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
BACKENDS = ("hf", "vllm")
BATCH_RE = re.compile(r"^(auto(:\d+)?|\d+)$")
RECORD_KEY = "latxa"


@dataclass
class ModelSpec:
    """What lm-eval gets: its model type, its model_args, and the name results are filed under."""

    lm_type: str                  # hf | vllm | local-chat-completions | local-completions | openai-/anthropic-chat-completions
    model_args: dict[str, Any]
    name: str
    is_url: bool
    chat: bool
    device: str = "cpu"
    batch_size: int | str = 1
    kind: str = "unknown"         # base | instruct | finetuned | api | endpoint | unknown
    model_name: str = ""          # what lm-eval records as the model name (pretrained / model)
    variant: str | None = None    # a trained variant's code (MLflow nesting)
    provider: str | None = None   # API models: openai | anthropic

    @property
    def is_api(self) -> bool:
        return self.provider is not None

    @property
    def backend(self) -> str:
        return self.lm_type

    def args_for(self, generative_mc: bool) -> dict[str, Any]:
        """Model arguments for one task: the study ran the API models' free-generation tasks (MGSM, i.e. not the
        multiple-choice-as-a-letter ones) with max_gen_toks=1024."""
        args = dict(self.model_args)
        if self.is_api and not generative_mc:
            args["max_gen_toks"] = 1024
        return args

    def args_string(self, args: dict | None = None) -> str:
        """model_args as the lm_eval CLI takes them (what the study's results record)."""
        return ",".join(f"{k}={v}" for k, v in (args if args is not None else self.model_args).items())


@dataclass
class EvalRun:
    results_paths: list[Path]
    samples_paths: list[Path]
    results: dict                  # the per-task files merged: results, configs, n-shot, n-samples, group_subtasks
    spec: ModelSpec
    suite: str
    tasks: list[str]
    limit: int | float | None
    seconds: float
    resumed: list[str] = field(default_factory=list)
    aggregate: dict = field(default_factory=dict)

    @property
    def results_path(self) -> Path:
        """The latest results file (the only one for a one-task run)."""
        return self.results_paths[-1]


def is_url(model: str) -> bool:
    return bool(URL_RE.match(str(model)))


def _endpoint(url: str, chat: bool) -> str:
    """Normalise a server URL to the OpenAI route lm-eval posts to."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions") or url.endswith("/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + ("/chat/completions" if chat else "/completions")


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("_") or "model"


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            return False
    return False


def cuda_device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPUs
        return 0


def _batch(batch_size: int | str | None, device: str) -> int | str:
    if batch_size is None:
        return "auto" if device.startswith("cuda") else 1
    text = str(batch_size).strip()
    if not BATCH_RE.match(text) or text == "0":
        raise EvalError(f"--batch-size {batch_size}: give a positive number, auto or auto:N.")
    return int(text) if text.isdigit() else text


def _api_spec(provider: str, model: str, name: str | None) -> ModelSpec:
    args = {"model": model, **study.API_ARGS[provider]}
    return ModelSpec(study.API_PROVIDERS[provider], args, _sanitize(name or model), False, True,
                     batch_size=10, kind="api", model_name=model, provider=provider)


def _url_spec(model: str, *, name, served_model, chat, tokenizer, max_length, max_gen_toks, num_concurrent) -> ModelSpec:
    use_chat = True if chat is None else chat
    if not use_chat and not tokenizer:
        raise EvalError("a /v1/completions endpoint needs --tokenizer (a local tokenizer folder) to score log-likelihoods.")
    args: dict[str, Any] = {
        "base_url": _endpoint(model, use_chat),
        "model": served_model or "default",
        "num_concurrent": num_concurrent,
        "max_retries": 3,
        "max_gen_toks": max_gen_toks,
        "tokenized_requests": False,
    }
    if tokenizer:
        args.update(tokenizer=tokenizer, tokenizer_backend="huggingface")
    elif use_chat:
        args["tokenizer_backend"] = "none"
    if max_length:
        args["max_length"] = max_length
    return ModelSpec("local-chat-completions" if use_chat else "local-completions", args,
                     _sanitize(name or served_model or re.sub(r"^https?://", "", model)), True, use_chat,
                     kind="endpoint", model_name=served_model or "default")


def _check_cached(repo: str, revision: str | None) -> None:
    """A hub name must already be in the local HF cache (runs are offline); one sentence if it is not."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", revision=revision)
    if not isinstance(found, str):
        rev = f" --revision {revision}" if revision else ""
        raise EvalError(f"{repo}{f' (revision {revision})' if revision else ''} is not in the local Hugging Face "
                        f"cache: download it where there is internet (`huggingface-cli download {repo}{rev}`) "
                        f"or give a model folder.")


def model_spec(model: str, *, name: str | None = None, served_model: str | None = None, chat: bool | None = None,
               kind: str | None = None, device: str = "cpu", dtype: str | None = None,
               batch_size: int | str | None = None, max_length: int | None = None, tokenizer: str | None = None,
               max_gen_toks: int = 256, num_concurrent: int = 1, revision: str | None = None, backend: str = "hf",
               tensor_parallel_size: int | None = None, parallelize: bool | None = None,
               attn_implementation: str | None = None, gpu_memory_utilization: float = 0.9,
               check_loads: bool = True) -> ModelSpec:
    """Turn ``--model`` into lm-eval model arguments; bad input raises :class:`EvalError`.

    ``model``: a model folder, an ``http(s)://`` endpoint, a hub ``org/name`` (in the local cache), a variant
    code (``exp_2_101``: its branch of HiTZ/Latxa-Llama-3.1-8B-Instruct), or an API model
    (``openai:gpt-4o-2024-11-20``, ``anthropic:claude-3-5-sonnet-20241022``, or those two names bare).
    GPU defaults: bf16, batch size ``auto``, ``parallelize`` for 70B models on ``hf``, every visible GPU as
    ``tensor_parallel_size`` for 70B models on ``vllm``.
    """
    model = str(model).strip()
    if not model:
        raise EvalError("--model is empty: give a model folder, an http(s):// endpoint URL, a Hugging Face name or a variant code.")
    if backend not in BACKENDS:
        raise EvalError(f"--backend {backend}: choose hf or vllm.")
    if kind is not None and kind not in study.KINDS[:3]:
        raise EvalError(f"--kind {kind}: choose base, instruct or finetuned.")
    provider, _, api_model = model.partition(":")
    if api_model and provider in study.API_PROVIDERS and not is_url(model):
        return _api_spec(provider, api_model, name)
    if model in study.API_MODELS:
        return _api_spec(study.API_MODELS[model], model, name)
    if is_url(model):
        return _url_spec(model, name=name, served_model=served_model, chat=chat, tokenizer=tokenizer,
                         max_length=max_length, max_gen_toks=max_gen_toks, num_concurrent=num_concurrent)

    gpu = device.startswith("cuda")
    path = Path(model).expanduser()
    known = None if path.exists() else study.lookup(model, revision)
    variant = None
    if path.exists():
        if not path.is_dir():
            raise EvalError(f"{path}: not a model folder (give the folder holding config.json).")
        if not (path / "config.json").is_file():
            raise EvalError(f"{path}: not a Hugging Face model folder (no config.json).")
        if check_loads:
            _check_loads(path)
        pretrained = str(path.resolve())
        model_kind = kind or ("instruct" if _has_chat_template(path) else "base")
        default_name, size = path.resolve().name, study.guess_size(path.resolve().name)
    elif known is not None:
        pretrained, revision, variant = known.hf_name, known.revision, known.variant
        model_kind, default_name, size = kind or known.kind, known.results_name, known.size
    elif "/" in model and not model.startswith((".", "/")) and model.count("/") == 1:
        pretrained = model   # a hub name outside the study: only works where it is cached (runs are offline)
        model_kind = kind or ("instruct" if re.search(r"instruct|chat", model, re.I) else "base")
        default_name = model.replace("/", "__") + (f"__{revision}" if revision else "")
        size = study.guess_size(model)
    else:
        raise EvalError(f"{model}: no such model folder (and not an http(s):// URL, an org/name model or a variant code).")
    if not path.exists() and check_loads:
        _check_cached(pretrained, revision)

    use_dtype = dtype or ("bfloat16" if gpu else "auto")
    args: dict[str, Any] = {"pretrained": pretrained}
    if revision:
        args["revision"] = revision
    args["dtype"] = use_dtype
    if attn_implementation and backend == "hf":
        args["attn_implementation"] = attn_implementation
    if backend == "hf":
        if parallelize if parallelize is not None else (gpu and size == "70B"):
            args["parallelize"] = True
        if max_length:
            args["max_length"] = max_length
    else:
        tp = tensor_parallel_size or (max(cuda_device_count(), 1) if size == "70B" else 1)
        if tp < 1:
            raise EvalError(f"--tensor-parallel-size {tp}: give at least 1.")
        args.update(tensor_parallel_size=tp, gpu_memory_utilization=gpu_memory_utilization)
        if max_length:
            args["max_model_len"] = max_length
    return ModelSpec(backend, args, _sanitize(name or default_name), False,
                     (model_kind != "base") if chat is None else chat, device=device,
                     batch_size=_batch(batch_size, "cuda" if backend == "vllm" else device),
                     kind=model_kind, model_name=pretrained, variant=variant)


def _check_loads(path: Path) -> None:
    """Fail early, in one sentence, on a folder transformers cannot read (lm-eval's traceback is long)."""
    try:
        from transformers import AutoConfig, AutoTokenizer

        AutoConfig.from_pretrained(path)
        AutoTokenizer.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - any failure here means the folder does not load
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EvalError(f"{path}: the model folder does not load ({first}).") from err
    weights = list(path.glob("*.safetensors")) + list(path.glob("pytorch_model*.bin")) + list(path.glob("*.safetensors.index.json"))
    if not weights:
        raise EvalError(f"{path}: the model folder does not load (no model.safetensors or pytorch_model.bin weights).")


def ensure_backend(spec: ModelSpec) -> None:
    """Refuse, in one sentence, what cannot run here: vLLM without the vllm package, an API model without its key."""
    import importlib.util

    if spec.lm_type == "vllm" and importlib.util.find_spec("vllm") is None:
        raise EvalError("--backend vllm needs the vllm package, which is not installed here "
                        "(install it on a GPU machine: pip install vllm; or use --backend hf).")
    if spec.lm_type == "vllm" and not spec.device.startswith("cuda"):
        raise EvalError("--backend vllm runs on GPUs only: add --device cuda (or use --backend hf).")
    if spec.is_api:
        key = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[spec.provider]
        if not os.environ.get(key):
            raise EvalError(f"{spec.model_name} is an API model: set {key} in the environment.")


def resolve_tasks(suite: str, tasks: list[str] | None, registry: Registry) -> tuple[Suite, list[str]]:
    chosen = registry.suite(suite)
    if not tasks:
        return chosen, chosen.tasks
    known = set(chosen.tasks)
    for t in tasks:
        registry.benchmark(t)  # unknown anywhere -> EvalError with a suggestion
        if t not in known:
            raise EvalError(f"task '{t}' is not in suite '{suite}' ({', '.join(chosen.tasks)}).")
    return chosen, list(tasks)


def task_manager(suite: Suite, include_path: str | Path | None = None):
    from latxa.components.eval.taskdefs import task_manager as tm

    return tm(suite, include_path)


def simple_evaluate_kwargs(spec: ModelSpec, tasks: list, *, limit=None, num_fewshot=None, seed: int = 1234,
                           log_samples: bool = True, tm=None, gen_kwargs: dict | None = None,
                           system_instruction: str | None = None) -> dict:
    """The arguments the runner passes to ``lm_eval.simple_evaluate`` for one task (also used by the benchmark)."""
    kwargs = dict(model=spec.lm_type, model_args=dict(spec.model_args), tasks=list(tasks), num_fewshot=num_fewshot,
                  limit=limit, log_samples=log_samples, apply_chat_template=spec.chat, fewshot_as_multiturn=spec.chat,
                  system_instruction=system_instruction, task_manager=tm, random_seed=0, numpy_random_seed=seed,
                  torch_random_seed=seed, fewshot_random_seed=seed)
    if gen_kwargs:
        kwargs["gen_kwargs"] = gen_kwargs
    if not spec.is_url:
        kwargs["batch_size"] = spec.batch_size
        kwargs["device"] = spec.device
    return kwargs


@dataclass(frozen=True)
class TaskSettings:
    """Everything that changes a task's result; a results file with the same settings is finished work."""

    task: str
    num_fewshot: int
    limit: int | float | None
    chat: bool
    generative_mc: bool
    system_instruction: str | None
    model_args: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def finished_tasks(model_dir: Path, wanted: list[TaskSettings]) -> set[str]:
    """Tasks with a results file in ``model_dir`` written with the same settings (for ``resume``)."""
    if not model_dir.is_dir():
        return set()
    want = {s.task: s.as_dict() for s in wanted}
    done: set[str] = set()
    for path in sorted(model_dir.glob("results_*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue   # a file cut short by a killed job is not finished work
        rec = (data.get(RECORD_KEY) or {}).get("settings") or {}
        task = rec.get("task")
        if task in want and rec == want[task] and task in (data.get("results") or {}):
            done.add(task)
    return done


def _merge(into: dict, data: dict) -> None:
    for key in ("results", "configs", "n-shot", "n-samples", "group_subtasks", "versions", "higher_is_better"):
        into.setdefault(key, {}).update(data.get(key) or {})
    for key, value in data.items():
        into.setdefault(key, value)


def _record(spec: ModelSpec, suite: Suite, settings: TaskSettings, data_desc: dict) -> dict:
    return {"suite": suite.name, "task": settings.task, "model_kind": spec.kind, "backend": spec.lm_type,
            "apply_chat_template": spec.chat, "fewshot_as_multiturn": spec.chat,
            "num_fewshot": settings.num_fewshot, "generative_mc": settings.generative_mc,
            "system_instruction": settings.system_instruction, "variant": spec.variant, "datasets": data_desc,
            "settings": settings.as_dict()}


def run_eval(model: str, suite: str = "eu-mini", out: str | Path = "eval-out", *, limit: int | float | None = None,
             tasks: list[str] | None = None, name: str | None = None, served_model: str | None = None,
             chat: bool | None = None, kind: str | None = None, device: str = "cpu", dtype: str | None = None,
             batch_size: int | str | None = None, max_length: int | None = None, num_fewshot: int | None = None,
             include_path: str | Path | None = None, tokenizer: str | None = None, seed: int = 1234,
             log_samples: bool = True, registry: Registry | None = None, revision: str | None = None,
             backend: str = "hf", tensor_parallel_size: int | None = None, parallelize: bool | None = None,
             attn_implementation: str | None = None, datasets: str | Path | None = None,
             bias_data: str | Path | None = None, mcq_to_generative: bool | None = None, resume: bool = False,
             progress: Callable[[str], None] | None = None) -> EvalRun:
    """Evaluate ``model`` on ``suite`` and write lm-eval's results (and samples) under ``out``, one file per task."""
    from latxa.components.eval import taskdefs
    from latxa.components.eval.mirror import DataSources, refs_from_configs

    registry = registry or default_registry()
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    chosen, task_names = resolve_tasks(suite, tasks, registry)
    if limit is not None and limit <= 0:
        raise EvalError(f"--limit must be positive (got {limit}).")
    spec = model_spec(model, name=name, served_model=served_model, chat=chat, kind=kind, device=device, dtype=dtype,
                      batch_size=batch_size, max_length=max_length, tokenizer=tokenizer, revision=revision,
                      backend=backend, tensor_parallel_size=tensor_parallel_size, parallelize=parallelize,
                      attn_implementation=attn_implementation)
    gen_mc = chosen.generative_mc if mcq_to_generative is None else mcq_to_generative
    if spec.is_url and spec.lm_type == "local-chat-completions" and not (chosen.generative or gen_mc):
        gen = "eu-mini-gen" if chosen.offline else None
        raise EvalError(f"suite '{suite}' scores log-likelihoods, which a chat endpoint cannot return"
                        + (f": use --suite {gen} (the same items as generation)" if gen else
                           ": use --suite paper-api (multiple choice as generation), or point --model at a "
                           "/v1/completions URL with --no-chat and --tokenizer")
                        + ".")
    if spec.is_api and not gen_mc:
        raise EvalError(f"{spec.model_name} gives no log-likelihoods: use --suite paper-api (or --mcq-to-generative).")
    if include_path and not Path(include_path).is_dir():
        raise EvalError(f"--include-path {include_path}: not a folder of lm-eval task YAMLs.")
    for var in OFFLINE_ENV:   # runs are offline: models and datasets come from local caches or the mirror
        os.environ[var] = "1"
    sources = DataSources.from_options(datasets, bias_data, suite=suite)
    ensure_backend(spec)

    tm = taskdefs.task_manager(chosen, include_path)
    missing = [t for t in task_names if t not in tm.task_index]
    if missing:
        raise EvalError(f"lm-eval does not know task(s) {', '.join(missing)}.")
    benches = {b.task if not chosen.generative else b.task.replace("eu_mini_", "eu_mini_gen_", 1): b
               for b in chosen.benchmarks}
    raw = taskdefs.task_tree(tm, task_names)
    sources.check(refs_from_configs(raw.leaves))
    tree = taskdefs.task_tree(tm, task_names, taskdefs.generative_mc) if gen_mc else raw

    plan: list[tuple[str, Benchmark, TaskSettings, str | None]] = []
    for task in task_names:
        bench = benches[task]
        leaves = {leaf: tree.leaves[leaf] for leaf in tree.leaves_under(task)}
        was_mc = any(raw.leaves[leaf].get("output_type") == "multiple_choice" for leaf in leaves)
        system = chosen.system_instruction if gen_mc and was_mc else None
        shots = bench.num_fewshot if num_fewshot is None else num_fewshot
        settings = TaskSettings(task, shots, limit, spec.chat, gen_mc and was_mc, system,
                                spec.args_string(spec.args_for(gen_mc and was_mc)))
        plan.append((task, bench, settings, system))
    out = Path(out)
    model_dir = out / spec.name
    done = finished_tasks(model_dir, [p[2] for p in plan]) if resume else set()

    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.loggers import EvaluationTracker

    lms: dict[str, Any] = {}
    merged: dict = {}
    results_paths: list[Path] = []
    samples_paths: list[Path] = []
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for i, (task, _bench, settings, system) in enumerate(plan, 1):
        if task in done:
            say(f"[{i}/{len(plan)}] {task}: finished before with the same settings, skipped (--resume)")
            continue
        say(f"[{i}/{len(plan)}] {task}: {settings.num_fewshot}-shot, "
            f"{'chat template' if spec.chat else 'no chat template'}{', generative multiple choice' if settings.generative_mc else ''}")
        args = spec.args_for(settings.generative_mc)
        key = json.dumps(args, sort_keys=True, default=str)
        try:
            if key not in lms:
                lms[key] = get_model(spec.lm_type).create_from_arg_obj(
                    args, {"batch_size": spec.batch_size, "device": spec.device} if not spec.is_url else {})
            tracker = EvaluationTracker(output_path=str(out))
            with sources.active():
                objs = [taskdefs.build(tree, task)]
                kwargs = simple_evaluate_kwargs(spec, objs, limit=limit, num_fewshot=settings.num_fewshot, seed=seed,
                                                log_samples=log_samples, tm=tm, system_instruction=system)
                kwargs["model"] = lms[key]
                kwargs.pop("model_args")
                results = simple_evaluate(evaluation_tracker=tracker, **kwargs)
        except EvalError:
            raise
        except OSError as err:
            raise EvalError(f"{model}: the model does not load ({str(err).splitlines()[0] if str(err) else err!r}).") from err
        if results is None:
            raise EvalError("lm-eval returned no results (non-zero rank in a distributed run).")
        samples = results.pop("samples", None) if log_samples else None
        # The model was built once and handed over as an object; record it as the lm_eval CLI would.
        results["config"].update(model=spec.lm_type, model_args=spec.args_string(args))
        results[RECORD_KEY] = _record(spec, chosen, settings,
                                      {"shipped": True} if chosen.offline else sources.describe())
        gct = tracker.general_config_tracker
        gct.model_source, gct.model_name, gct.model_name_sanitized = spec.lm_type, spec.model_name, spec.name
        tracker.save_results_aggregated(results=results, samples=samples)
        if samples:
            for task_name in results["configs"]:
                tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
            samples_paths += sorted(model_dir.glob(f"samples_*_{tracker.date_id}.jsonl"))
        path = model_dir / f"results_{tracker.date_id}.json"
        if not path.is_file():
            raise EvalError(f"lm-eval did not write {path}.")
        results_paths.append(path)
        _merge(merged, json.loads(path.read_text(encoding="utf-8")))
    seconds = time.perf_counter() - started
    if not results_paths:   # everything resumed: the run's record is the earlier files
        for path in sorted(model_dir.glob("results_*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if (data.get(RECORD_KEY) or {}).get("task") in done:
                results_paths.append(path)
                _merge(merged, data)
    return EvalRun(results_paths=results_paths, samples_paths=samples_paths, results=merged, spec=spec, suite=suite,
                   tasks=task_names, limit=limit, seconds=seconds, resumed=sorted(done))
