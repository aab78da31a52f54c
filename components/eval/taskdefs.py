"""lm-eval task definitions of a suite: the task index, each (sub)task's config as lm-eval resolves it, the
API-model protocol (multiple choice as a generated letter) and building the lm-eval Task / Group objects.

Study suites index the project's task folder (``tasks/paper``: the study's own definitions) *after* the few
lm-eval folders whose tasks the study used unchanged, so a project task replaces lm-eval's task of the same
name (lm-eval logs "overrides existing task"). Indexing those folders only takes ~0.1 s instead of the ~15 s
an index of all of lm-eval's 14,000 tasks takes.

A config here is exactly what lm-eval writes under ``"configs"`` in a results file: the YAML with its
``include:`` chain and ``!function`` targets resolved, passed through lm-eval's ``TaskConfig`` and its
``to_dict()``, with the few-shot count the evaluator sets. Building it needs no dataset.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import Suite

STRUCTURAL_KEYS = ("tag", "group", "task_list")

#: What the study's lm-eval fork did to every multiple-choice task for the API models (its --mcq_to_generative):
#: generate one token and score it by exact match against the gold option's letter.
GENERATIVE_MC: dict[str, Any] = {
    "output_type": "generate_until",
    "target_delimiter": "\n\n",
    "generation_kwargs": {"until": [], "max_gen_toks": 1},
    "filter_list": [{"name": "strict_match",
                     "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                     "ignore_case": True, "ignore_punctuation": True, "regexes_to_ignore": ["\\$", "\\.$"]}],
}

Transform = Callable[[dict], dict]


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


class _ExpectedOverrides(logging.Filter):
    """Our definitions replace lm-eval's by design: its "overrides existing task" warning says nothing new."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "overrides existing task" not in record.getMessage()


def task_manager(suite: Suite, include_path: str | Path | None = None):
    """lm-eval's TaskManager over what the suite needs: lm-eval's folders first, then ours, then ``include_path``
    (later folders override earlier ones by task name)."""
    from lm_eval.tasks import TaskManager

    index_log = logging.getLogger("lm_eval.tasks._index")
    if not any(isinstance(f, _ExpectedOverrides) for f in index_log.filters):
        index_log.addFilter(_ExpectedOverrides())

    root = lm_eval_tasks_dir()
    paths = [str(root / f) for f in suite.lm_eval_folders]
    paths += [str(p) for p in (suite.include_path, include_path) if p]
    for p in paths:
        if not Path(p).is_dir():
            raise EvalError(f"{p}: the task folder does not exist (lm-eval {_lm_eval_version()} lacks it?).")
    return TaskManager(include_path=paths or None, include_defaults=False)


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def generative_mc(cfg: dict) -> dict:
    """The API-model protocol for one leaf config: multiple-choice tasks become letter generation, others stay."""
    if cfg.get("output_type") != "multiple_choice":
        return cfg
    return {**cfg, **copy.deepcopy(GENERATIVE_MC)}


@dataclass
class TaskTree:
    """The leaves (task -> raw config, functions resolved) and groups (group -> raw group config) of some names."""

    leaves: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, dict] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    top: list[str] = field(default_factory=list)

    def leaves_under(self, name: str) -> list[str]:
        if name not in self.children:
            return [name]
        return [leaf for child in self.children[name] for leaf in self.leaves_under(child)]


def _group_fields() -> set[str]:
    from lm_eval.config.group import GroupConfig

    return {f.name for f in fields(GroupConfig)}


def _load(entry) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    if entry.yaml_path is None:
        raise EvalError(f"'{entry.name}' is an lm-eval tag, not a task or group: the study names no tags.")
    return copy.deepcopy(load_yaml(entry.yaml_path, resolve_func=True))


def task_tree(tm, names: list[str], transform: Transform | None = None) -> TaskTree:
    """Walk groups down to their leaf tasks the way lm-eval's TaskFactory does (a group's non-group keys are
    overrides for its members), resolving each leaf's config without loading any dataset."""
    from lm_eval.tasks._index import Kind

    tree = TaskTree(top=list(names))
    group_keys = _group_fields()

    def visit(name: str, overrides: dict) -> None:
        entry = tm.task_index.get(name)
        if entry is None:
            raise EvalError(f"lm-eval does not know task '{name}'.")
        cfg = _load(entry)
        if entry.kind == Kind.GROUP:
            members = cfg.get("task") or []
            if isinstance(members, str):
                members = [members]
            if not all(isinstance(m, str) for m in members):
                raise EvalError(f"group '{name}' ({entry.yaml_path}) has inline members; only named tasks are supported.")
            tree.groups[name] = {k: v for k, v in cfg.items() if k in group_keys}
            tree.children[name] = list(members)
            member_overrides = {**{k: v for k, v in cfg.items() if k not in group_keys}, **overrides}
            for m in members:
                visit(m, member_overrides)
            return
        if entry.kind != Kind.TASK:
            raise EvalError(f"'{name}' is an lm-eval {entry.kind.name.lower()}, not a YAML task or group.")
        cfg = {**cfg, **overrides, "task": name}
        for key in STRUCTURAL_KEYS:
            cfg.pop(key, None)
        tree.leaves[name] = transform(cfg) if transform else cfg

    for n in names:
        visit(n, {})
    return tree


def dump_config(cfg: dict, num_fewshot: int | None) -> dict:
    """What lm-eval writes under "configs" for a leaf: TaskConfig(**cfg).to_dict() after the evaluator set
    num_fewshot (an explicit count wins unless the task pins 0; otherwise the task's own, else 0)."""
    from lm_eval.config.task import TaskConfig

    tc = TaskConfig(**copy.deepcopy(cfg))
    if num_fewshot is not None and tc.num_fewshot != 0:
        tc.num_fewshot = num_fewshot
    elif tc.num_fewshot is None:
        tc.num_fewshot = 0
    if tc.dataset_kwargs and _datasets_major() >= 4:
        # lm-eval drops trust_remote_code under datasets >= 4 (dataset scripts are gone) before it writes the config
        tc.dataset_kwargs.pop("trust_remote_code", None)
    return tc.to_dict()


def _datasets_major() -> int:
    import datasets

    return int(datasets.__version__.split(".")[0])


def build(tree: TaskTree, name: str, metadata: dict | None = None):
    """lm-eval Task / Group objects for one top-level name of ``tree`` (loads the datasets: call it inside
    :meth:`latxa.components.eval.mirror.DataSources.active`)."""
    from lm_eval.api.group import Group
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.group import GroupConfig

    if name in tree.leaves:
        cfg = copy.deepcopy(tree.leaves[name])
        cfg["metadata"] = {**(cfg.get("metadata") or {}), **(metadata or {})}
        return ConfigurableTask(config=cfg)
    gcfg = GroupConfig(**{**copy.deepcopy(tree.groups[name]), "group": name})
    gcfg.metadata = {**(gcfg.metadata or {}), **(metadata or {})}
    group = Group.from_config(gcfg)
    for child in tree.children[name]:
        group.add(build(tree, child, metadata))
    return group


def resolved(suite: Suite, tasks: list[str] | None = None, *, num_fewshot: int | None = None,
             generative: bool | None = None, include_path: str | Path | None = None) -> dict:
    """Every (sub)task's config as lm-eval resolves it for ``suite`` (what a run writes under "configs"), with the
    registry's few-shot count, plus the groups' members and aggregation: ``latxa eval tasks --resolved``."""
    from importlib.metadata import version

    names = tasks or suite.tasks
    benches = {(b.task.replace("eu_mini_", "eu_mini_gen_", 1) if suite.generative else b.task): b for b in suite.benchmarks}
    gen_mc = suite.generative_mc if generative is None else generative
    tm = task_manager(suite, include_path)
    missing = [t for t in names if t not in tm.task_index]
    if missing:
        raise EvalError(f"lm-eval does not know task(s) {', '.join(missing)}.")
    raw = task_tree(tm, names)
    tree = task_tree(tm, names, generative_mc) if gen_mc else raw
    configs: dict[str, dict] = {}
    system: dict[str, str | None] = {}
    for top in names:
        shots = benches[top].num_fewshot if num_fewshot is None else num_fewshot
        for leaf in tree.leaves_under(top):
            configs[leaf] = dump_config(tree.leaves[leaf], shots)
        was_mc = any(raw.leaves[leaf].get("output_type") == "multiple_choice" for leaf in tree.leaves_under(top))
        system[top] = suite.system_instruction if gen_mc and was_mc else None
    groups = {g: {"task": list(tree.children[g]), **_jsonable(cfg)} for g, cfg in tree.groups.items()}
    return {"suite": suite.name, "lm_eval_version": version("lm_eval"), "generative_mc": gen_mc,
            "tasks": list(names), "system_instruction": system, "configs": configs, "groups": groups,
            "group_subtasks": {g: list(children) for g, children in tree.children.items()}}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k != "task"}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if callable(obj):
        import inspect

        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            return str(obj)
    return obj
