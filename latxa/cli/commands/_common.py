"""Small helpers shared by the command modules."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def example(text: str) -> str:
    """Append an example block to a command's help (kept verbatim by rich)."""
    return f"\n\nExample:\n\n  $ {text}"
