"""The reference study's derived data files, rebuilt from local copies of their Hugging Face sources (download them
on a login node: runs are offline). Every function counts what it read, wrote and dropped.

- :func:`clean_instructions` -> ``...-1M-cleaned.jsonl``: the reference trained its 8B models on "-cleaned" Magpie
  files whose cleaning code is not in its repository; its README says the ``translation_*`` conversations "do not
  seem to be of good quality", so cleaning drops records whose ``conversation_id`` starts with ``translation_``
  (our reading; documented in docs/slurm.md). Roles are normalised to user/assistant (``human``/``gpt``, and
  ``from``/``value`` keys, as Axolotl's role mapping did).
- :func:`build_aya` -> ``AYA.jsonl``: CohereForAI/aya_dataset, train and test together, ``language_code == "eus"``,
  ``inputs`` -> user, ``targets`` -> assistant.
- :func:`build_magpie_ultra` -> ``Magpie-Ultra-1K.jsonl``: argilla/magpie-ultra-v0.1 train, ``instruction`` -> user,
  ``response`` -> assistant, deduplicated by prompt (first kept), then ``random.seed(33); random.sample(rows, 1000)``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from latxa.components.data.sources import DataError
from latxa.jsonl import iter_lines

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class Counts:
    read: int = 0
    written: int = 0
    dropped: int = 0
    reasons: dict | None = None

    def drop(self, reason: str) -> None:
        self.dropped += 1
        self.reasons = self.reasons or {}
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"read": self.read, "written": self.written, "dropped": self.dropped, "reasons": self.reasons or {}}


def read_rows(paths: Iterable[str | Path]) -> Iterator[tuple[str, dict]]:
    """(``file:line`` or ``file:row``, record) from JSONL or Parquet files, in order."""
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"The input file {path} does not exist.")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
                yield f"{path}:{i}", row
            continue
        with path.open(encoding="utf-8") as fh:
            for i, row in iter_lines(fh, str(path), DataError):
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{i}: expected a JSON object.")
                yield f"{path}:{i}", row


def _write(out: Path, rows: Iterable[dict]) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:   # rows are read as they are written: a bad input line stops here
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return n


def _conversation(where: str, msgs) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: 'conversations' must be a non-empty list.")
    out = []
    for m in msgs:
        if not isinstance(m, dict):
            raise DataError(f"{where}: a message is not an object.")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role not in ROLE_MAP or not isinstance(content, str):
            raise DataError(f"{where}: message role {role!r} is not one of {', '.join(ROLE_MAP)} (or content not text).")
        out.append({"role": ROLE_MAP[role], "content": content})
    return out


def clean_instructions(inputs: list[str | Path], out: str | Path, *, drop_id_prefixes: tuple[str, ...] = ("translation_",),
                       id_field: str = "conversation_id", messages_field: str = "conversations") -> dict:
    """Write the cleaned copy of Magpie instruction files (see the module docstring)."""
    counts = Counts()

    def rows():
        for where, row in read_rows(inputs):
            counts.read += 1
            cid = str(row.get(id_field) or "")
            if cid and cid.startswith(drop_id_prefixes):
                counts.drop(f"{id_field} starts with {cid.split('_')[0]}_")
                continue
            if messages_field not in row:
                raise DataError(f"{where}: missing field '{messages_field}'.")
            clean = {messages_field: _conversation(where, row[messages_field])}
            if cid:
                clean[id_field] = cid
            yield clean

    counts.written = _write(Path(out), rows())
    return counts.as_dict()


def build_aya(inputs: list[str | Path], out: str | Path, *, language: str = "eus") -> dict:
    counts = Counts()

    def rows():
        for where, row in read_rows(inputs):
            counts.read += 1
            if row.get("language_code") != language:
                counts.drop(f"language_code is not {language}")
                continue
            if not isinstance(row.get("inputs"), str) or not isinstance(row.get("targets"), str):
                raise DataError(f"{where}: an AYA record needs text 'inputs' and 'targets'.")
            yield {"conversations": [{"role": "user", "content": row["inputs"]},
                                     {"role": "assistant", "content": row["targets"]}]}

    counts.written = _write(Path(out), rows())
    return counts.as_dict()


def build_magpie_ultra(inputs: list[str | Path], out: str | Path, *, n: int = 1000, seed: int = 33) -> dict:
    counts = Counts()
    seen: set[str] = set()
    rows: list[dict] = []
    for where, row in read_rows(inputs):
        counts.read += 1
        prompt, response = row.get("instruction"), row.get("response")
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise DataError(f"{where}: a Magpie-Ultra record needs text 'instruction' and 'response'.")
        if prompt in seen:
            counts.drop("duplicate prompt")
            continue
        seen.add(prompt)
        rows.append({"conversations": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]})
    if len(rows) < n:
        raise DataError(f"Only {len(rows)} distinct prompts in the input; the reference sampled {n}.")
    random.seed(seed)   # the reference: random.seed(33); random.sample(ds, 1000)
    sample = random.sample(rows, n)
    counts.dropped += len(rows) - n
    counts.reasons = {**(counts.reasons or {}), f"not in the seed-{seed} sample of {n}": len(rows) - n}
    counts.written = _write(Path(out), sample)
    return counts.as_dict()
