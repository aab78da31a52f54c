"""Packing tokenized documents into fixed-length rows, and writing them as Parquet shards.

Rows are always full (no padding) except possibly the last. To avoid splitting short
documents, the packer keeps a bounded look-ahead buffer and fills each row's remaining space
with the longest buffered document that fits (best fit); only when none fits does it split
the oldest buffered document across rows. ``position_ids`` restart at 0 at each document start
and at the start of a row that continues a split document. The first token of every segment
gets label -100: nothing of its own document precedes it in the row, so predicting it would
train on the previous document.
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import numpy as np

IGNORE = -100


class ShardWriter:
    """Writes rows to ``shards/shard-NNNNN.parquet`` (columns input_ids, labels, position_ids: list<int32>)."""

    def __init__(self, out_dir: Path, seq_len: int, shard_rows: int, batch_rows: int | None = None):
        import pyarrow as pa

        self.dir = Path(out_dir) / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        batch_rows = batch_rows or max(1, (1 << 18) // seq_len)  # row groups of ~256K tokens: bounded memory
        self.seq_len, self.shard_rows, self.batch_rows = seq_len, shard_rows, max(1, min(batch_rows, shard_rows))
        self.schema = pa.schema([(c, pa.list_(pa.int32())) for c in ("input_ids", "labels", "position_ids")])
        self.shards: list[str] = []
        self.num_rows = 0
        self._writer = None
        self._rows_in_shard = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, ids: np.ndarray, labels: np.ndarray, pos: np.ndarray) -> None:
        self._pending.append((ids, labels, pos))
        self.num_rows += 1
        if len(self._pending) >= self.batch_rows or self._rows_in_shard + len(self._pending) >= self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        while self._pending:
            if self._writer is None:
                name = f"shard-{len(self.shards):05d}.parquet"
                self._writer = pq.ParquetWriter(self.dir / name, self.schema, compression="zstd")
                self.shards.append(f"shards/{name}")
                self._rows_in_shard = 0
            take = min(len(self._pending), self.shard_rows - self._rows_in_shard)
            batch, self._pending = self._pending[:take], self._pending[take:]
            offsets = pa.array(np.arange(0, (take + 1) * self.seq_len, self.seq_len, dtype=np.int32))
            cols = [pa.ListArray.from_arrays(offsets, pa.array(np.concatenate([r[k] for r in batch]), pa.int32()))
                    for k in range(3)]
            self._writer.write_table(pa.Table.from_arrays(cols, schema=self.schema))
            self._rows_in_shard += take
            if self._rows_in_shard >= self.shard_rows:
                self._writer.close()
                self._writer = None

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Packer:
    """Best-fit packing with a bounded look-ahead; see the module docstring."""

    def __init__(self, writer: ShardWriter, seq_len: int, pad_token_id: int, lookahead: int = 256):
        self.writer, self.seq_len, self.pad_id, self.lookahead = writer, seq_len, pad_token_id, max(1, lookahead)
        self._ids = np.empty(seq_len, np.int32)
        self._labels = np.empty(seq_len, np.int32)
        self._pos = np.empty(seq_len, np.int32)
        self._fill = 0
        # Buffer: examples by arrival order, and a sorted index (length, arrival) for best fit.
        self._buf: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._by_len: list[tuple[int, int]] = []
        self._arrival = itertools.count()
        self._carry: tuple[np.ndarray, np.ndarray] | None = None  # rest of a split document: starts the next row
        self.tokens = 0
        self.trainable_tokens = 0
        self.split_documents = 0
        self.segments = 0

    def add(self, ids: np.ndarray, labels: np.ndarray) -> None:
        key = next(self._arrival)
        self._buf[key] = (ids, labels)
        bisect.insort(self._by_len, (len(ids), key))
        while len(self._buf) > self.lookahead:
            self._step()

    def _take(self, key: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        self._by_len.pop(bisect.bisect_left(self._by_len, (length, key)))
        return self._buf.pop(key)

    def _place(self, ids: np.ndarray, labels: np.ndarray) -> None:
        n, f = len(ids), self._fill
        self._ids[f:f + n] = ids
        self._labels[f:f + n] = labels
        self._labels[f] = IGNORE
        self._pos[f:f + n] = np.arange(n, dtype=np.int32)
        self._fill += n
        self.tokens += n
        self.segments += 1
        if self._fill == self.seq_len:
            self._emit()

    def _emit(self) -> None:
        self.trainable_tokens += int(np.count_nonzero(self._labels != IGNORE))
        self.writer.add(self._ids.copy(), self._labels.copy(), self._pos.copy())
        self._fill = 0

    def _step(self) -> None:
        """Place one example (or one piece of one) into the current row."""
        if self._carry is not None:
            ids, labels = self._carry
            self._carry = None
            self._place_or_split(ids, labels)
            return
        remaining = self.seq_len - self._fill
        i = bisect.bisect_right(self._by_len, (remaining, float("inf")))
        if i > 0:
            length, key = self._by_len[i - 1]
            self._place(*self._take(key, length))
            return
        oldest = next(iter(self._buf))
        ids, labels = self._take(oldest, len(self._buf[oldest][0]))
        self.split_documents += 1
        self._place_or_split(ids, labels)

    def _place_or_split(self, ids: np.ndarray, labels: np.ndarray) -> None:
        remaining = self.seq_len - self._fill
        if len(ids) <= remaining:
            self._place(ids, labels)
        else:
            self._place(ids[:remaining], labels[:remaining])
            self._carry = (ids[remaining:], labels[remaining:])

    def finish(self) -> None:
        while self._buf or self._carry is not None:
            self._step()
        if self._fill:
            f = self._fill
            last = int(self._pos[f - 1])
            self._ids[f:] = self.pad_id
            self._labels[f:] = IGNORE
            self._pos[f:] = np.arange(last + 1, last + 1 + self.seq_len - f, dtype=np.int32)
            self._emit()
            self.pad_tokens = self.seq_len - f
        else:
            self.pad_tokens = 0
        self.writer.close()
