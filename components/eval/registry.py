"""The benchmark registry (``benchmarks.yaml``) as typed objects, and the evaluation suites built from it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from latxa.components.eval.errors import EvalError
from latxa.yamlfile import load_yaml_file

REGISTRY_FILE = Path(__file__).with_name("benchmarks.yaml")
TASKS_DIR = Path(__file__).with_name("tasks")
EU_MINI_DIR = TASKS_DIR / "eu_mini"
PAPER_DIR = TASKS_DIR / "paper"          # the study's own task definitions (source: latxa-instruct)
LANGUAGES = ("eu", "en", "es")


@dataclass(frozen=True)
class Benchmark:
    task: str
    language: str
    category: str
    metric_keys: tuple[str, ...]
    num_fewshot: int
    in_mean: bool
    source: str
    extra_keys: tuple[str, ...] = ()
    data: str | None = None
    lm_eval_folder: str | None = None    # source lm-eval: the task's folder under lm_eval/tasks

    def as_dict(self) -> dict:
        return {"task": self.task, "language": self.language, "category": self.category,
                "metric_keys": list(self.metric_keys), "num_fewshot": self.num_fewshot, "in_mean": self.in_mean,
                "source": self.source, "extra_keys": list(self.extra_keys), "data": self.data,
                "lm_eval_folder": self.lm_eval_folder}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    benchmarks: tuple[Benchmark, ...]
    generative: bool = False
    include_path: Path | None = None     # the project's lm-eval task folder for this suite
    offline: bool = False                # True: everything it needs ships with the project
    generative_mc: bool = False          # multiple choice as a generated answer letter (the API-model protocol)
    system_instruction: str | None = None  # with generative_mc: the system message of the multiple-choice tasks

    @property
    def lm_eval_folders(self) -> list[str]:
        """lm-eval's own task folders the suite needs (indexing only these is ~100x faster than all of lm-eval)."""
        return sorted({b.lm_eval_folder for b in self.benchmarks if b.lm_eval_folder})

    @property
    def tasks(self) -> list[str]:
        """lm-eval task names to run (generative suites use the ``_gen`` variants of eu-mini)."""
        return [gen_task_name(b.task) if self.generative else b.task for b in self.benchmarks]


def gen_task_name(task: str) -> str:
    return task.replace("eu_mini_", "eu_mini_gen_", 1)


@dataclass(frozen=True)
class Registry:
    categories: dict[str, str]
    languages: dict[str, str]
    study: tuple[Benchmark, ...]
    eu_mini: tuple[Benchmark, ...]
    suites: dict[str, Suite] = field(default_factory=dict)

    def benchmarks(self, which: str = "all") -> list[Benchmark]:
        if which == "study":
            return list(self.study)
        if which == "eu_mini":
            return list(self.eu_mini)
        return [*self.study, *self.eu_mini]

    def by_task(self) -> dict[str, Benchmark]:
        """Every registered task name (eu-mini generative variants included) -> benchmark."""
        out = {b.task: b for b in self.benchmarks()}
        for b in self.eu_mini:
            out[gen_task_name(b.task)] = b
        return out

    def suite(self, name: str) -> Suite:
        if name not in self.suites:
            close = difflib.get_close_matches(name, list(self.suites), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise EvalError(f"unknown suite '{name}'{hint}: choose one of {', '.join(self.suites)}.")
        return self.suites[name]

    def benchmark(self, task: str) -> Benchmark:
        table = self.by_task()
        if task not in table:
            close = difflib.get_close_matches(task, list(table), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise EvalError(f"unknown task '{task}'{hint}: `latxa eval tasks` lists the registered ones.")
        return table[task]


def _benchmark(raw: dict, defaults: dict, categories: dict, where: str, study: bool = False) -> Benchmark:
    merged = {**defaults, **raw}
    unknown = set(merged) - {"task", "language", "category", "metric_keys", "num_fewshot", "in_mean", "source",
                             "extra_keys", "data", "lm_eval_folder"}
    if unknown:
        raise EvalError(f"{where}: unknown benchmark field(s) {sorted(unknown)}.")
    for key in ("task", "language", "category"):
        if key not in merged:
            raise EvalError(f"{where}: benchmark {raw!r} has no '{key}'.")
    if merged["language"] not in LANGUAGES:
        raise EvalError(f"{where}: benchmark '{merged['task']}' has language '{merged['language']}', not one of {LANGUAGES}.")
    if merged["category"] not in categories:
        raise EvalError(f"{where}: benchmark '{merged['task']}' has category '{merged['category']}', not one of {list(categories)}.")
    if study and merged.get("source") == "lm-eval" and not merged.get("lm_eval_folder"):
        raise EvalError(f"{where}: benchmark '{merged['task']}' comes from lm-eval but names no lm_eval_folder.")
    return Benchmark(task=merged["task"], language=merged["language"], category=merged["category"],
                     metric_keys=tuple(merged["metric_keys"]), num_fewshot=int(merged["num_fewshot"]),
                     in_mean=bool(merged["in_mean"]), source=merged["source"],
                     extra_keys=tuple(merged.get("extra_keys") or ()), data=merged.get("data"),
                     lm_eval_folder=merged.get("lm_eval_folder"))


def load_registry(path: str | Path | None = None) -> Registry:
    """Parse and validate a registry YAML (default: the shipped ``benchmarks.yaml``)."""
    path = Path(path) if path else REGISTRY_FILE
    raw = load_yaml_file(path, EvalError, "Benchmark registry")
    if not isinstance(raw, dict) or "categories" not in raw or "languages" not in raw:
        raise EvalError(f"{path}:1: not a benchmark registry (no 'categories' and 'languages' mappings).")
    defaults = raw.get("defaults", {})
    categories = raw["categories"]
    study = tuple(_benchmark(b, defaults, categories, f"{path}:study[{i}]", study=True) for i, b in enumerate(raw.get("study", [])))
    mini = tuple(_benchmark(b, defaults, categories, f"{path}:eu_mini[{i}]") for i, b in enumerate(raw.get("eu_mini", [])))
    names = [b.task for b in (*study, *mini)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalError(f"{path}: task(s) registered twice: {', '.join(dupes)}.")
    suites = {}
    for name, spec in (raw.get("suites") or {}).items():
        pool = study if spec["benchmarks"] == "study" else mini
        chosen = tuple(b for b in pool if b.language == spec.get("language", b.language))
        if spec.get("tasks"):
            by_name = {b.task: b for b in chosen}
            unknown = [t for t in spec["tasks"] if t not in by_name]
            if unknown:
                raise EvalError(f"{path}:suites.{name}.tasks: unknown task(s) {', '.join(unknown)}.")
            chosen = tuple(by_name[t] for t in spec["tasks"])
        is_mini = spec["benchmarks"] == "eu_mini"
        suites[name] = Suite(name=name, description=spec.get("description", ""), benchmarks=chosen,
                             generative=bool(spec.get("generative", False)),
                             include_path=EU_MINI_DIR if is_mini else PAPER_DIR, offline=is_mini,
                             generative_mc=bool(spec.get("generative_mc", False)),
                             system_instruction=spec.get("system_instruction"))
    return Registry(categories=categories, languages=raw["languages"], study=study, eu_mini=mini, suites=suites)


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    return load_registry()
