"""Publish an exported model folder: copy it to a directory or ``host:path`` (rsync) and verify checksums.

What the reference did by hand with ``rsync_weights.sh``. The folder's ``SHA256SUMS`` (written by export) is
checked at the destination: locally by re-hashing every file, remotely with ``sha256sum -c`` over ssh.

Remote paths are quoted for the remote shell with :mod:`latxa.shell`, the quoting the SLURM transport uses, and
rsync gets ``--protect-args``: a path with spaces, quotes or ``$(...)`` is a path, never a command. ``~/x`` means
``x`` in the remote home (where ssh and rsync start).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from latxa import shell
from latxa.components.train.export import CHECKSUMS, sha256sums, write_checksums
from latxa.errors import LatxaError

REMOTE = re.compile(r"^(?:[^/:@]+@)?[^/:@]+:(?!//)")
HOST_RE = re.compile(r"^(?:([A-Za-z0-9_][A-Za-z0-9._-]*)@)?([A-Za-z0-9][A-Za-z0-9.-]*)$")


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


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise PublishError(f"{argv[0]} is not installed here (needed to {what}).") from None
    if res.returncode:
        lines = (res.stderr or res.stdout or "").strip().splitlines()
        raise PublishError(f"{argv[0]} failed to {what} (exit {res.returncode}): {lines[-1] if lines else 'no output'}.")
    return res


def split_remote(dest: str) -> tuple[str, str]:
    """``[user@]host:path`` -> (``[user@]host``, path), both checked; ``~/`` is dropped (paths start at home)."""
    host, path = dest.split(":", 1)
    if not HOST_RE.fullmatch(host):
        raise PublishError(f"'{host}' in {dest!r} is not a host name (letters, digits, '.', '-'; optionally user@).")
    shell.check_line(path, "remote path", PublishError)
    if path in ("~", "~/"):
        path = "."
    elif path.startswith("~/"):
        path = path[2:]
    elif path.startswith("~"):
        raise PublishError(f"The remote path {path!r} uses ~user, which is not supported; write the full path.")
    if not path.strip():
        raise PublishError(f"The remote path in {dest!r} is empty; write host:folder.")
    return host, path


def _publish_remote(src: Path, dest: str) -> dict:
    host, path = split_remote(dest)
    if shutil.which("rsync") is None:
        raise PublishError("Publishing to a remote host needs rsync, which is not installed here.")
    # "--": a host is never an option; the remote command is one line with every word quoted.
    _run(["ssh", "--", host, shell.join(["mkdir", "-p", "--", path], PublishError)], f"create {dest}")
    _run(["rsync", "-a", "--partial", "--protect-args", f"{src}/", f"{host}:{path.rstrip('/')}/"], f"copy to {dest}")
    check = shell.join(["cd", "--", path], PublishError) + " && " + shell.join(["sha256sum", "--quiet", "-c", CHECKSUMS])
    res = subprocess.run(["ssh", "--", host, check], capture_output=True, text=True)
    if res.returncode:
        detail = (res.stdout.strip() or res.stderr.strip()).splitlines()
        raise PublishError(f"The copy at {dest} does not match its checksums: {detail[0] if detail else 'no output'}.")
    return {"dest": dest, "files": len(_read_sums(src)), "verified": True}


def publish(src: str | Path, dest: str, overwrite: bool = False) -> dict:
    """Copy ``src`` (an exported model folder) to ``dest`` and verify; returns a summary."""
    src = Path(src)
    if not (src / "config.json").is_file():
        raise PublishError(f"{src} is not an exported model folder (no config.json).")
    if not (src / CHECKSUMS).is_file():
        write_checksums(src)
    verify(src)
    if REMOTE.match(dest):
        return _publish_remote(src, dest)
    target = Path(dest).absolute()  # absolute: a folder named "-x" never reaches rsync as an option
    if target.exists() and not target.is_dir():
        raise PublishError(f"{target} is a file, not a folder; refusing to replace it.")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise PublishError(f"{target} already exists and is not empty; pass --overwrite to replace it.")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if shutil.which("rsync"):
        partial.mkdir(parents=True)
        _run(["rsync", "-a", f"{src}/", f"{partial}/"], f"copy to {partial}")
    else:
        shutil.copytree(src, partial)
    n = verify(partial)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return {"dest": str(target), "files": n, "verified": True}
