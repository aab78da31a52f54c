"""Data-source configuration and record parsing.

A data config (YAML) names the files of each source the study mixes::

    sources:
      corpus_eu: {kind: text, files: ["{repo}/data/corpus/eu_corpus.jsonl"]}
      inst_eu:   {kind: chat, files: ["{repo}/data/instructions/eu.jsonl"]}
      inst_en:   {kind: chat, files: ["{repo}/data/instructions/en.jsonl"], weight: 0.5}

File entries may use ``{repo}`` (the repository root), ``{state}`` (the local state folder),
environment variables (``$LATXA_DATA_ROOT``) and glob patterns. Relative paths resolve
against the config file's folder.

Record formats:

- ``kind: text`` -- JSONL with a text field (``text_field``, default ``text``), or plain-text
  files (``.txt``) with one document per line (``text_unit: line``) or per blank-line separated
  paragraph (``text_unit: paragraph``).
- ``kind: chat`` -- JSONL with ``{"conversations": [{"role": ..., "content": ...}, ...]}``
  (``messages_field`` renames the key); roles are system (first only), user and assistant; an empty or
  whitespace-only assistant reply is a bad record (training on it would only teach ``<|eot_id|>``).

Per-record limits (a bad record, named with ``file:line``, skippable): at most ``max_record_bytes`` bytes
(default :data:`DEFAULT_MAX_RECORD_BYTES`), JSON nested at most :data:`MAX_JSON_DEPTH` levels, integers of at
most ``sys.get_int_max_str_digits()`` digits, no lone surrogates (``"\\ud800"``) in the text used.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from latxa.errors import LatxaError
from latxa.jsonl import MAX_DEPTH, JSONLineError, loads_line
from latxa.yamlfile import load_yaml_file

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "data"
DEFAULT_DATA_CONFIG = CONFIG_DIR / "sample.yaml"
SOURCE_NAMES = ("corpus_eu", "inst_eu", "inst_en")
ROLES = ("system", "user", "assistant")
DEFAULT_MAX_RECORD_BYTES = 4 << 20   # per record: ~1M tokens, ~0.75 GB in the tokenizer (a 50 MB line took 7 GB)
MAX_RECORD_BYTES = 256 << 20         # the most a data config may allow
MAX_JSON_DEPTH = MAX_DEPTH           # a record's JSON nesting (a conversation needs 3)
MAX_WEIGHT = 32                      # copies per document; each copy of a range is a task held in memory


class DataError(LatxaError, ValueError):
    """Bad data or a bad data config; the message is one readable sentence (with file:line for records)."""


class RecordError(Exception):
    """One malformed record; carries the reason (the caller adds file:line)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["text", "chat"]
    files: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    text_field: str = Field("text", min_length=1)
    messages_field: str = Field("conversations", min_length=1)
    text_unit: Literal["line", "paragraph"] = "line"
    weight: Annotated[float, Strict()] = Field(1.0, gt=0, le=MAX_WEIGHT, allow_inf_nan=False,
                                               description="copies per document: 2.0 doubles the source, 0.5 keeps half")
    max_documents: Annotated[int, Strict()] | None = Field(None, gt=0, le=2**62,
                                                          description="read at most this many records of the source")
    max_record_bytes: Annotated[int, Strict()] = Field(DEFAULT_MAX_RECORD_BYTES, gt=0, le=MAX_RECORD_BYTES,
                                                       description="a longer record is a bad record")


class DataSourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    # The chat template every backbone's data is rendered with: a built-in name (llama-3.1-instruct, as the
    # reference forced on all its backbones) or a .jinja file; None keeps each tokenizer's own template.
    chat_template: str | None = None
    sources: dict[str, SourceConfig]
    # Held-out sets for the loss during training (the reference's AYA and Magpie-Ultra-1K); chat sources.
    heldout: dict[str, SourceConfig] = Field(default_factory=dict)


BUILTIN_TEMPLATES = {"llama-3.1-instruct": "llama31_chat_template.jinja"}


def chat_template_text(cfg: DataSourcesConfig, config_path: Path) -> str | None:
    """The text of the config's ``chat_template`` (a built-in name or a file relative to the config), or None."""
    if not cfg.chat_template:
        return None
    name = cfg.chat_template
    if name in BUILTIN_TEMPLATES:
        path = Path(__file__).resolve().parents[1] / "templates" / BUILTIN_TEMPLATES[name]
    else:
        path = Path(_expand_one(name, config_path.parent))
    if not path.is_file():
        known = ", ".join(sorted(BUILTIN_TEMPLATES))
        raise DataError(f"Invalid value for 'chat_template' in data config {config_path}: {name} is neither a "
                        f"built-in template ({known}) nor a file.")
    return path.read_text(encoding="utf-8")


def _expand_one(entry: str, base: Path) -> Path:
    from latxa.paths import expand

    try:
        path = Path(expand(entry, what="data file"))
    except LatxaError as err:
        raise DataError(str(err)) from None
    return path if path.is_absolute() else base / path


@dataclass(frozen=True)
class ResolvedSource:
    name: str
    config: SourceConfig
    files: tuple[Path, ...]


def _expand(entry: str, base: Path) -> list[Path]:
    from latxa.paths import expand

    try:
        text = expand(entry, what="data file")
    except LatxaError as err:
        raise DataError(str(err)) from None
    path = Path(text)
    if not path.is_absolute():
        path = base / path
    if glob.has_magic(str(path)):
        matches = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not matches:
            raise DataError(f"The data file pattern '{entry}' matches no files (expanded to {path}).")
        return matches
    if not path.is_file():
        raise DataError(f"The data file {path} does not exist (from '{entry}').")
    return [path]


def load_data_config(path: str | Path | None = None) -> tuple[DataSourcesConfig, Path]:
    """Load and validate a data-source config; the shipped sample config when ``path`` is None."""
    path = Path(path) if path else DEFAULT_DATA_CONFIG
    raw = load_yaml_file(path, DataError, "Data config")
    if not isinstance(raw, dict):
        raise DataError(f"Data config {path} must be a YAML mapping with a 'sources' key.")
    try:
        cfg = DataSourcesConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise DataError(f"Unknown key '{key}' in data config {path}.") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise DataError(f"Invalid value for '{key}' in data config {path}: {msg}.") from None
    unknown = sorted(set(cfg.sources) - set(SOURCE_NAMES))
    if unknown:
        raise DataError(f"Data config {path} names unknown source '{unknown[0]}' (known: {', '.join(SOURCE_NAMES)}).")
    for name, src in cfg.sources.items():
        want = "text" if name.startswith("corpus") else "chat"
        if src.kind != want:
            raise DataError(f"Source '{name}' in data config {path} must have kind '{want}', not '{src.kind}'.")
    for name, src in cfg.heldout.items():
        if name in cfg.sources:
            raise DataError(f"Held-out set '{name}' in data config {path} has the name of a training source.")
        if src.kind != "chat":
            raise DataError(f"Held-out set '{name}' in data config {path} must have kind 'chat', not '{src.kind}'.")
    return cfg, path


def resolve_sources(cfg: DataSourcesConfig, config_path: Path, names: list[str]) -> list[ResolvedSource]:
    """The sources a variant needs (or held-out sets, by their names), with their files expanded and checked."""
    out = []
    for name in names:
        if name not in cfg.sources and name not in cfg.heldout:
            raise DataError(f"The variant needs source '{name}' but data config {config_path} does not define it.")
        src = cfg.sources.get(name) or cfg.heldout[name]
        files: list[Path] = []
        for entry in src.files:
            files.extend(_expand(entry, config_path.parent))
        for f in files:
            if f.suffix in (".gz", ".bz2", ".xz", ".zst"):
                raise DataError(f"The data file {f} is compressed; decompress it first (shards are read by byte offset).")
        out.append(ResolvedSource(name, src, tuple(files)))
    return out


def file_format(path: Path) -> str:
    return "jsonl" if path.suffix in (".jsonl", ".json", ".ndjson") else "txt"


# ----------------------------------------------------------------------------------------- records


def _show(value: Any) -> str:
    """A value for a reason: ASCII-safe (no raw surrogates reach skips.jsonl) and short."""
    text = ascii(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _loads(line: str) -> Any:
    try:
        return loads_line(line, MAX_JSON_DEPTH)
    except JSONLineError as err:
        raise RecordError(err.reason) from None


def _checked_text(text: str, what: str) -> str:
    """``text`` unless it holds a lone surrogate (a JSON "\\ud800" escape), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RecordError(f"{what} holds a lone surrogate (\\u{ord(text[err.start]):04x}) at character "
                          f"{err.start}") from None
    return text


def _json_field(line: str, field: str):
    """One JSONL record's ``field``; malformed JSON, a non-object or a missing field is a RecordError."""
    row = _loads(line)
    if not isinstance(row, dict):
        raise RecordError(f"expected a JSON object, got {type(row).__name__}")
    if field not in row:
        raise RecordError(f"missing field '{field}'")
    return row[field]


def parse_text_record(line: str, fmt: str, text_field: str) -> str:
    if fmt == "txt":
        text = line
    else:
        text = _json_field(line, text_field)
        if not isinstance(text, str):
            raise RecordError(f"field '{text_field}' must be a string, not {type(text).__name__}")
        _checked_text(text, f"field '{text_field}'")
    if not text.strip():
        raise RecordError("empty text")
    return text


def parse_chat_record(line: str, messages_field: str) -> list[dict]:
    msgs = _json_field(line, messages_field)
    if not isinstance(msgs, list):
        raise RecordError(f"field '{messages_field}' must be a list of messages")
    if not msgs:
        raise RecordError("empty conversation")
    clean = []
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict):
            raise RecordError(f"message {i} is not an object")
        for key in ("role", "content"):
            if key not in msg:
                raise RecordError(f"message {i} is missing field '{key}'")
        role, content = msg["role"], msg["content"]
        if not isinstance(role, str) or role not in ROLES:
            raise RecordError(f"message {i} has unknown role {_show(role)} (expected system, user or assistant)")
        if not isinstance(content, str):
            raise RecordError(f"message {i} content must be a string")
        _checked_text(content, f"message {i} content")
        if role == "system" and i != 0:
            raise RecordError(f"message {i} is a system message; only the first message may be one")
        if role == "assistant" and not content.strip():
            raise RecordError(f"message {i} is an empty assistant reply")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise RecordError("conversation has no assistant turn")
    return clean
