"""Fixtures for the data-preparation tests: isolated caches, small data configs, one prepared sample mixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latxa.paths import SAMPLE_DATA


@pytest.fixture(scope="session")
def hf_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)


@pytest.fixture(scope="session")
def prepared_101(tiny_model, tmp_path_factory):
    """exp_2_101 on the shipped sample, local profile (seq_len 256), two processes."""
    from latxa.components.data import prepare

    out = tmp_path_factory.mktemp("prep") / "exp_2_101"
    return prepare("exp_2_101", out, tokenizer=tiny_model, num_proc=2, progress=False,
                   cache_dir=tmp_path_factory.mktemp("cache"))


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are dicts (dumped as JSON) or raw strings (written as is)."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


def write_config(path: Path, **sources) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")
    return path


def conv(*turns: str, system: str | None = None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"conversations": msgs}


def sample_conversations() -> list[list[dict]]:
    out = []
    for name in ("eu.jsonl", "en.jsonl"):
        with (SAMPLE_DATA / "instructions" / name).open(encoding="utf-8") as fh:
            out.extend(json.loads(line)["conversations"] for line in fh if line.strip())
    return out


class _Helpers:
    write_jsonl = staticmethod(write_jsonl)
    write_config = staticmethod(write_config)
    conv = staticmethod(conv)
    sample_conversations = staticmethod(sample_conversations)


@pytest.fixture(scope="session")
def h():
    """Helpers for writing small data files and configs (importlib mode: tests cannot import conftest)."""
    return _Helpers


def run_inproc(*argv: str) -> tuple[int, str, str]:
    """The real `latxa` entry point in this process: (exit status, stdout, stderr). Any exception that is not
    a SystemExit (a traceback a user would see) propagates and fails the test."""
    import contextlib
    import io

    from latxa.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def inproc():
    return run_inproc
