"""Publish an exported model folder: copy it to a directory or ``host:path`` (rsync) and verify checksums.

What the reference did by hand with ``rsync_weights.sh``. The folder's ``SHA256SUMS`` (written by export) is
checked at the destination: locally by re-hashing every file, remotely with ``sha256sum -c`` over ssh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from latxa.components.train.export import CHECKSUMS, sha256sums, write_checksums
from latxa.errors import LatxaError

REMOTE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:(?!//)")


class PublishError(LatxaError):
    """Publishing failed or the copy does not match its checksums."""


def _read_sums(folder: Path) -> dict[str, str]:
    sums = {}
    for line in (folder / CHECKSUMS).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            sums[name.strip()] = digest
    return sums


def verify(folder: str | Path) -> int:
    """Re-hash ``folder`` against its SHA256SUMS; returns the number of files checked."""
    folder = Path(folder)
    if not (folder / CHECKSUMS).is_file():
        raise PublishError(f"{folder} has no {CHECKSUMS}; export it with `latxa train export` first.")
    want, have = _read_sums(folder), sha256sums(folder)
    for name, digest in want.items():
        if name not in have:
            raise PublishError(f"{folder / name} is missing (listed in {CHECKSUMS}).")
        if have[name] != digest:
            raise PublishError(f"{folder / name} does not match its checksum in {CHECKSUMS}.")
    extra = sorted(set(have) - set(want))
    if extra:
        raise PublishError(f"{folder / extra[0]} is not listed in {CHECKSUMS}.")
    return len(want)


def publish(src: str | Path, dest: str, overwrite: bool = False) -> dict:
    """Copy ``src`` (an exported model folder) to ``dest`` and verify; returns a summary."""
    src = Path(src)
    if not (src / "config.json").is_file():
        raise PublishError(f"{src} is not an exported model folder (no config.json).")
    if not (src / CHECKSUMS).is_file():
        write_checksums(src)
    verify(src)
    if REMOTE.match(dest):
        if shutil.which("rsync") is None:
            raise PublishError("Publishing to a remote host needs rsync, which is not installed here.")
        host, path = dest.split(":", 1)
        subprocess.run(["rsync", "-a", "--partial", f"{src}/", dest.rstrip("/") + "/"], check=True)
        check = subprocess.run(["ssh", host, f"cd {path} && sha256sum --quiet -c {CHECKSUMS}"], capture_output=True, text=True)
        if check.returncode:
            raise PublishError(f"The copy at {dest} does not match its checksums: {check.stdout.strip() or check.stderr.strip()}.")
        return {"dest": dest, "files": len(_read_sums(src)), "verified": True}
    target = Path(dest)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise PublishError(f"{target} already exists and is not empty; pass --overwrite to replace it.")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if shutil.which("rsync"):
        partial.mkdir(parents=True)
        subprocess.run(["rsync", "-a", f"{src}/", f"{partial}/"], check=True)
    else:
        shutil.copytree(src, partial)
    n = verify(partial)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return {"dest": str(target), "files": n, "verified": True}
