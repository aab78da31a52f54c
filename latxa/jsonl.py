"""The project's one JSON-lines parser for files users hand in: a hostile line is a reason, never a traceback.

``json.loads`` alone turns two kinds of valid-looking input into exceptions nobody catches: nesting deeper than
the interpreter's recursion limit (``"[" * 100000`` raises RecursionError) and an integer literal longer than
``sys.get_int_max_str_digits()`` digits (ValueError, "Exceeds the limit (4300 digits)..."). :func:`loads_line`
maps both, and every syntax error, to :class:`JSONLineError` with a short reason; it also refuses nesting deeper
than :data:`MAX_DEPTH` levels that the parser survived (no record the project reads needs more than a few, and
every reader that walks a value recursively would fail later on it). :func:`iter_lines` numbers a file's
non-blank lines and raises the caller's :class:`~latxa.errors.LatxaError` subclass with ``file:line``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from latxa.errors import LatxaError

MAX_DEPTH = 64   # a record's JSON nesting (a conversation needs 3)


class JSONLineError(Exception):
    """One line that is not acceptable JSON; ``reason`` is a clause ("malformed JSON (... at column 5)") to which
    the caller adds where the line is. ``line`` is the line of a syntax error within the text (1 for one line)."""

    def __init__(self, reason: str, line: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _deeper_than(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def loads_line(line: str, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of one line (or of a small whole-file document); anything else raises :class:`JSONLineError`."""
    too_deep = JSONLineError(f"JSON nested deeper than {max_depth} levels (the per-record limit)")
    line = line.removesuffix("\n").removesuffix("\r")   # a line cut short is "unterminated", not a control character
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        what = err.msg.removesuffix(" at")   # "Invalid control character at"
        raise JSONLineError(f"malformed JSON ({what} at column {err.colno})", err.lineno) from None
    except RecursionError:
        raise too_deep from None
    except ValueError as err:  # Python refuses to convert integers above its digit limit
        if "integer string conversion" in str(err):
            raise JSONLineError(f"an integer with more than {sys.get_int_max_str_digits()} digits "
                                "(the per-record limit)") from None
        raise JSONLineError(f"malformed JSON ({err})") from None
    # cheap test first: only a line with many brackets can be deep
    if line.count("[") + line.count("{") > max_depth and isinstance(value, (dict, list)) \
            and _deeper_than(value, max_depth):
        raise too_deep
    return value


def iter_lines(lines: Iterable[str], where: str, error: type[LatxaError]) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of ``lines`` (an open text file); a bad line raises
    ``error("<where>:<n>: <reason>.")``, and so does text that does not decode (a Latin-1 or UTF-16 file opened as
    UTF-8). The caller opens the file, so it chooses the compression and the encoding."""
    n = 0
    it = iter(lines)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as err:   # files decode in blocks: the bad byte is at or after the next line
            raise error(f"{where}:{n + 1}: not {err.encoding.upper()} text ({err.reason}, at or after this "
                        "line).") from None
        n += 1
        if not line.strip():
            continue
        try:
            value = loads_line(line)
        except JSONLineError as err:
            raise error(f"{where}:{n}: {err.reason}.") from None
        yield n, value
