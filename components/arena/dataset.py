"""The published votes dataset (HiTZ/ebaluatoia) as files: its format, a writer and a reader.

Layout, as published: ``README.md`` (the card, whose YAML names the configs) and ``data/<config>.jsonl.gz``
plus ``data/<config>.sanitized.jsonl.gz`` for the ``<config>-sanitized`` twin; one JSON object per line with
12 fields in this order:

=================  =====================================================================================
id                 the conversation's UUID4 (``5d0bca4e-acd8-4028-9738-2007a32f87fe``)
username           pseudonymised participant: a signed 64-bit integer as a string (``-6428509523293213064``)
user_language      ``A1-A2`` | ``B1-B2`` | ``C1-C2``
user_education     ``High School`` | ``Vocational ed`` | ``Bachelor`` (see EDUCATION_CODES)
timestamp          naive ISO 8601 with microseconds, the server's local time (``2025-03-19T07:07:35.974527``)
model_a, model_b   the arena's model names (its endpoint keys: ``exp_2_101``, ``gpt-4o``, ...)
conv_a, conv_b     [{role, content}]: the system turn first, then user / assistant turns
winner             ``model_a`` | ``model_b`` | ``tie`` (and winner_content, winner_language)
=================  =====================================================================================

The reader also takes Parquet (the Hub's converted copy) and plain ``.jsonl``; rows come back sorted by
timestamp, as the study's notebook sorts them before fitting.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

from latxa.errors import LatxaError
from latxa.jsonl import iter_lines

COLUMNS = ["id", "username", "user_language", "user_education", "timestamp", "model_a", "model_b", "conv_a",
           "conv_b", "winner", "winner_content", "winner_language"]
OUTCOMES = ("model_a", "model_b", "tie")
LEVEL_CODES = ("A1-A2", "B1-B2", "C1-C2")
# The published education codes (the notebook's plot order). "DBH" (compulsory secondary), the reference form's
# fourth choice, has no published code: either nobody chose it or it was merged; we keep it as "Secondary".
EDUCATION_CODES = ("Secondary", "High School", "Vocational ed", "Bachelor")
# Our protocol's finer registration codes -> the published groups (identity for the published codes).
LEVEL_EXPORT = {"A1": "A1-A2", "A2": "A1-A2", "B1": "B1-B2", "B2": "B1-B2", "C1": "C1-C2", "C2": "C1-C2",
                "native": "C1-C2", **{c: c for c in LEVEL_CODES}}
EDUCATION_EXPORT = {"primary": "Secondary", "secondary": "High School", "vocational": "Vocational ed",
                    "bachelor": "Bachelor", "master": "Bachelor", "phd": "Bachelor", "other": "Other",
                    **{c: c for c in EDUCATION_CODES}}
CARD_FEATURES = """  features:
  - name: id
    dtype: string
  - name: username
    dtype: string
  - name: user_language
    dtype: string
  - name: user_education
    dtype: string
  - name: timestamp
    dtype: string
  - name: model_a
    dtype: string
  - name: model_b
    dtype: string
  - name: conv_a
    list:
    - name: role
      dtype: string
    - name: content
      dtype: string
  - name: conv_b
    list:
    - name: role
      dtype: string
    - name: content
      dtype: string
  - name: winner
    dtype: string
  - name: winner_content
    dtype: string
  - name: winner_language
    dtype: string"""


class DatasetError(LatxaError):
    """A votes dataset that cannot be read (one sentence naming the file and line)."""


def pseudonym(salt: str, participant_id: str) -> str:
    """A stable pseudonym in the published format: the first 8 bytes of a salted SHA-256, as a signed int64.
    (The published values look like Python's per-process ``hash()``, which cannot be reproduced.)"""
    digest = hashlib.sha256(f"{salt}:{participant_id}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big", signed=True))


def data_files(name: str) -> dict[str, str]:
    """{config: path in the dataset folder} of a config and its sanitized twin."""
    return {name: f"data/{name}.jsonl.gz", f"{name}-sanitized": f"data/{name}.sanitized.jsonl.gz"}


def card(name: str, counts: dict[str, int], description: str) -> str:
    files = data_files(name)
    lines = ["---", "license: cc0-1.0", "language:", "- eu", "tags:", "- human-feedback", "configs:"]
    for i, (config, path) in enumerate(files.items()):
        lines += [f"- config_name: {config}", f'  data_files: "{path}"', f"  default: {'true' if i == 0 else 'false'}"]
    lines += ["dataset_info:"]
    for config in files:
        lines += [f"- config_name: {config}", CARD_FEATURES, "  splits:", "  - name: train",
                  f"    num_examples: {counts.get(config, 0)}"]
    lines += ["---", "", description, ""]
    lines += [f"- `{c}`: {n} votes" for c, n in counts.items()]
    return "\n".join(lines) + "\n"


def write_jsonl_gz(rows: Iterable[dict], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for row in rows:
            gz.write((json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    tmp.replace(path)
    return n


def write_published(out: str | Path, name: str, full: list[dict], sanitized: list[dict],
                    description: str = "") -> dict[str, int]:
    """Write both configs and the card; returns {config: rows}."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise DatasetError(f"the config name {name!r} must be letters, digits and . _ - (e.g. 25-03).")
    out = Path(out)
    counts = {}
    for (config, path), rows in zip(data_files(name).items(), (full, sanitized), strict=True):
        counts[config] = write_jsonl_gz(rows, out / path)
    (out / "README.md").write_text(card(name, counts, description), encoding="utf-8")
    return counts


# ----------------------------------------------------------------------------- reading
def _card_configs(readme: Path) -> list[dict]:
    import yaml

    text = readme.read_text(encoding="utf-8")
    m = re.match(r"^---\n(.*?)\n---", text, re.S)
    if not m:
        return []
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        raise DatasetError(f"{readme}: the card's YAML header is not valid YAML.") from None
    return [c for c in meta.get("configs") or [] if isinstance(c, dict) and c.get("config_name")]


def _config_paths(folder: Path, config: str | None) -> list[Path]:
    readme = folder / "README.md"
    configs = _card_configs(readme) if readme.is_file() else []
    if configs:
        chosen = None
        if config is None:
            chosen = next((c for c in configs if c.get("default")), configs[0])
        else:
            chosen = next((c for c in configs if c["config_name"] == config), None)
            if chosen is None:
                names = ", ".join(c["config_name"] for c in configs)
                raise DatasetError(f"{folder}: no config {config!r} in the dataset card (configs: {names}).")
        files = chosen.get("data_files")
        patterns = []
        for f in files if isinstance(files, list) else [files]:
            if isinstance(f, dict):
                f = f.get("path")
            patterns += f if isinstance(f, list) else [f]
        paths = sorted({p for pat in patterns if pat for p in folder.glob(str(pat))})
        if not paths:
            raise DatasetError(f"{folder}: config {chosen['config_name']!r} names {patterns} but no such file exists.")
        return paths
    # No card: the Hub's Parquet conversion (<config>/train/*.parquet) or loose files.
    if config and (folder / config).is_dir():
        folder = folder / config
    paths = sorted(p for ext in ("*.jsonl.gz", "*.jsonl", "*.parquet") for p in folder.rglob(ext)
                   if ".sanitized." not in p.name or (config or "").endswith("-sanitized"))
    if not paths:
        raise DatasetError(f"{folder}: no votes files in it (expected README.md with configs, data/*.jsonl.gz, "
                           "*.jsonl or *.parquet).")
    return paths


def _read_file(path: Path) -> Iterable[tuple[int, dict]]:
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types; the message names the file
            raise DatasetError(f"{path}: not a readable Parquet file ({type(err).__name__}).") from None
        for i, row in enumerate(table.to_pylist(), 1):
            yield i, row
        return
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, row in iter_lines(fh, str(path), DatasetError):
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}:{n}: a vote must be a JSON object.")
                yield n, row
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read it ({type(err).__name__}: {err}).") from None


def check_row(row: dict, where: str) -> None:
    for key in ("model_a", "model_b"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise DatasetError(f"{where}: {key} must be a model name.")
    for key in ("winner", "winner_content", "winner_language"):
        if row.get(key) not in OUTCOMES:
            raise DatasetError(f"{where}: {key} must be one of model_a, model_b, tie (got {row.get(key)!r}).")


def read_published(path: str | Path, config: str | None = None) -> list[dict]:
    """The votes of a published-format dataset (a folder with its card, or one file), sorted by timestamp."""
    path = Path(path)
    if path.is_dir():
        files = _config_paths(path, config)
    elif path.is_file():
        files = [path]
    else:
        raise DatasetError(f"{path}: no such dataset file or folder.")
    from latxa.components.arena.ratings import derive_winner

    rows = []
    for f in files:
        for n, row in _read_file(f):
            if row.get("winner") is None and "winner_content" in row:   # a plain votes file may omit it
                row["winner"] = derive_winner(row.get("winner_content"), row.get("winner_language"), None)
            check_row(row, f"{f}:{n}")
            rows.append(row)
    if rows and all(isinstance(r.get("timestamp"), str) for r in rows):
        rows.sort(key=lambda r: r["timestamp"])   # stable: ties keep file order
    return rows


def is_published_source(path: Path) -> bool:
    """True for a dataset folder or a .jsonl.gz / .parquet file (a plain .jsonl is read by either reader)."""
    return path.is_dir() or path.name.endswith((".jsonl.gz", ".parquet"))
