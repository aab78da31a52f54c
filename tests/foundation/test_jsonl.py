"""latxa.jsonl: every JSON line a user hands in is a value or one short reason, never a traceback."""

from __future__ import annotations

import io
import sys

import pytest

from latxa.errors import LatxaError
from latxa.jsonl import MAX_DEPTH, JSONLineError, iter_lines, loads_line


class _Bad(LatxaError):
    pass


@pytest.mark.parametrize("line, reason", [
    ('{"a": 1,}\n', "malformed JSON (Expecting property name enclosed in double quotes at column 9)"),
    ('{"a": "cut short\n', "malformed JSON (Unterminated string starting at column 7)"),
    ('{"a": "x\ty"}', "malformed JSON (Invalid control character at column 9)"),
    ("[" * 100_000, f"JSON nested deeper than {MAX_DEPTH} levels (the per-record limit)"),        # RecursionError
    ("[" * 100_000 + "]" * 100_000, f"JSON nested deeper than {MAX_DEPTH} levels (the per-record limit)"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"JSON nested deeper than {MAX_DEPTH} levels"),  # parses
    ('{"n": ' + "7" * 5000 + "}", f"an integer with more than {sys.get_int_max_str_digits()} digits"),  # ValueError
], ids=["syntax", "cut-short", "control-char", "deep-unclosed", "deep-balanced", "deep-parsed", "long-int"])
def test_hostile_lines_are_one_reason(line, reason):
    with pytest.raises(JSONLineError) as err:
        loads_line(line)
    assert err.value.reason.startswith(reason) and "\n" not in err.value.reason and len(err.value.reason) < 200


def test_values_at_the_limits_load():
    value, depth = loads_line("[" * MAX_DEPTH + "]" * MAX_DEPTH + "\r\n"), 1
    while value:
        value, depth = value[0], depth + 1
    assert value == [] and depth == MAX_DEPTH
    assert loads_line('{"n": ' + "7" * sys.get_int_max_str_digits() + "}")["n"] > 0
    assert loads_line('{"s": "[[[[" , "t": 1.5e300}') == {"s": "[[[[", "t": 1.5e300}
    with pytest.raises(JSONLineError, match="deeper than 5 levels"):
        loads_line("[" * 6 + "]" * 6, max_depth=5)


def test_a_document_error_names_its_line():
    with pytest.raises(JSONLineError) as err:
        loads_line('{\n  "a": 1\n  "b": 2\n}\n')
    assert err.value.line == 3 and err.value.reason == "malformed JSON (Expecting ',' delimiter at column 3)"


def test_iter_lines_numbers_lines_skips_blanks_and_raises_the_callers_error():
    lines = io.StringIO('{"a": 1}\n\n   \n[2]\n' + "[" * 100_000 + "\n")
    got = []
    with pytest.raises(_Bad, match=r"^f.jsonl:5: JSON nested deeper than 64 levels \(the per-record limit\)\.$"):
        for n, value in iter_lines(lines, "f.jsonl", _Bad):
            got.append((n, value))
    assert got == [(1, {"a": 1}), (4, [2])]


def test_iter_lines_names_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": 1}\n{"izena": "Mari\xf1e"}\n')
    with path.open(encoding="utf-8") as fh, pytest.raises(_Bad) as err:
        list(iter_lines(fh, str(path), _Bad))
    assert str(err.value) == f"{path}:1: not UTF-8 text (invalid continuation byte, at or after this line)."
