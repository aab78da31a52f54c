"""Short-lived SSH certificates (CINECA issues 12 h certificates through smallstep) and the Kubernetes Secret
that carries them to the Kubeflow steps.

- :func:`validity`: the ``Valid: from ... to ...`` window of a certificate (``ssh-keygen -L``);
- :func:`check_certificate`: refuse, in one sentence, an expired, not-yet-valid or missing certificate before ssh
  even tries (ssh itself would only say "Permission denied");
- :func:`login`: run the profile's ``login_command`` (``step ssh certificate ...``) to get a fresh certificate;
- :func:`secret_manifest`: the ``latxa-slurm-ssh`` Secret (private key, certificate, known_hosts) the SLURM steps
  mount; ``latxa slurm login --secret-out FILE`` writes it, ``--apply`` pipes it to ``kubectl apply -f -``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

from latxa.slurm.errors import CertificateExpired, SlurmError

_VALID_RE = re.compile(r"^\s*Valid:\s*(?:from\s+(\S+)\s+to\s+(\S+)|(forever))", re.M)
SECRET_NAME = "latxa-slurm-ssh"


@dataclass(frozen=True)
class Validity:
    start: datetime | None      # None: valid forever
    end: datetime | None

    def remaining(self, now: datetime | None = None) -> timedelta | None:
        return None if self.end is None else self.end - (now or datetime.now())


def _parse_time(text: str) -> datetime:
    # ssh-keygen prints local time without a zone, e.g. 2026-12-01T22:14:05
    return datetime.fromisoformat(text)


def validity(cert: str | Path) -> Validity:
    """The certificate's validity window (local time, as ssh-keygen prints it)."""
    cert = Path(cert)
    try:
        res = subprocess.run(["ssh-keygen", "-L", "-f", str(cert)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise SlurmError("ssh-keygen is not installed on this host (needed to read SSH certificates).") from None
    m = _VALID_RE.search(res.stdout) if res.returncode == 0 else None
    if not m:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise SlurmError(f"{cert} is not an SSH certificate ({detail[-1] if detail else 'ssh-keygen -L failed'}).")
    if m.group(3):
        return Validity(None, None)
    return Validity(_parse_time(m.group(1)), _parse_time(m.group(2)))


def check_certificate(cert: str | Path, where: str, now: datetime | None = None) -> Validity:
    """Raise :class:`CertificateExpired` unless ``cert`` exists and is valid now."""
    cert = Path(cert)
    if not cert.is_file():
        raise CertificateExpired(f"The SSH certificate {cert} for {where} does not exist; get one with "
                                 "`latxa slurm login --profile PROFILE --identity YOU`.")
    v = validity(cert)
    now = now or datetime.now()
    if v.start is not None and now < v.start:
        raise CertificateExpired(f"The SSH certificate {cert} for {where} is valid only from {v.start:%Y-%m-%d %H:%M}; "
                                 "check this machine's clock.")
    if v.end is not None and now >= v.end:
        raise CertificateExpired(f"The SSH certificate {cert} for {where} expired at {v.end:%Y-%m-%d %H:%M}; renew it "
                                 "with `latxa slurm login --profile PROFILE --identity YOU` (and --apply for the "
                                 "Kubernetes Secret).")
    return v


def login_argv(command: Sequence[str], *, identity: str, key_file: str) -> list[str]:
    """The profile's login command with ``{identity}`` and ``{key_file}`` filled in (argv, no shell)."""
    if not command:
        raise SlurmError("The cluster profile has no transport.login_command to get a certificate with.")
    return [str(a).replace("{identity}", identity).replace("{key_file}", key_file) for a in command]


def login(command: Sequence[str], *, identity: str, key_file: str, cert: str, where: str,
          timeout: float = 600) -> Validity:
    """Run the login command (smallstep opens the browser for CINECA's 2FA), then check the new certificate."""
    argv = login_argv(command, identity=identity, key_file=key_file)
    if not shutil.which(argv[0]):
        raise SlurmError(f"'{argv[0]}' is not installed (the smallstep CLI: https://smallstep.com/docs/step-cli).")
    Path(key_file).parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(argv, timeout=timeout)
    if res.returncode != 0:
        raise SlurmError(f"The login command '{argv[0]} ...' failed with exit status {res.returncode}.")
    return check_certificate(cert, where)


def secret_manifest(*, key_file: str | Path, cert: str | Path, known_hosts: str | Path | None,
                    name: str = SECRET_NAME, namespace: str | None = None) -> str:
    """A Kubernetes Secret (YAML) holding the private key, its certificate and known_hosts, under the file names the
    SLURM steps' profile expects (mounted at ~/.ssh). Validity is recorded in an annotation."""
    files = {Path(key_file).name: Path(key_file), Path(cert).name: Path(cert)}
    if known_hosts:
        files["known_hosts"] = Path(known_hosts)
    for label, path in files.items():
        if not path.is_file():
            raise SlurmError(f"{path} does not exist, so it cannot go into the Secret (as {label}).")
    v = validity(cert)
    until = "forever" if v.end is None else v.end.isoformat()
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    lines += ["  labels:", "    app.kubernetes.io/part-of: latxa-mlops", "  annotations:",
              f"    latxa.eus/certificate-valid-until: \"{until}\"", "type: Opaque", "data:"]
    for label, path in files.items():
        lines.append(f"  {label}: {base64.b64encode(path.read_bytes()).decode()}")
    return "\n".join(lines) + "\n"


def write_private(path: str | Path, text: str) -> Path:
    """Write a file only its owner can read (the Secret manifest holds a private key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path
