"""The string catalogue is whole (eu/es/en, Basque first) and every key the pages use exists."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "arena_ui"
sys.path.insert(0, str(UI))

from latxa_arena import i18n  # noqa: E402


def test_catalogue_has_three_languages_basque_first():
    assert i18n.LANGS[0] == "eu" and i18n.DEFAULT_LANG == "eu"
    assert set(i18n.LANGS) == {"eu", "es", "en"}
    assert i18n.problems() == []


def test_languages_are_really_translated():
    # An untranslated copy (the same text in two languages) slips in easily; only a handful of
    # international words may legitimately coincide.
    allowed_same = {"app.title"}
    same = [k for k, (eu, es, en) in i18n.CATALOGUE.items()
            if k not in allowed_same and (eu == en or eu == es) and len(eu) > 3]
    assert same == [], f"untranslated entries: {same}"


def test_text_lookup_and_fallback():
    assert i18n.text("battle.send") == "Bidali"
    assert i18n.text("battle.send", "es") == "Enviar"
    assert i18n.text("battle.send", "en") == "Send"
    assert i18n.text("battle.send", "fr") == "Bidali"  # unknown language: Basque
    with pytest.raises(KeyError):
        i18n.text("no.such.key")


def _keys_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "t" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                keys.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):  # t(f"battle.model_{side}") and the like
                prefix = "".join(v.value for v in arg.values if isinstance(v, ast.Constant))
                keys.add(prefix + "*")
    return keys


def test_every_key_used_by_the_pages_exists():
    used = _keys_used(UI / "latxa_arena" / "pages.py")
    assert len(used) > 40
    for key in used:
        if key.endswith("*"):
            assert any(k.startswith(key[:-1]) for k in i18n.CATALOGUE), key
        else:
            assert key in i18n.CATALOGUE, key


def test_state_messages_are_catalogue_keys_the_pages_translate():
    """Messages the state sets by key must be in the pages' translated list, or users would see a raw key."""
    state_src = (UI / "latxa_arena" / "state.py").read_text(encoding="utf-8")
    set_keys = set(re.findall(r'(?:_error\s*=|return)\s*"([a-z]+\.[a-z_]+)"', state_src))
    assert set_keys, "the state sets no catalogue-key messages?"
    for node in ast.parse(state_src).body:  # the API error codes mapped to catalogue keys
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ERROR_KEYS":
            set_keys |= set(ast.literal_eval(node.value).values())
    assert "vote.too_early" in set_keys and "auth.bad_login" in set_keys
    pages_src = (UI / "latxa_arena" / "pages.py").read_text(encoding="utf-8")
    listed = set(ast.literal_eval(re.search(r"MESSAGE_KEYS = (\(.*?\))", pages_src, re.S).group(1)))
    assert set_keys <= listed
    assert listed <= set(i18n.CATALOGUE)


def test_ui_never_imports_serving_or_training_code():
    for py in (UI / "latxa_arena").rglob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"serving", "components", "slurm", "pipelines", "latxa", "torch",
                                                  "transformers", "ray"}, f"{py.name} imports {name}"


def test_api_errors_become_translatable_messages():
    from latxa_arena.api import ApiError
    from latxa_arena.state import message_for

    assert message_for(ApiError(425, "too_early", "Please read both answers before voting.", {"retry_after_s": 3})) \
        == "vote.too_early"
    assert message_for(ApiError(401, "unauthorized", "Wrong username or password."), login=True) == "auth.bad_login"
    assert message_for(ApiError(0, "unreachable", "The arena API at x is not reachable.")) == "battle.api_down"
    # An error the UI has no text for is shown as the API's own sentence, never dropped.
    assert message_for(ApiError(422, "validation_error", "password: at least 8 characters.")) \
        == "password: at least 8 characters."
