"""Shard workers: read a byte range of one file, parse, format, tokenize (batched) and mask.

A worker handles one :class:`Task` (a range of whole records of one file) and returns flat
arrays; the main process only mixes and packs. Workers load the tokenizer from its JSON
string once (pool initializer), so nothing is re-read per task.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field

import numpy as np

from latxa.components.data.formatting import ChatFormatter, mask_from_encoding
from latxa.components.data.sources import RecordError, parse_chat_record, parse_text_record


@dataclass(frozen=True)
class Task:
    tid: int
    source: str
    kind: str          # text | chat
    fmt: str           # jsonl | txt
    path: str
    file_index: int
    start: int         # byte offsets [start, end)
    end: int
    first_line: int    # 1-based line number at `start`
    records: int
    copy: int          # 0 reads and reports; k >= 1 are extra copies when weight > 1
    weight: float
    text_field: str = "text"
    messages_field: str = "conversations"
    text_unit: str = "line"
    oversized: int = 0           # > 0: the range is one record of this many bytes, above max_record_bytes
    max_record_bytes: int = 0


@dataclass
class WorkerSpec:
    tokenizer_json: str
    template: str | None
    special: dict
    bos_id: int | None
    doc_eos_id: int | None
    train_on: str
    seed: int
    on_error: str
    shuffle: bool
    threads: bool = False


@dataclass
class TaskResult:
    tid: int
    source: str
    read: int = 0
    written: int = 0
    skips: list[dict] = field(default_factory=list)
    error: dict | None = None
    lengths: np.ndarray | None = None
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    trainable: int = 0
    boundary_tokens: int = 0


_STATE: dict = {}


def init_worker(spec: WorkerSpec) -> None:
    if not spec.threads:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    _STATE["spec"] = spec
    _STATE["tok"] = Tokenizer.from_str(spec.tokenizer_json)
    _STATE["chat"] = ChatFormatter(spec.template, spec.special, spec.train_on) if spec.template else None


def _uniform(seed: int, task: Task, line: int) -> float:
    h = hashlib.blake2b(f"{seed}:{task.source}:{task.file_index}:{line}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


def copies_of(seed: int, task: Task, line: int) -> int:
    whole = math.floor(task.weight)
    frac = task.weight - whole
    return whole + (1 if frac and _uniform(seed, task, line) < frac else 0)


def _records(task: Task, data: bytes):
    """Yield (line_number, text) for each record of the range; text is None for undecodable bytes."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if task.text_unit == "paragraph" and task.fmt == "txt":
        para: list[bytes] = []
        start = 0
        for i, raw in enumerate(lines):
            if raw.strip():
                if not para:
                    start = task.first_line + i
                para.append(raw)
            elif para:
                yield start, b"\n".join(para)
                para = []
        if para:
            yield start, b"\n".join(para)
        return
    for i, raw in enumerate(lines):
        if raw.strip():
            yield task.first_line + i, raw


def _oversized(task: Task, spec: WorkerSpec) -> TaskResult:
    """The result for a record above the size limit, which is never read."""
    res = TaskResult(task.tid, task.source, lengths=np.zeros(0, np.int64), ids=np.zeros(0, np.int32),
                     labels=np.zeros(0, np.int32))
    if task.copy != 0:
        return res
    res.read = 1
    skip = {"file": task.path, "line": task.first_line,
            "reason": f"record of {task.oversized:,} bytes is above the limit of {task.max_record_bytes:,} bytes "
                      "(max_record_bytes)"}
    if spec.on_error == "fail":
        res.error = skip
    else:
        res.skips.append(skip)
    return res


def run_task(task: Task) -> TaskResult:
    """Read, parse and format the records of one task, then tokenize and mask them (ordered with the seed)."""
    spec: WorkerSpec = _STATE["spec"]
    if task.oversized:
        return _oversized(task, spec)
    res = TaskResult(task.tid, task.source)
    docs = _parse(task, spec, _read(task), res)
    if res.error is not None or not docs:
        res.lengths = np.zeros(0, np.int64)
        res.ids = res.labels = np.zeros(0, np.int32)
        return res
    _encode(task, spec, docs, res)
    return res


def _read(task: Task) -> bytes:
    with open(task.path, "rb") as fh:
        fh.seek(task.start)
        data = fh.read(task.end - task.start)
    if task.start == 0 and data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark is not text
        data = data[3:]
    return data


def _format(task: Task, raw: bytes) -> tuple[str, list[tuple[int, int]] | None]:
    """One record as the text to tokenize (and, for chat, the character spans of the assistant replies)."""
    try:
        text = raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as err:
        raise RecordError(f"invalid UTF-8 at byte {err.start}") from None
    if task.kind == "text":
        return parse_text_record(text, task.fmt, task.text_field), None
    return _STATE["chat"].render_with_spans(parse_chat_record(text, task.messages_field))


def _parse(task: Task, spec: WorkerSpec, data: bytes, res: TaskResult) -> list[tuple[str, list | None]]:
    """The documents this copy of the task writes; counts reads, writes and skips on copy 0 only."""
    docs = []
    for line, raw in _records(task, data):
        if task.copy == 0:
            res.read += 1
        try:
            doc = _format(task, raw)
        except RecordError as err:
            if task.copy != 0:
                continue
            skip = {"file": task.path, "line": line, "reason": err.reason}
            if spec.on_error == "fail":
                res.error = skip
                return []
            res.skips.append(skip)
            continue
        n = copies_of(spec.seed, task, line)
        if n == 0:
            if task.copy == 0:
                res.skips.append({"file": task.path, "line": line, "reason": f"sampled out by weight {task.weight:g}"})
            continue
        if task.copy >= n:
            continue
        if task.copy == 0:
            res.written += 1
        docs.append(doc)
    return docs


def _encode(task: Task, spec: WorkerSpec, docs: list[tuple[str, list | None]], res: TaskResult) -> None:
    """Batched tokenization, BOS/EOS for corpus text, loss masks for chat; flat arrays into ``res``."""
    encs = _STATE["tok"].encode_batch([d for d, _ in docs], add_special_tokens=False)
    ids_list, lab_list = [], []
    for (_, spans), enc in zip(docs, encs, strict=True):
        ids = np.asarray(enc.ids, dtype=np.int32)
        if task.kind == "text":
            head = [spec.bos_id] if spec.bos_id is not None else []
            tail = [spec.doc_eos_id] if spec.doc_eos_id is not None else []
            ids = np.concatenate([np.asarray(head, np.int32), ids, np.asarray(tail, np.int32)])
            mask = np.ones(len(ids), np.bool_)
        elif spec.train_on == "all":
            mask = np.ones(len(ids), np.bool_)
        else:
            mask, boundary = mask_from_encoding(enc, spans)
            res.boundary_tokens += boundary
        mask[0] = False  # nothing in the document precedes its first token
        ids_list.append(ids)
        lab_list.append(np.where(mask, ids, -100).astype(np.int32))
        res.trainable += int(mask.sum())

    order = np.arange(len(ids_list))
    if spec.shuffle:
        np.random.default_rng([spec.seed, task.tid, 1]).shuffle(order)
    res.lengths = np.fromiter((len(ids_list[i]) for i in order), dtype=np.int64, count=len(order))
    res.ids = np.concatenate([ids_list[i] for i in order])
    res.labels = np.concatenate([lab_list[i] for i in order])
