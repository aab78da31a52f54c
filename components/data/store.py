"""Where prepared datasets live: the ``--out`` folder and the shared cache, and the rules that keep both safe.

- ``--out`` is replaced only when it is absent, an empty folder, or a dataset this tool wrote: a
  ``manifest.json`` of our schema (format, writer, cache key, shard list and digests) and nothing in the folder
  but the files we write. Anything else is refused in one sentence. A symbolic link is followed (its target is
  written, the link is kept). Nothing outside ``--out`` is removed: a new dataset is built in a fresh hidden
  sibling folder (``.NAME.tmp-XXXX``) and swapped in; only our own files of the old dataset are deleted.
- The cache compares content: input files are hashed (BLAKE2b); a digest is reused only while the file's
  (device, inode, size, mtime_ns, ctime_ns) are unchanged. ``cp -p``, ``rsync -t`` and ``tar`` restore the mtime
  but cannot restore the ctime, which the kernel sets on every change.
- A hit (``--out`` or cache) is verified: every shard's size and digest must match the manifest.
- Outputs are copies of cache entries (reflinks where the file system offers them), never hard links; cached
  files are read-only. Editing an output folder cannot change the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from latxa.components.data.sources import DataError

FORMAT_VERSION = "latxa-packed/1"
WRITER = "latxa data prepare"
OWN_FILES = ("manifest.json", "stats.json", "skips.jsonl")
SHARD_RE = re.compile(r"^shards/shard-\d{5}\.parquet$")
KEY_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_MEMO_ENTRIES = 200_000
_FICLONE = 0x40049409  # Linux ioctl: share the extents of another file (copy-on-write; btrfs, XFS, bcachefs)


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class DigestMemo:
    """path -> (device, inode, size, mtime_ns, ctime_ns, digest), persisted so a hit does not re-read a 20 GB corpus.

    ``path=None`` keeps the memo in memory only (``--no-cache``).
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        if path and path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self.entries = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 6}
            except (OSError, ValueError):
                pass  # a damaged memo only costs re-hashing

    def digest(self, path: Path) -> str:
        key = str(path.resolve())
        ident = _identity(path.stat())
        known = self.entries.get(key)
        if known is not None and known[:5] == ident:
            return known[5]
        digest = file_digest(path)
        self.entries[key] = [*ident, digest]
        return digest

    def save(self) -> None:
        if not self.path:
            return
        alive = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        if len(alive) > MAX_MEMO_ENTRIES:
            alive = dict(list(alive.items())[-MAX_MEMO_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".file-digests-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(alive, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # the memo is an optimisation


# ------------------------------------------------------------------------------------------ ownership


def own_manifest(folder: Path) -> dict | None:
    """The manifest of a dataset this tool wrote at ``folder`` (our schema), else None."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or manifest.get("writer") != WRITER:
        return None
    shards, digests = manifest.get("shards"), manifest.get("shard_digests")
    if not isinstance(manifest.get("cache_key"), str) or not KEY_RE.fullmatch(manifest["cache_key"]):
        return None
    if not isinstance(shards, list) or not all(isinstance(s, str) and SHARD_RE.fullmatch(s) for s in shards):
        return None
    if not isinstance(digests, dict) or set(digests) != set(shards):
        return None
    return manifest


def foreign_entry(folder: Path, manifest: dict) -> str | None:
    """The first entry of ``folder`` that this tool did not write (as a relative path), else None."""
    shards = set(manifest["shards"])
    for entry in sorted(folder.iterdir()):
        if entry.name in OWN_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name == "shards" and entry.is_dir() and not entry.is_symlink():
            for shard in sorted(entry.iterdir()):
                if f"shards/{shard.name}" not in shards or not shard.is_file() or shard.is_symlink():
                    return f"shards/{shard.name}"
            continue
        return entry.name
    return None


def verified(folder: Path, cache_key: str, memo: DigestMemo) -> dict | None:
    """The manifest of the complete, undamaged dataset with ``cache_key`` at ``folder``, else None."""
    manifest = own_manifest(folder)
    if manifest is None or manifest["cache_key"] != cache_key or not (folder / "stats.json").is_file():
        return None
    for shard in manifest["shards"]:
        path, want = folder / shard, manifest["shard_digests"][shard]
        try:
            if path.stat().st_size != want["bytes"] or memo.digest(path) != want["blake2b"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
    return manifest


def shard_digests(folder: Path, shards: list[str]) -> dict[str, dict]:
    return {s: {"bytes": (folder / s).stat().st_size, "blake2b": file_digest(folder / s)} for s in shards}


# ------------------------------------------------------------------------------------------ --out


def check_out(out: Path) -> Path:
    """The folder to write for ``--out``: refused unless absent, empty, or a dataset this tool wrote."""
    out = out.resolve() if out.is_symlink() else Path(os.path.abspath(out))
    if out.parent == out:
        raise DataError(f"--out {out} is a file system root; pass a folder for the dataset.")
    if not out.exists():
        return out
    if not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder; refusing to replace it (pass a folder path).")
    if not any(out.iterdir()):
        return out
    manifest = own_manifest(out)
    if manifest is None:
        raise DataError(f"--out {out} is not empty and is not a dataset `latxa data prepare` wrote; refusing to "
                        "overwrite it (pass a new or empty folder).")
    entry = foreign_entry(out, manifest)
    if entry is not None:
        raise DataError(f"--out {out} holds {entry}, which `latxa data prepare` did not write; refusing to "
                        "replace the folder (move that file away or pass another folder).")
    return out


def new_tmp(out: Path) -> Path:
    """A fresh hidden sibling of ``out`` to build in (never an existing path)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def remove_dataset(folder: Path, manifest: dict | None) -> None:
    """Delete our own files of a dataset folder, then the folder if that left it empty; nothing else."""
    names = list(OWN_FILES) + (list(manifest["shards"]) if manifest else [])
    for name in names:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for sub in (folder / "shards", folder):
        try:
            sub.rmdir()
        except OSError:
            pass  # not empty (someone else's file appeared) or absent: leave it


def install(tmp: Path, out: Path) -> None:
    """Put the finished dataset ``tmp`` at ``out`` (checked by :func:`check_out` before the build)."""
    if out.is_dir() and any(out.iterdir()):
        manifest = own_manifest(out)
        if manifest is None or foreign_entry(out, manifest) is not None:  # changed while we were building
            check_out(out)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # onto the empty placeholder: atomic
        os.replace(tmp, out)
        remove_dataset(old, manifest)
    else:
        os.replace(tmp, out)


# ------------------------------------------------------------------------------------------ copies


def _clone_or_copy(src: Path, dst: Path) -> None:
    """A copy of ``src`` that shares no inode with it: a reflink where the file system can, else bytes."""
    import fcntl

    with src.open("rb") as fin, dst.open("wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except OSError:
            pass
        shutil.copyfileobj(fin, fout, 1 << 22)


def copy_dataset(src: Path, dst: Path, manifest: dict, *, read_only: bool) -> None:
    """Copy the dataset at ``src`` into the empty folder ``dst`` (file by file; read-only for the cache)."""
    (dst / "shards").mkdir(exist_ok=True)
    for name in [*OWN_FILES, *manifest["shards"]]:
        if not (src / name).is_file():
            continue
        _clone_or_copy(src / name, dst / name)
        if read_only:
            os.chmod(dst / name, 0o444)
