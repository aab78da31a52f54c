"""Model names of the arena analysis as data (``models.yaml``): aliases, equivalences and display names."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from latxa.yamlfile import load_yaml_file

VARIANT_RE = re.compile(r"^(\d)_(\d)(\d)(\d)$")
# The parts of a variant code, as the notebook indexes them.
BACKBONE, CORPUS_EU, INST_EU, INST_EN = 0, 1, 2, 3


@lru_cache(maxsize=1)
def model_names() -> dict:
    from latxa.errors import LatxaError

    return load_yaml_file(Path(__file__).with_name("models.yaml"), LatxaError, "Arena model names")


def normalize(name: str) -> str:
    """A raw model name (published votes, results folder) -> the analysis name: ``exp_2_101`` -> ``2_101``."""
    return str(model_names()["aliases"].get(name, name)).replace("exp_", "")


def equivalences() -> dict[str, list[str]]:
    return {str(k): [str(x) for x in v] for k, v in model_names()["equivalences"].items()}


def is_variant(name: str) -> bool:
    return VARIANT_RE.match(name) is not None


def parts(name: str) -> tuple[int, int, int, int] | None:
    m = VARIANT_RE.match(name)
    return None if m is None else tuple(int(g) for g in m.groups())  # type: ignore[return-value]


def pretty(name: str, style: str = "text") -> str:
    """Display name: ``style`` is "latex" (the paper's tables) or "text" (Markdown, HTML, plots)."""
    data = model_names()
    p = parts(name)
    if p is None:
        entry = data["pretty"].get(name)
        return entry[style] if entry else name
    b, c, ieu, ien = p
    return (data["backbones"][b][style] + data["corpus"][c][style]
            + data["instructions"][f"{ieu}{ien}"][style]).strip()


def backbone_title(index: int, style: str = "text") -> str:
    entry = model_names()["backbones"][index]
    return entry["title_latex"] if style == "latex" else entry["title"]


def mask(by: list[int], name: str) -> tuple[str, str]:
    """The notebook's grouping: the digits at positions ``by`` become X and form the variant string.

    ``mask([1], "2_101") == ("2_X01", "1")``; a name that is not a variant code is returned as is, variant "".
    """
    p = parts(name)
    if p is None:
        return name, ""
    cells: list[str] = [str(x) for x in p]
    variant = ""
    for pos in by:
        variant += cells[pos]
        cells[pos] = "X"
    return f"{cells[0]}_{cells[1]}{cells[2]}{cells[3]}", variant


def label(name: str) -> str:
    """For tables and plots: a variant's code and its display name ("2_101 INS_EN C_EU I_EN"), else the name."""
    return f"{name} {pretty(name)}" if is_variant(name) else pretty(name)
