"""Run lm-eval through its Python API on a local Hugging Face folder or an OpenAI-compatible endpoint.

``run_eval`` is what ``latxa eval run``, the KFP component and the benchmark script call. It resolves the
suite from the registry, builds lm-eval's model arguments, runs ``lm_eval.simple_evaluate`` with sample
logging and writes lm-eval's own files with its ``EvaluationTracker``::

    OUT/<name>/results_<ISO time>.json           (lm-eval results JSON: results, configs, n-shot, ...)
    OUT/<name>/samples_<task>_<ISO time>.jsonl   (one line per evaluated document)

so ``latxa eval aggregate OUT`` reads it like the study's results folders.

Instruct models run with the chat template and few-shot as multi-turn (as in the study); base models
without. ``chat=None`` decides from the model: a tokenizer with a chat template, or any URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import Registry, Suite, default_registry

URL_RE = re.compile(r"^https?://", re.I)
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class ModelSpec:
    """What lm-eval gets: its model type, its model_args, and the name results are filed under."""

    lm_type: str                  # hf | local-chat-completions | local-completions
    model_args: dict[str, Any]
    name: str
    is_url: bool
    chat: bool
    device: str = "cpu"
    batch_size: int = 1


@dataclass
class EvalRun:
    results_path: Path
    samples_paths: list[Path]
    results: dict
    spec: ModelSpec
    suite: str
    tasks: list[str]
    limit: int | float | None
    seconds: float
    aggregate: dict = field(default_factory=dict)


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
    import json

    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            return False
    return False


def model_spec(model: str, *, name: str | None = None, served_model: str | None = None, chat: bool | None = None,
               device: str = "cpu", dtype: str = "auto", batch_size: int = 1, max_length: int | None = None,
               tokenizer: str | None = None, max_gen_toks: int = 256, num_concurrent: int = 1,
               check_loads: bool = True) -> ModelSpec:
    """Turn ``--model DIR|URL|HF-name`` into lm-eval model arguments; bad input raises :class:`EvalError`."""
    model = str(model).strip()
    if not model:
        raise EvalError("--model is empty: give a model folder, an http(s):// endpoint URL or a Hugging Face name.")
    if is_url(model):
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
                         _sanitize(name or served_model or re.sub(r"^https?://", "", model)), True, use_chat)

    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EvalError(f"{path}: not a model folder (give the folder holding config.json).")
        if not (path / "config.json").is_file():
            raise EvalError(f"{path}: not a Hugging Face model folder (no config.json).")
        if check_loads:
            _check_loads(path)
        pretrained = str(path.resolve())
        use_chat = _has_chat_template(path) if chat is None else chat
        default_name = path.resolve().name
    elif "/" in model and not model.startswith((".", "/")) and model.count("/") == 1:
        pretrained, default_name = model, model  # a hub name: only works where it is cached (runs are offline)
        use_chat = bool(chat)
    else:
        raise EvalError(f"{model}: no such model folder (and not an http(s):// URL or an org/name model).")
    args = {"pretrained": pretrained, "dtype": dtype}
    if max_length:
        args["max_length"] = max_length
    return ModelSpec("hf", args, _sanitize(name or default_name), False, use_chat, device=device, batch_size=batch_size)


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
    """lm-eval TaskManager: offline suites index only their own YAMLs (fast, no lm-eval task scan)."""
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in (suite.include_path, include_path) if p]
    return TaskManager(include_path=paths or None, include_defaults=not suite.offline)


def simple_evaluate_kwargs(spec: ModelSpec, tasks: list[str], *, limit=None, num_fewshot=None, seed: int = 1234,
                           log_samples: bool = True, tm=None, gen_kwargs: dict | None = None) -> dict:
    """The exact arguments the runner passes to ``lm_eval.simple_evaluate`` (also used by the benchmark)."""
    kwargs = dict(model=spec.lm_type, model_args=dict(spec.model_args), tasks=list(tasks), num_fewshot=num_fewshot,
                  limit=limit, log_samples=log_samples, apply_chat_template=spec.chat, fewshot_as_multiturn=spec.chat,
                  task_manager=tm, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                  fewshot_random_seed=seed)
    if gen_kwargs:
        kwargs["gen_kwargs"] = gen_kwargs
    if not spec.is_url:
        kwargs["batch_size"] = spec.batch_size
        kwargs["device"] = spec.device
    return kwargs


def run_eval(model: str, suite: str = "eu-mini", out: str | Path = "eval-out", *, limit: int | float | None = None,
             tasks: list[str] | None = None, name: str | None = None, served_model: str | None = None,
             chat: bool | None = None, device: str = "cpu", dtype: str = "auto", batch_size: int = 1,
             max_length: int | None = None, num_fewshot: int | None = None, include_path: str | Path | None = None,
             tokenizer: str | None = None, seed: int = 1234, log_samples: bool = True,
             registry: Registry | None = None) -> EvalRun:
    """Evaluate ``model`` on ``suite`` and write lm-eval's results (and samples) under ``out``."""
    import time

    registry = registry or default_registry()
    chosen, task_names = resolve_tasks(suite, tasks, registry)
    if limit is not None and limit <= 0:
        raise EvalError(f"--limit must be positive (got {limit}).")
    spec = model_spec(model, name=name, served_model=served_model, chat=chat, device=device, dtype=dtype,
                      batch_size=batch_size, max_length=max_length, tokenizer=tokenizer)
    if spec.is_url and spec.lm_type == "local-chat-completions" and not chosen.generative:
        gen = "eu-mini-gen" if chosen.offline else None
        raise EvalError(f"suite '{suite}' scores log-likelihoods, which a chat endpoint cannot return"
                        + (f": use --suite {gen} (the same items as generation)" if gen else
                           ": point --model at a /v1/completions URL with --no-chat and --tokenizer, or use a generative suite")
                        + ".")
    if chosen.offline:
        for var in OFFLINE_ENV:
            os.environ[var] = "1"
    if include_path and not Path(include_path).is_dir():
        raise EvalError(f"--include-path {include_path}: not a folder of lm-eval task YAMLs.")

    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    tm = task_manager(chosen, include_path)
    missing = [t for t in task_names if t not in tm.all_tasks]
    if missing:
        hint = ("; the study's own tasks (source latxa-instruct in `latxa eval tasks`) need --include-path"
                if any(registry.by_task().get(t) and registry.by_task()[t].source == "latxa-instruct" for t in missing) else "")
        raise EvalError(f"lm-eval does not know task(s) {', '.join(missing)}{hint}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_path=str(out))
    kwargs = simple_evaluate_kwargs(spec, task_names, limit=limit, num_fewshot=num_fewshot, seed=seed,
                                    log_samples=log_samples, tm=tm)
    started = time.perf_counter()
    try:
        results = simple_evaluate(evaluation_tracker=tracker, **kwargs)
    except EvalError:
        raise
    except OSError as err:
        raise EvalError(f"{model}: the model does not load ({str(err).splitlines()[0] if str(err) else err!r}).") from err
    seconds = time.perf_counter() - started
    if results is None:
        raise EvalError("lm-eval returned no results (non-zero rank in a distributed run).")
    samples = results.pop("samples", None) if log_samples else None
    tracker.general_config_tracker.model_name_sanitized = spec.name
    tracker.save_results_aggregated(results=results, samples=samples)
    model_dir = out / spec.name
    samples_paths: list[Path] = []
    if samples:
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
        samples_paths = sorted(model_dir.glob(f"samples_*_{tracker.date_id}.jsonl"))
    results_path = model_dir / f"results_{tracker.date_id}.json"
    if not results_path.is_file():
        raise EvalError(f"lm-eval did not write {results_path}.")
    return EvalRun(results_path=results_path, samples_paths=samples_paths, results=results, spec=spec,
                   suite=suite, tasks=task_names, limit=limit, seconds=seconds)
