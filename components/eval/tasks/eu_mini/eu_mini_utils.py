"""Loaders and prompt functions for the offline eu-mini suite (lm-eval ``!function`` targets).

Each loader reads a JSONL file shipped in ``data/benchmarks`` (or ``$LATXA_EVAL_DATA``), checks every
record and returns a ``datasets.DatasetDict``; a malformed record raises an error naming ``file:line``.
Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

LETTERS = "ABCDEFGHIJ"


def data_dir() -> Path:
    env = os.environ.get("LATXA_EVAL_DATA")
    if env:
        return Path(env)
    from latxa.paths import SAMPLE_DATA

    return SAMPLE_DATA / "benchmarks"


def _read(name: str, check) -> list[dict]:
    from latxa.components.eval.errors import EvalError
    from latxa.jsonl import iter_lines

    path = data_dir() / name
    if not path.is_file():
        raise EvalError(f"{path}: eu-mini data file not found (set LATXA_EVAL_DATA to the folder holding it).")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, row in iter_lines(fh, str(path), EvalError):
            problem = check(row)
            if problem:
                raise EvalError(f"{path}:{lineno}: {problem}.")
            rows.append(row)
    if not rows:
        raise EvalError(f"{path}: no records.")
    return rows


def _mc_check(row) -> str | None:
    if not isinstance(row, dict):
        return "a record must be a JSON object"
    cands = row.get("candidates")
    if not isinstance(row.get("question"), str) or not isinstance(cands, list) or not (2 <= len(cands) <= len(LETTERS)):
        return "expected 'question' (text) and 'candidates' (2 or more)"
    if not isinstance(row.get("answer"), int) or not 0 <= row["answer"] < len(cands):
        return f"'answer' must be an index into the {len(cands)} candidates"
    return None


def _dataset(rows: list[dict]):
    import datasets

    cols = {k: [r[k] for r in rows] for k in rows[0]}
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(cols)})


def _mc_rows(name: str) -> list[dict]:
    rows = _read(name, _mc_check)
    return [{"question": r["question"], "candidates": [str(c) for c in r["candidates"]], "answer": r["answer"],
             "group": str(r.get("subset") or r.get("category") or "")} for r in rows]


def load_eus_trivia(**_kwargs):
    return _dataset(_mc_rows("eus_trivia.jsonl"))


def load_eus_exams(**_kwargs):
    return _dataset(_mc_rows("eus_exams_eu.jsonl"))


def _qnli_check(row) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("sentence"), str):
        return "expected 'question' and 'sentence' (text)"
    if row.get("label") not in ("entailment", "not_entailment"):
        return "'label' must be 'entailment' or 'not_entailment'"
    return None


def load_qnli(**_kwargs):
    rows = _read("qnli_eu.jsonl", _qnli_check)
    return _dataset([{"question": r["question"], "sentence": r["sentence"],
                      "candidates": ["bai", "ez"], "answer": 0 if r["label"] == "entailment" else 1} for r in rows])


def _tqa_check(row) -> str | None:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        return "expected 'question' (text)"
    choices, labels = row.get("choices"), row.get("labels")
    if not isinstance(choices, list) or not isinstance(labels, list) or len(choices) != len(labels) or len(choices) < 2:
        return "'choices' and 'labels' must be lists of the same length (2 or more)"
    if labels.count(1) != 1:
        return "MC1 'labels' must mark exactly one choice with 1"
    return None


def load_truthfulqa_mc1(**_kwargs):
    rows = _read("truthfulqa_eu_mc1.jsonl", _tqa_check)
    # Letters only go to J; MC1 items have up to 13 choices, so the generative variant keeps the first 10
    # while always keeping the correct one (it is listed first in the source).
    return _dataset([{"question": r["question"], "candidates": [str(c) for c in r["choices"]],
                      "answer": r["labels"].index(1)} for r in rows])


# ---- prompts -----------------------------------------------------------------------------------------

def mc_text(doc: dict) -> str:
    """Lettered multiple choice, as lm-eval's eus_trivia / eus_exams: the model scores the letters."""
    lines = [f"Galdera: {doc['question']}"]
    lines += [f"{LETTERS[i]}: {c}" for i, c in enumerate(doc["candidates"][: len(LETTERS)])]
    return "\n".join(lines) + "\nErantzuna:"


def mc_choices(doc: dict) -> list[str]:
    return list(LETTERS[: min(len(doc["candidates"]), len(LETTERS))])


def qnli_text(doc: dict) -> str:
    return f"{doc['question']}\n{doc['sentence']}\nGaldera: aurreko galderari erantzuten al dio emandako testuak?\nErantzuna:"


def qnli_gen_text(doc: dict) -> str:
    return (f"{doc['question']}\n{doc['sentence']}\nGaldera: aurreko galderari erantzuten al dio emandako testuak?\n"
            "A: bai\nB: ez\nErantzuna:")


def tqa_text(doc: dict) -> str:
    return f"Q: {doc['question']}\nA:"


def tqa_gen_text(doc: dict) -> str:
    return mc_text(doc)


def letter_target(doc: dict) -> str:
    return LETTERS[doc["answer"]]
