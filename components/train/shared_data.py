"""One memory-mapped copy of a packed dataset for every rank: ``DIR/arrow/`` next to the Parquet shards.

``datasets.Dataset.from_parquet`` converts Parquet into an Arrow cache per process and cache folder; with 128 or
256 ranks that is one ~12 B/token copy per rank (or a race on a shared cache). Instead the data is converted once,
by one process (the prep job, or the training driver before any worker starts), into ``DIR/arrow/``
(``Dataset.save_to_disk``), and every rank opens that folder with ``load_from_disk``: a memory map of the same
files, no copy. Written to a temporary folder and renamed, so a reader never sees a half-written copy and two
writers (variants sharing a prepared set) do not clash.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ARROW_DIR = "arrow"
COLUMNS = ("input_ids", "labels", "position_ids")


def arrow_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / ARROW_DIR


def has_arrow(data_dir: str | Path) -> bool:
    return (arrow_dir(data_dir) / "dataset_info.json").is_file()


def ensure_arrow(data_dir: str | Path) -> Path:
    """Build ``DIR/arrow/`` from the shards if it is not there yet; returns it."""
    data_dir = Path(data_dir)
    dst = arrow_dir(data_dir)
    if has_arrow(data_dir):
        return dst
    import json

    import datasets

    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    files = [str(data_dir / s) for s in manifest["shards"]]
    features = datasets.Features({c: datasets.List(datasets.Value("int32")) for c in COLUMNS})
    tmp = data_dir / f".{ARROW_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cache = data_dir / f".arrow-build-{os.getpid()}"
    try:
        ds = datasets.Dataset.from_parquet(files, features=features, cache_dir=str(cache))
        ds.save_to_disk(str(tmp))
        try:
            os.rename(tmp, dst)
        except OSError:           # another writer won the race: its copy is the same data
            if not has_arrow(data_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return dst


def open_arrow(data_dir: str | Path):
    """The memory-mapped dataset of ``DIR/arrow/`` (numpy format, the three columns)."""
    import datasets

    ds = datasets.load_from_disk(str(arrow_dir(data_dir)), keep_in_memory=False)
    return ds.with_format("numpy", columns=list(COLUMNS))
