"""Read lm-eval results JSON and build the study's tables.

Layout: each input DIR holds one sub-folder per model; a model folder holds lm-eval results files
(``results_<timestamp>.json``, one task or group per file, many files per model, searched recursively).
Files are read in timestamp (file name) order and a later file wins for the same task; an entry without a
score for the task's metric (e.g. a group lm-eval did not aggregate) does not override an earlier score.

Scores are reported in percent. Language means average the registered ``in_mean`` tasks a model has
(bias tasks are reported but excluded) and say how many tasks each mean covers; category means likewise.
By default a group with no aggregate score in the results counts as missing, as in the paper (the API
models' ``eus_exams_eu``); ``fill_groups=True`` derives it from its leaf subtasks, weighted by size as lm-eval does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import LANGUAGES, Benchmark, Registry, default_registry
from latxa.jsonl import JSONLineError, loads_line


@dataclass
class _Entry:
    metrics: dict
    file: Path
    subtasks: list[str] = field(default_factory=list)
    n_samples: int | None = None


def read_results_file(path: str | Path) -> dict:
    """Load one lm-eval results JSON; anything else raises :class:`EvalError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: cannot read the results file ({err}).") from err
    try:
        data = loads_line(text)
    except JSONLineError as err:
        raise EvalError(f"{path}:{err.line}: not lm-eval results JSON: {err.reason}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise EvalError(f"{path}:1: not lm-eval results JSON (no 'results' object of task -> metrics).")
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise EvalError(f"{path}:1: not lm-eval results JSON (results['{task}'] is not an object of metrics).")
    return data


def result_files(model_dir: Path) -> list[Path]:
    """lm-eval results files of one model folder, oldest first (lm-eval names them results_<ISO time>.json)."""
    return sorted((p for p in model_dir.rglob("results*.json") if p.is_file()), key=lambda p: (p.name, str(p)))


def _score(metrics: dict, bench: Benchmark) -> tuple[float, str] | None:
    for key in bench.metric_keys:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) * 100.0, key
    return None


def _leaves(task: str, groups: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for sub in groups.get(task, []):
        out.extend(_leaves(sub, groups) if groups.get(sub) else [sub])
    return out


def model_entries(model_dir: Path) -> tuple[dict[str, _Entry], dict[str, dict[str, list[str]]], list[Path]]:
    """task -> latest entry with metrics; per-file group structure; the files read."""
    entries: dict[str, list[_Entry]] = {}
    groups: dict[str, dict[str, list[str]]] = {}
    files = result_files(model_dir)
    for path in files:
        data = read_results_file(path)
        gs = data.get("group_subtasks") or {}
        n_samples = data.get("n-samples") or {}
        for task, metrics in data["results"].items():
            ns = n_samples.get(task, {})
            entries.setdefault(task, []).append(
                _Entry(metrics=metrics, file=path, subtasks=list(gs.get(task) or []),
                       n_samples=ns.get("effective") if isinstance(ns, dict) else None))
        groups[str(path)] = {k: list(v or []) for k, v in gs.items()}
    return entries, groups, files  # type: ignore[return-value]


@dataclass
class ModelTable:
    name: str
    tasks: dict[str, float] = field(default_factory=dict)
    metric_keys: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    files: int = 0


def _derive_group(task: str, candidates: list[_Entry], bench: Benchmark) -> tuple[float, int, Path] | None:
    """Size-weighted mean of a group's leaf subtasks (lm-eval's weight_by_size), from the latest file listing them."""
    for entry in reversed(candidates):
        if not entry.subtasks:
            continue
        data = read_results_file(entry.file)
        groups = {k: list(v or []) for k, v in (data.get("group_subtasks") or {}).items()}
        leaves = _leaves(task, groups)
        ns = data.get("n-samples") or {}
        total, weight = 0.0, 0
        for leaf in leaves:
            score = _score(data["results"].get(leaf, {}), bench)
            n = (ns.get(leaf) or {}).get("effective")
            if score is None or not n:
                return None
            total += score[0] * n
            weight += n
        if weight:
            return total / weight, len(leaves), entry.file
    return None


def build_model_table(model_dir: Path, registry: Registry, benchmarks: list[Benchmark], fill_groups: bool = False) -> ModelTable:
    entries, _groups, files = model_entries(model_dir)
    table = ModelTable(name=model_dir.name, files=len(files))
    subtask_names = {s for es in entries.values() for e in es for s in e.subtasks}
    for bench in benchmarks:
        candidates = entries.get(bench.task, [])
        chosen = None
        for entry in reversed(candidates):  # later files win
            got = _score(entry.metrics, bench)
            if got is not None:
                chosen = (entry, got)
                break
        if chosen:
            entry, (score, key) = chosen
            table.tasks[bench.task] = score
            table.metric_keys[bench.task] = key
            table.sources[bench.task] = str(entry.file)
            for extra in bench.extra_keys:
                if isinstance(entry.metrics.get(extra), (int, float)):
                    table.extra.setdefault(bench.task, {})[extra] = float(entry.metrics[extra])
        elif candidates:
            derived = _derive_group(bench.task, candidates, bench) if fill_groups else None
            if derived:
                score, n_leaves, path = derived
                table.tasks[bench.task] = score
                table.metric_keys[bench.task] = f"size-weighted mean of {n_leaves} subtasks"
                table.sources[bench.task] = str(path)
                table.notes.append(f"{bench.task}: derived from {n_leaves} subtasks (the results have no group score)")
            else:
                table.notes.append(
                    f"{bench.task}: present but has none of {list(bench.metric_keys)} (a group without an aggregate "
                    f"score{'' if fill_groups else '; --fill-groups derives it from its subtasks'}); not counted")
    registered = registry.by_task()
    table.unregistered = sorted(t for t in entries if t not in registered and t not in subtask_names)
    return table


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rank(values: dict[str, float | None]) -> dict[str, int | None]:
    """Competition ranking (1 = best); models without a value get None."""
    scored = sorted((v, k) for k, v in values.items() if v is not None)
    out: dict[str, int | None] = {k: None for k in values}
    for k in values:
        if values[k] is not None:
            out[k] = 1 + sum(1 for v, _ in scored if v > values[k] + 1e-12)
    return out


def model_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """The model sub-folders of each root (a folder that itself holds results files counts as one model)."""
    out: list[Path] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise EvalError(f"{root}: not a folder (expected a folder with one sub-folder per model).")
        subs = sorted(p for p in root.iterdir() if p.is_dir() and result_files(p))
        if subs:
            out.extend(subs)
        elif result_files(root):
            out.append(root)
        else:
            raise EvalError(f"{root}: no lm-eval results files (results_*.json) in it or its sub-folders.")
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalError(f"model folder name(s) {', '.join(dupes)} appear in more than one input folder; rename one.")
    return out


def aggregate(roots: Iterable[str | Path], suite: str = "paper", registry: Registry | None = None,
              fill_groups: bool = False) -> dict:
    """The study's tables as one JSON-ready dict: ``{"suite", "benchmarks", "models": {name: {...}}}``."""
    registry = registry or default_registry()
    chosen = registry.suite(suite)
    benchmarks = list(chosen.benchmarks)
    dirs = model_dirs(roots)
    models: dict[str, dict] = {}
    for d in dirs:
        t = build_model_table(d, registry, benchmarks, fill_groups=fill_groups)
        languages, coverage, cats, cat_cov, by_lang = {}, {}, {}, {}, {}
        for lang in LANGUAGES:
            pool = [b for b in benchmarks if b.language == lang and b.in_mean]
            have = [t.tasks[b.task] for b in pool if b.task in t.tasks]
            if pool:
                languages[lang] = _mean(have)
                coverage[lang] = {"tasks": len(have), "of": len(pool)}
        for cat in registry.categories:
            pool = [b for b in benchmarks if b.category == cat]
            have = [t.tasks[b.task] for b in pool if b.task in t.tasks]
            if pool:
                cats[cat] = _mean(have)
                cat_cov[cat] = {"tasks": len(have), "of": len(pool)}
            for lang in LANGUAGES:
                lp = [t.tasks[b.task] for b in pool if b.language == lang and b.task in t.tasks]
                if lp:
                    by_lang.setdefault(lang, {})[cat] = _mean(lp)
        models[t.name] = {
            "languages": languages, "coverage": coverage, "categories": cats, "category_coverage": cat_cov,
            "categories_by_language": by_lang, "tasks": dict(t.tasks), "metric_keys": t.metric_keys,
            "extra": t.extra, "missing": [b.task for b in benchmarks if b.task not in t.tasks],
            "notes": t.notes, "unregistered_tasks": t.unregistered, "files_read": t.files,
            "sources": {k: str(Path(v).name) for k, v in t.sources.items()},
        }
    langs_present = [lang for lang in LANGUAGES if any(lang in m["languages"] for m in models.values())]
    for lang in langs_present:
        ranks = _rank({name: m["languages"].get(lang) for name, m in models.items()})
        for name, r in ranks.items():
            models[name].setdefault("ranks", {})[lang] = r
    return {
        "suite": suite,
        "fill_groups": fill_groups,
        "scale": "percent",
        "benchmarks": [b.as_dict() for b in benchmarks],
        "categories": registry.categories,
        "models": models,
        "files_read": sum(m["files_read"] for m in models.values()),
    }
