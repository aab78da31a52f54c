"""Reading a packed dataset back (what training uses)."""

from __future__ import annotations

from pathlib import Path

from latxa.components.data.sources import DataError
from latxa.jsonl import JSONLineError, loads_line

COLUMNS = ("input_ids", "labels", "position_ids")


def read_manifest(path: str | Path) -> dict:
    """The manifest of the prepared dataset at ``path``; :class:`DataError` (one sentence) unless it is complete."""
    path = Path(path)
    try:
        manifest = loads_line((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is not a prepared dataset (no manifest.json); run `latxa data prepare` first.") from None
    except JSONLineError as err:
        raise DataError(f"{path}/manifest.json:{err.line}: {err.reason}.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}/manifest.json cannot be read: {str(err).splitlines()[0]}.") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}/manifest.json is not a prepared dataset's manifest (not a JSON object).")
    shards = manifest.get("shards", [])
    if not isinstance(shards, list) or not all(isinstance(s, str) and s for s in shards):
        raise DataError(f"{path}/manifest.json is not a prepared dataset's manifest ('shards' is not a list of files).")
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise DataError(f"{path} is incomplete: shard {missing[0]} is missing.")
    return manifest


def read_stats(path: str | Path) -> dict:
    """The ``stats.json`` of the prepared dataset at ``path``; :class:`DataError` (one sentence) if unreadable."""
    path = Path(path)
    try:
        stats = loads_line((path / "stats.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} has no stats.json; it is not a complete prepared dataset.") from None
    except JSONLineError as err:
        raise DataError(f"{path}/stats.json:{err.line}: {err.reason}.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}/stats.json cannot be read: {str(err).splitlines()[0]}.") from None
    if not isinstance(stats, dict):
        raise DataError(f"{path}/stats.json is not a JSON object.")
    return stats


def load_packed(path: str | Path, *, streaming: bool = False, format: str | None = "torch"):
    """The packed dataset at ``path`` as a ``datasets.Dataset`` (torch format by default).

    Columns ``input_ids``, ``labels`` and ``position_ids`` (int32 lists of ``seq_len``). The
    Parquet shards are memory-mapped through an Arrow cache under the state folder, so
    large datasets are not loaded into RAM; ``streaming=True`` returns an IterableDataset.
    """
    import datasets

    path = Path(path)
    manifest = read_manifest(path)
    files = [str(path / s) for s in manifest["shards"]]
    if not files:
        raise DataError(f"{path} holds no rows.")
    features = datasets.Features({c: datasets.List(datasets.Value("int32")) for c in COLUMNS})
    if streaming:
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True, features=features)
    else:
        from latxa.paths import state_dir

        cache = state_dir() / "cache" / "hf-datasets"
        ds = datasets.Dataset.from_parquet(files, features=features, cache_dir=str(cache))
    if format:
        ds = ds.with_format(format)
    return ds
