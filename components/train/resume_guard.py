"""Refuse to resume a run from a checkpoint of another model: a 70B run from an 8B checkpoint, another backbone.

Called by the planner (driver side, before any worker starts) with the output folder's ``run.json`` and the
checkpoints Ray Train left there. The sentence names what the folder holds and what was asked.
"""

from __future__ import annotations

import json
from pathlib import Path

from latxa.errors import LatxaError


class ResumeMismatch(LatxaError, ValueError):
    """An output folder that holds a run of another variant, size or backbone."""


def _size_word(size: str | None) -> str:
    return (size or "8b").upper()


def recorded_run(out_dir: Path, previous: dict | None) -> dict | None:
    """What the folder says it holds: run.json's plan, else the newest checkpoint's trainer_state.json."""
    if previous:
        plan = previous.get("plan") or {}
        return {"variant": previous.get("variant"), "model_size": plan.get("model_size", "8b"),
                "model_name": plan.get("model_name"), "source": str(Path(out_dir) / "run.json")}
    states = sorted(Path(out_dir).glob("ray/*/step-*/trainer_state.json"))
    if not states:
        return None
    try:
        state = json.loads(states[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {"variant": state.get("variant"), "model_size": state.get("model_size", "8b"),
            "model_name": state.get("model_name"), "source": str(states[-1])}


def check_resume(out_dir: Path, previous: dict | None, variant, model_name: str) -> None:
    """Raise :class:`ResumeMismatch` when ``out_dir`` holds a run that this variant/model cannot continue."""
    held = recorded_run(out_dir, previous)
    if held is None or not held.get("variant"):
        return
    from latxa.components.registry import VariantError, parse

    try:
        theirs = parse(held["variant"], size=None)
    except VariantError:
        theirs = None
    size = held.get("model_size") or (theirs.size if theirs else "8b")
    if size != variant.size:
        raise ResumeMismatch(
            f"{out_dir} holds a {_size_word(size)} run of {theirs.code if theirs else held['variant']}, so a "
            f"{_size_word(variant.size)} run cannot resume from its checkpoints; choose another --out.")
    if held["variant"] not in (variant.key, variant.code):
        raise ResumeMismatch(f"{out_dir} holds a run of {held['variant']}, not {variant.key}; choose another --out.")
    theirs_model = held.get("model_name")
    if theirs_model and model_name and theirs_model != model_name:
        raise ResumeMismatch(f"{out_dir} holds a run started from {theirs_model}, not {model_name}; resume with the same "
                             "--model or choose another --out.")
