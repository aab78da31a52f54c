"""The packed dataset as training sees it: validation, deterministic batch order, block-diagonal masks.

The format is the contract in docs/DEVELOPING.md ("Packed dataset format"): ``DIR/manifest.json`` and
``DIR/shards/shard-*.parquet`` with ``input_ids``, ``labels`` and ``position_ids`` (``list<int32>`` of
length ``seq_len``); ``position_ids`` restart at 0 at each document start.

Batch order is a pure function of (seed, epoch, number of rows, global batch size), so a resumed run
sees exactly the rows an uninterrupted run would have seen from the same step on, with no data-loader
state to save.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latxa.errors import LatxaError
from latxa.jsonl import JSONLineError, loads_line

COLUMNS = ("input_ids", "labels", "position_ids")


class DataFormatError(LatxaError, ValueError):
    """A packed dataset that does not follow the format (names the file and row)."""


@dataclass(frozen=True)
class PackedInfo:
    data_dir: Path
    num_rows: int
    seq_len: int
    pad_token_id: int | None
    variant: str | None
    cache_key: str | None
    shards: tuple[Path, ...]
    max_token_id: int
    trainable_tokens: int
    stats: dict


def inspect_packed(data_dir: str | Path, check_rows: bool = True) -> PackedInfo:
    """Validate a packed dataset folder and summarise it; raise :class:`DataFormatError` with file:row."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFormatError(f"Dataset folder {data_dir} does not exist; prepare it with `latxa data prepare --out {data_dir}`.")
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise DataFormatError(f"{data_dir} has no manifest.json, so it is not a packed dataset from `latxa data prepare`.")
    try:
        manifest = loads_line(manifest_path.read_text(encoding="utf-8"))
    except JSONLineError as err:
        raise DataFormatError(f"{manifest_path}:{err.line}: {err.reason}.") from None
    if not isinstance(manifest, dict):
        raise DataFormatError(f"{manifest_path} is not a packed dataset's manifest (not a JSON object).")
    for key in ("seq_len", "num_rows", "shards"):
        if key not in manifest:
            raise DataFormatError(f"{manifest_path} lacks the required key '{key}'.")
    seq_len = int(manifest["seq_len"])
    shards = tuple((data_dir / s) if not Path(s).is_absolute() else Path(s) for s in manifest["shards"])
    if not shards:
        raise DataFormatError(f"{manifest_path} lists no shards.")
    stats = {}
    if (data_dir / "stats.json").is_file():
        try:
            stats = loads_line((data_dir / "stats.json").read_text(encoding="utf-8"))
        except JSONLineError as err:
            raise DataFormatError(f"{data_dir / 'stats.json'}:{err.line}: {err.reason}.") from None
    rows = 0
    max_id = -1
    trainable = 0
    for shard in shards:
        if not shard.is_file():
            raise DataFormatError(f"Shard {shard} listed in {manifest_path} does not exist.")
        try:
            pf = pq.ParquetFile(shard)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise DataFormatError(f"{shard} is not a readable Parquet file ({err}).") from None
        names = set(pf.schema_arrow.names)
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise DataFormatError(f"{shard} lacks the column(s) {', '.join(missing)}.")
        n = pf.metadata.num_rows
        if check_rows and n:
            table = pf.read(columns=list(COLUMNS))
            for col in COLUMNS:
                lengths = pc.list_value_length(table[col]).to_numpy(zero_copy_only=False)
                bad = np.nonzero(lengths != seq_len)[0]
                if bad.size:
                    raise DataFormatError(
                        f"{shard}:{int(bad[0]) + 1} has {col} of length {int(lengths[bad[0]])}, expected seq_len {seq_len}.")
            ids = pc.list_flatten(table["input_ids"])
            max_id = max(max_id, int(pc.max(ids).as_py()))
            labels = pc.list_flatten(table["labels"])
            trainable += int(pc.sum(pc.not_equal(labels, -100)).as_py() or 0)
            pos = table["position_ids"].combine_chunks()
            starts = pc.list_element(pos, 0).to_numpy(zero_copy_only=False)
            bad = np.nonzero(starts != 0)[0]
            if bad.size:
                raise DataFormatError(f"{shard}:{int(bad[0]) + 1} has position_ids that do not start at 0.")
        rows += n
    if rows != int(manifest["num_rows"]):
        raise DataFormatError(f"{manifest_path} says num_rows={manifest['num_rows']} but the shards hold {rows} rows.")
    if rows == 0:
        raise DataFormatError(f"{data_dir} holds no rows to train on.")
    return PackedInfo(data_dir=data_dir, num_rows=rows, seq_len=seq_len, pad_token_id=manifest.get("pad_token_id"),
                      variant=manifest.get("variant"), cache_key=manifest.get("cache_key"), shards=shards,
                      max_token_id=max_id, trainable_tokens=trainable, stats=stats)


def open_packed(data_dir: str | Path):
    """A memory-mapped ``datasets.Dataset`` over the shards (numpy format).

    Opens ``DIR.arrow/`` (beside the folder) when it exists (one copy shared by every rank, :mod:`latxa.components.train.shared_data`);
    else uses ``latxa.components.data.load_packed`` when the data layer provides it, else reads the shards directly.
    """
    from latxa.components.train.shared_data import has_arrow, open_arrow

    if has_arrow(data_dir):
        return open_arrow(data_dir)
    try:
        from latxa.components.data import load_packed  # the data layer's reader, when present
    except ImportError:
        load_packed = None
    if load_packed is not None:
        ds = load_packed(data_dir)
    else:
        from datasets import Dataset, concatenate_datasets

        info = json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8"))
        parts = [Dataset.from_parquet(str(Path(data_dir) / s), keep_in_memory=False) for s in info["shards"]]
        ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return ds.with_format("numpy", columns=list(COLUMNS))


@dataclass(frozen=True)
class Schedule:
    """How many optimizer steps a run takes and which rows each step uses."""

    num_rows: int
    global_batch: int           # rows per optimizer step = micro_batch x grad_accum x world_size
    steps_per_epoch: int
    total_steps: int
    padded_rows_per_epoch: int  # rows repeated to fill the last global batch of an epoch (reported, not hidden)

    @classmethod
    def build(cls, num_rows: int, global_batch: int, epochs: float, max_steps: int | None) -> "Schedule":
        steps_per_epoch = -(-num_rows // global_batch)
        padded = steps_per_epoch * global_batch - num_rows
        total = max_steps if max_steps else max(1, int(np.ceil(epochs * steps_per_epoch)))
        return cls(num_rows, global_batch, steps_per_epoch, total, padded)


def epoch_order(num_rows: int, global_batch: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Row indices for one epoch, shaped ``(steps_per_epoch, global_batch)``.

    A seeded permutation (independent of the worker count's RNG state), padded by repeating its first rows so
    that every step is a full global batch.
    """
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    else:
        order = np.arange(num_rows)
    steps = -(-num_rows // global_batch)
    pad = steps * global_batch - num_rows
    if pad:
        order = np.concatenate([order, np.resize(order, pad)])
    return order.reshape(steps, global_batch)


def rank_micro_batches(step_rows: np.ndarray, rank: int, world_size: int, micro_batch: int) -> list[np.ndarray]:
    """The micro-batches (row indices) one rank processes within one optimizer step."""
    per_rank = len(step_rows) // world_size
    mine = step_rows[rank * per_rank:(rank + 1) * per_rank]
    return [mine[i:i + micro_batch] for i in range(0, per_rank, micro_batch)]


def packed_attention_mask(position_ids, dtype):
    """Additive 4D mask ``(batch, 1, L, L)``: causal within each packed document, blocked across documents.

    Documents start where ``position_ids`` is 0, so token i may attend to token j iff j <= i and both lie in
    the same document. Works with the eager and SDPA attention implementations (transformers passes a 4D
    mask through unchanged).
    """
    import torch

    doc = torch.cumsum((position_ids == 0).to(torch.int32), dim=-1)          # (B, L)
    length = position_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (doc[:, :, None] == doc[:, None, :]) & causal                   # (B, L, L)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None, :, :]
