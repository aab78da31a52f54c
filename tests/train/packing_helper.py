"""A minimal packer that follows the "Packed dataset format" contract in docs/DEVELOPING.md.

Training tests use the real `latxa data prepare` when it exists (see ``conftest.packed_data``); this helper
is the fallback while the data layer is being built, and the benchmark's source of padded (unpacked) data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def tokenize_conversations(model_dir: Path, jsonl: Path, limit: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per conversation: loss on assistant turns only (the chat template's rendering)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    docs = []
    with jsonl.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            msgs = json.loads(line)["conversations"]
            ids: list[int] = []
            labels: list[int] = []
            for i, msg in enumerate(msgs):
                upto = tok.apply_chat_template(msgs[: i + 1], tokenize=False)
                before = tok.apply_chat_template(msgs[:i], tokenize=False) if i else ""
                piece = tok(upto[len(before):], add_special_tokens=False)["input_ids"]
                ids += piece
                labels += piece if msg["role"] == "assistant" else [-100] * len(piece)
            docs.append((ids, labels))
            if limit and len(docs) >= limit:
                break
    return docs


def pack(docs, seq_len: int, pad_id: int):
    rows, cur_ids, cur_lab, cur_pos = [], [], [], []
    for ids, labels in docs:
        pos = 0
        for t, l in zip(ids, labels, strict=True):
            if len(cur_ids) == seq_len:
                rows.append((cur_ids, cur_lab, cur_pos))
                cur_ids, cur_lab, cur_pos, pos = [], [], [], 0
            cur_ids.append(t); cur_lab.append(l); cur_pos.append(pos); pos += 1
    if cur_ids:
        nxt = cur_pos[-1] + 1
        while len(cur_ids) < seq_len:
            cur_ids.append(pad_id); cur_lab.append(-100); cur_pos.append(nxt); nxt += 1
        rows.append((cur_ids, cur_lab, cur_pos))
    return rows


def pad_each(docs, seq_len: int, pad_id: int):
    """One document per row (truncated/split to seq_len), padded: the unpacked baseline."""
    rows = []
    for ids, labels in docs:
        for s in range(0, len(ids), seq_len):
            a, b = ids[s:s + seq_len], labels[s:s + seq_len]
            n = len(a)
            rows.append((a + [pad_id] * (seq_len - n), b + [-100] * (seq_len - n), list(range(seq_len))))
    return rows


def write_packed(out: Path, rows, seq_len: int, variant: str, pad_id: int, tokenizer: str, rows_per_shard: int = 64) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(0, len(rows), rows_per_shard):
        chunk = rows[i:i + rows_per_shard]
        name = f"shards/shard-{len(shards):05d}.parquet"
        t = pa.table({k: pa.array([np.asarray(r[j], dtype=np.int32) for r in chunk], type=pa.list_(pa.int32()))
                      for j, k in enumerate(("input_ids", "labels", "position_ids"))})
        pq.write_table(t, out / name)
        shards.append(name)
    trainable = int(sum(sum(1 for l in r[1] if l != -100) for r in rows))
    key = f"helper-{variant}-{seq_len}-{len(rows)}"
    (out / "manifest.json").write_text(json.dumps({
        "cache_key": key, "variant": variant, "seq_len": seq_len, "num_rows": len(rows), "tokenizer": tokenizer,
        "pad_token_id": pad_id, "shards": shards}, indent=2))
    (out / "stats.json").write_text(json.dumps({"rows": len(rows), "trainable_tokens": trainable, "cache_key": key}))
    return out


def make_packed(out: Path, model_dir: Path, jsonl: Path, variant: str, seq_len: int = 256, limit: int | None = None,
                padded: bool = False) -> Path:
    from transformers import AutoTokenizer

    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id
    docs = tokenize_conversations(model_dir, jsonl, limit)
    rows = pad_each(docs, seq_len, pad_id) if padded else pack(docs, seq_len, pad_id)
    return write_packed(out, rows, seq_len, variant, pad_id, str(model_dir))
