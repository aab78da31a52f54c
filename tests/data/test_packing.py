"""Packer and shard writer on synthetic documents (exact expectations, no tokenizer needed)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from latxa.components.data.packing import IGNORE, Packer, ShardWriter

PAD = 9999


def _pack(docs, seq_len, tmp_path, lookahead=4, shard_rows=1000):
    writer = ShardWriter(tmp_path, seq_len, shard_rows)
    packer = Packer(writer, seq_len, PAD, lookahead)
    for d in docs:
        d = np.asarray(d, np.int32)
        packer.add(d, d.copy())
    packer.finish()
    rows = []
    for s in writer.shards:
        t = pq.read_table(tmp_path / s)
        rows += list(zip(*(t.column(c).to_pylist() for c in ("input_ids", "labels", "position_ids")), strict=True))
    return packer, writer, rows


def _segments(ids, pos):
    """Split a row into segments at position_ids == 0."""
    cuts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
    return [ids[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def test_rows_are_full_except_last_and_positions_restart_per_document(tmp_path):
    rng = np.random.default_rng(0)
    # Documents are ranges of distinct ids so every token can be traced back to its document.
    docs, base = [], 0
    for n in rng.integers(3, 40, size=60):
        docs.append(list(range(base, base + n)))
        base += n
    docs.append(list(range(base, base + 75)))  # longer than a row: must be split, not dropped
    packer, writer, rows = _pack(docs, 16, tmp_path)
    total = sum(len(d) for d in docs)
    assert packer.tokens == total
    assert len(rows) == -(-total // 16)
    for ids, _labels, _pos in rows[:-1]:
        assert len(ids) == 16 and PAD not in ids
    last_ids, last_labels, last_pos = rows[-1]
    n_pad = len(rows) * 16 - total
    assert packer.pad_tokens == n_pad
    if n_pad:
        assert last_ids[-n_pad:] == [PAD] * n_pad and last_labels[-n_pad:] == [IGNORE] * n_pad
        # pad position_ids continue from the last document
        assert last_pos[-n_pad:] == list(range(last_pos[-n_pad - 1] + 1, last_pos[-n_pad - 1] + 1 + n_pad))
    # Every segment is a contiguous piece of one document, starting at position 0 with label -100.
    pieces: dict[int, list[int]] = {}
    owner = {t: k for k, d in enumerate(docs) for t in d}
    for ids, labels, pos in rows:
        real = [i for i in ids if i != PAD]
        for seg in _segments(real, pos[: len(real)]):
            k = owner[seg[0]]
            assert all(owner[t] == k for t in seg)
            pieces.setdefault(k, []).extend(seg)
        for t, p in enumerate(pos[: len(real)]):
            assert (labels[t] == IGNORE) == (p == 0)
            assert p == 0 or pos[t - 1] == p - 1
    assert {k: pieces[k] for k in pieces} == {k: d for k, d in enumerate(docs)}
    assert packer.split_documents >= 1


def test_best_fit_avoids_splitting_when_a_document_fits(tmp_path):
    # 10 + 6 fills a row of 16 exactly; plain sequential packing would split the 7.
    docs = [list(range(100, 110)), list(range(200, 207)), list(range(300, 306)), list(range(400, 409))]
    packer, _, rows = _pack(docs, 16, tmp_path, lookahead=8)
    assert packer.split_documents == 0
    assert len(rows) == 2 and packer.pad_tokens == 0


def test_shards_roll_over(tmp_path):
    docs = [list(range(i * 10, i * 10 + 8)) for i in range(20)]
    _, writer, rows = _pack(docs, 8, tmp_path, shard_rows=6)
    assert writer.shards == [f"shards/shard-{i:05d}.parquet" for i in range(4)]
    assert [pq.read_metadata(tmp_path / s).num_rows for s in writer.shards] == [6, 6, 6, 2]
    assert len(rows) == 20
