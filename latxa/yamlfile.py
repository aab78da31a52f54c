"""Reading a YAML file with the project's error style: a missing file or a syntax error is one
sentence naming ``file:line``, raised as the caller's :class:`~latxa.errors.LatxaError` subclass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from latxa.errors import LatxaError


def load_yaml_file(path: str | Path, error: type[LatxaError], what: str) -> Any:
    """Parse ``path``; ``what`` names the file in messages (e.g. "Config file")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise error(f"{path}{line} is not valid YAML: {getattr(err, 'problem', None) or err}.") from None
