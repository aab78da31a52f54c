"""Quoting values for a POSIX shell: the one implementation behind SLURM scripts, the SSH transport and publish.

A value may hold anything but the characters no quoting carries safely through every layer (newline, carriage
return, NUL); it is then single-quoted (:func:`shlex.quote`), so ``$(...)``, backticks, ``;`` and quotes stay
literal text when a shell (local, in an sbatch script, or a remote login shell) reads the line.
"""

from __future__ import annotations

import shlex
from typing import Iterable

from latxa.errors import LatxaError


def _show(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def check_line(value: object, what: str = "value", error: type[LatxaError] = LatxaError) -> str:
    """``value`` as text, refused (``error``) if it holds a newline, carriage return or NUL."""
    text = str(value)
    if "\n" in text or "\r" in text or "\x00" in text:
        raise error(f"The {what} {_show(text)} contains a newline or NUL character, which is not allowed.")
    return text


def quote(value: object, what: str = "value", error: type[LatxaError] = LatxaError) -> str:
    """One shell word that reads back as exactly ``value``."""
    return shlex.quote(check_line(value, what, error))


def join(argv: Iterable[object], error: type[LatxaError] = LatxaError) -> str:
    """A command line from argv, every element quoted."""
    return " ".join(quote(a, error=error) for a in argv)
