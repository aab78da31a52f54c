"""One memory-mapped copy of a packed dataset for every rank: ``DIR.arrow/`` beside the prepared folder ``DIR``.

``datasets.Dataset.from_parquet`` converts Parquet into an Arrow cache per process and cache folder; with 128 or
256 ranks that is one ~12 B/token copy per rank (or a race on a shared cache). Instead the data is converted once,
by one process (the prep job, or the training driver before any worker starts), into ``DIR.arrow/``
(``Dataset.save_to_disk``), and every rank opens it with ``load_from_disk``: a memory map of the same files, no
copy. It sits beside ``DIR`` (the data layer owns ``DIR``'s contents), records the dataset's cache key, and is
rebuilt when ``DIR`` is re-prepared with other inputs. Written to a temporary folder and renamed, so a reader
never sees a half-written copy and two writers (variants sharing a prepared set) do not clash.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

COLUMNS = ("input_ids", "labels", "position_ids")
MARKER = "latxa-arrow.json"


def arrow_dir(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir).resolve()
    return data_dir.with_name(data_dir.name + ".arrow")


def _cache_key(data_dir: Path) -> str | None:
    try:
        return json.loads((data_dir / "manifest.json").read_text(encoding="utf-8")).get("cache_key")
    except (OSError, ValueError):
        return None


def has_arrow(data_dir: str | Path) -> bool:
    """A complete copy of *this* dataset (same cache key) exists."""
    dst = arrow_dir(data_dir)
    try:
        marker = json.loads((dst / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (dst / "dataset_info.json").is_file() and marker.get("cache_key") == _cache_key(Path(data_dir))


def ensure_arrow(data_dir: str | Path) -> Path:
    """Build ``DIR.arrow/`` from the shards unless an up-to-date one is there; returns it."""
    data_dir = Path(data_dir).resolve()
    dst = arrow_dir(data_dir)
    if has_arrow(data_dir):
        return dst
    import datasets

    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    files = [str(data_dir / s) for s in manifest["shards"]]
    features = datasets.Features({c: datasets.List(datasets.Value("int32")) for c in COLUMNS})
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    cache = dst.with_name(f".{dst.name}.build-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds = datasets.Dataset.from_parquet(files, features=features, cache_dir=str(cache))
        ds.save_to_disk(str(tmp))
        (tmp / MARKER).write_text(json.dumps({"cache_key": manifest.get("cache_key"), "source": str(data_dir)}) + "\n",
                                  encoding="utf-8")
        if dst.exists() and not has_arrow(data_dir):
            shutil.rmtree(dst, ignore_errors=True)        # a stale copy of an earlier preparation
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
    """The memory-mapped dataset of ``DIR.arrow/`` (numpy format, the three columns)."""
    import datasets

    ds = datasets.load_from_disk(str(arrow_dir(data_dir)), keep_in_memory=False)
    return ds.with_format("numpy", columns=list(COLUMNS))
