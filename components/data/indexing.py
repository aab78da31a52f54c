"""Indexing input files into tasks: byte ranges of whole records, found without holding any record in memory.

A record is a non-blank line (JSONL, ``text_unit: line``) or a run of non-blank lines (``text_unit: paragraph``).
Lines are read with a bounded ``readline``, so a 20 GB file without a newline costs one buffer, not 20 GB. A
record above its source's ``max_record_bytes`` becomes a task of its own, marked ``oversized``: the worker
reports it (file:line, the size and the limit) without reading it. A UTF-8 byte-order mark at the start of a
file is not part of the first record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from latxa.components.data.sources import ResolvedSource, file_format
from latxa.components.data.worker import Task

CHUNK_RECORDS = 128          # records per task: fixed, so memory per task does not grow with the input
CHUNK_BYTES = 4 << 20        # ... and a task never reads more than this plus one record (long documents)
BOM = b"\xef\xbb\xbf"
_PIECE = 1 << 20             # how much of an oversized line is read at a time while skipping it


@dataclass(frozen=True)
class Span:
    """Bytes [start, end) of whole records, the first of them on line ``first_line`` (1-based)."""

    start: int
    end: int
    first_line: int
    records: int
    oversized: int = 0       # the byte size of the single record of this span, when above the limit


def _lines(fh: BinaryIO, max_bytes: int) -> Iterator[tuple[int, int, int, bool]]:
    """(start offset, end offset, content bytes, blank) per line; content excludes the line break and a BOM."""
    cap = max_bytes + 2      # a record of max_bytes plus "\r\n" fits in one readline
    offset = 0
    first = True
    while True:
        raw = fh.readline(cap)
        if not raw:
            return
        start = offset
        offset += len(raw)
        if first:
            first = False
            if raw.startswith(BOM):
                raw = raw[len(BOM):]
        size = len(raw)
        blank = not raw.strip()
        while not raw.endswith(b"\n"):  # longer than cap (or the last line): skip the rest, keep only its size
            raw = fh.readline(_PIECE)
            if not raw:
                break
            offset += len(raw)
            size += len(raw)
            blank = blank and not raw.strip()
        content = size - (1 if raw.endswith(b"\n") else 0) - (1 if raw.endswith(b"\r\n") else 0)
        yield start, offset, content, blank


def scan_records(fh: BinaryIO, *, paragraphs: bool, max_bytes: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, end, line number, byte size) of every record of ``fh``."""
    line_no = 0
    para: list[int] | None = None  # start, end, line, size of the paragraph being read
    for start, end, content, blank in _lines(fh, max_bytes):
        line_no += 1
        if not paragraphs:
            if not blank:
                yield start, end, line_no, content
            continue
        if blank:
            if para is not None:
                yield tuple(para)
                para = None
        elif para is None:
            para = [start, end, line_no, content]
        else:
            para[1] = end
            para[3] += content + 1
    if para is not None:
        yield tuple(para)


def index_file(path: Path, *, chunk_records: int, paragraphs: bool, max_bytes: int, limit: int | None,
               capped: list) -> Iterator[Span]:
    """Spans of at most ``chunk_records`` records (or CHUNK_BYTES), an oversized record alone in its span.

    Stops after ``limit`` records; appends True to ``capped`` when records were left unread because of it.
    """
    group: list[int] | None = None  # start, end, first line, records
    total = 0
    with path.open("rb") as fh:
        for start, end, line, size in scan_records(fh, paragraphs=paragraphs, max_bytes=max_bytes):
            if limit is not None and total >= limit:
                capped.append(True)
                break
            total += 1
            if size > max_bytes:
                if group is not None:
                    yield Span(*group)
                    group = None
                yield Span(start, end, line, 1, oversized=size)
                continue
            if group is None:
                group = [start, end, line, 0]
            group[1] = end
            group[3] += 1
            if group[3] >= chunk_records or group[1] - group[0] >= CHUNK_BYTES:
                yield Span(*group)
                group = None
    if group is not None:
        yield Span(*group)


def build_tasks(sources: list[ResolvedSource], chunk_records: int) -> tuple[list[Task], dict[str, dict]]:
    """Every source's spans as tasks (``ceil(weight)`` copies each), and per-source index facts for stats."""
    tasks: list[Task] = []
    info: dict[str, dict] = {}
    for src in sources:
        cfg = src.config
        left = cfg.max_documents
        n_records, capped = 0, []
        for fi, path in enumerate(src.files):
            if left is not None and left <= 0:
                capped.append(True)
                break
            fmt = file_format(path)
            paragraphs = fmt == "txt" and cfg.text_unit == "paragraph"
            file_records = 0
            for span in index_file(path, chunk_records=chunk_records, paragraphs=paragraphs,
                                   max_bytes=cfg.max_record_bytes, limit=left, capped=capped):
                for c in range(max(1, math.ceil(cfg.weight))):
                    tasks.append(Task(tid=len(tasks), source=src.name, kind=cfg.kind, fmt=fmt, path=str(path),
                                      file_index=fi, start=span.start, end=span.end, first_line=span.first_line,
                                      records=span.records, copy=c, weight=cfg.weight, text_field=cfg.text_field,
                                      messages_field=cfg.messages_field, text_unit=cfg.text_unit,
                                      oversized=span.oversized, max_record_bytes=cfg.max_record_bytes))
                file_records += span.records
            n_records += file_records
            if left is not None:
                left -= file_records
        info[src.name] = {"files": [str(f) for f in src.files], "records_indexed": n_records,
                          "max_documents": cfg.max_documents, "stopped_at_cap": bool(capped), "weight": cfg.weight}
    return tasks, info
