"""Where SLURM commands run: this host (:class:`LocalTransport`) or a login node over OpenSSH (:class:`SSHTransport`).

Both take argv lists, never shell strings. The SSH transport quotes every argument for the remote shell
(``shlex.quote``), always checks host keys (``StrictHostKeyChecking=yes``, or ``accept-new`` when the
profile asks for it, announced on stderr) and stages files with rsync over the same ssh options.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from latxa.slurm import safety
from latxa.slurm.errors import SlurmError, TransportError
from latxa.slurm.profiles import ClusterProfile, TransportConfig


class Transport:
    """Run commands and move files where the SLURM client commands live."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(env or {})   # extra environment for SLURM commands (SLURM_CONF for the local cluster)

    # to implement
    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        raise NotImplementedError

    def popen(self, argv: Sequence[str]) -> subprocess.Popen:
        raise NotImplementedError

    def put_text(self, text: str, path: str, mode: int = 0o644) -> None:
        raise NotImplementedError

    def put_file(self, local: str | Path, remote: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the SSH transport's shared connection)."""

    def stage_script(self, text: str, path: str, extra_dirs: tuple[str, ...] = ()) -> None:
        """Create the script's folder (and ``extra_dirs``) and write an executable script."""
        for d in extra_dirs:
            self.mkdir(d)
        self.put_text(text, path, mode=0o755)

    # shared helpers
    def mkdir(self, path: str) -> None:
        self.run(["mkdir", "-p", "--", safety.body_path(path, "folder")], check=True)

    def read_text(self, path: str, tail_lines: int | None = None) -> str | None:
        argv = ["tail", "-n", str(int(tail_lines)), "--", path] if tail_lines else ["cat", "--", path]
        res = self.run(argv)
        return res.stdout if res.returncode == 0 else None

    def describe(self) -> str:
        return "this host"


def _check(argv: Sequence[str], res: subprocess.CompletedProcess, where: str) -> subprocess.CompletedProcess:
    if res.returncode != 0:
        msg = (res.stderr or res.stdout or "").strip().splitlines()
        detail = msg[-1] if msg else f"exit status {res.returncode}"
        raise SlurmError(f"'{argv[0]}' failed on {where}: {detail}")
    return res


class LocalTransport(Transport):
    """SLURM client commands on this host."""

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, argv, *, input=None, timeout=60, check=False):
        argv = [str(a) for a in argv]
        try:
            res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=self._env())
        except FileNotFoundError:
            raise SlurmError(f"'{argv[0]}' is not installed on this host (run `make slurm-up` for the local cluster).") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"'{argv[0]}' did not answer within {timeout:.0f} s on this host.") from None
        return _check(argv, res, "this host") if check else res

    def popen(self, argv):
        return subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, env=self._env())

    def put_text(self, text, path, mode=0o644):
        p = Path(safety.body_path(path))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(mode)
        tmp.replace(p)

    def put_file(self, local, remote):
        dst = Path(safety.body_path(remote))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if Path(local).resolve() != dst.resolve():
            shutil.copy2(local, dst)


class SSHTransport(Transport):
    """SLURM client commands on a login node, over the OpenSSH client (``ssh``, ``rsync -e ssh``)."""

    def __init__(self, cfg: TransportConfig, env: dict[str, str] | None = None):
        super().__init__(env)
        if not cfg.host:
            raise SlurmError("The ssh transport needs a host.")
        self.cfg = cfg
        if cfg.host_key_checking == "accept-new":
            print(f"note: ssh to {cfg.host} trusts its host key on first use (host_key_checking: accept-new); "
                  "later key changes are still refused.", file=sys.stderr)

    @staticmethod
    def control_dir() -> Path:
        """A private folder for ControlMaster sockets (short path: Unix sockets are limited to ~100 bytes)."""
        import tempfile

        d = Path(tempfile.gettempdir()) / f"latxa-ssh-{os.getuid()}"
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise SlurmError(f"{d} must belong to you and be private (mode 700) to hold ssh control sockets.")
        return d

    def ssh_options(self) -> list[str]:
        c = self.cfg
        opts = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={c.host_key_checking}",
                "-o", f"ConnectTimeout={c.connect_timeout_s}", "-p", str(c.port)]
        if c.multiplex:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir()}/%C",
                     "-o", f"ControlPersist={c.control_persist_s}"]
        if c.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={os.path.expanduser(c.known_hosts)}"]
        if c.key_file:
            opts += ["-i", self._private_key(os.path.expanduser(c.key_file)), "-o", "IdentitiesOnly=yes"]
        cert = self.certificate_path()
        if cert is not None:
            opts += ["-o", f"CertificateFile={cert}"]
        if c.user:
            opts += ["-l", c.user]
        return opts

    def remote_command(self, argv: Sequence[str]) -> str:
        """The single string the remote shell runs: env assignments and every argument quoted."""
        prefix = [f"{safety.env_name(k)}={safety.quote(v)}" for k, v in self.env.items()]
        words = [safety.quote(str(a)) for a in argv]
        return " ".join((["env"] + prefix if prefix else []) + words)

    def ssh_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ssh", *self.ssh_options(), self.cfg.host, "--", self.remote_command(argv)]

    def describe(self) -> str:
        return f"{self.cfg.user + '@' if self.cfg.user else ''}{self.cfg.host}:{self.cfg.port}"

    def close(self) -> None:
        """Stop the shared connection (ControlMaster), if one is running."""
        if self.cfg.multiplex:
            subprocess.run(["ssh", *self.ssh_options(), "-O", "exit", self.cfg.host], capture_output=True, timeout=30)

    def run(self, argv, *, input=None, timeout=60, check=False):
        self.check_certificate()
        full = self.ssh_argv([str(a) for a in argv])
        try:
            res = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise SlurmError("The OpenSSH client 'ssh' is not installed on this host.") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"ssh to {self.describe()} did not answer within {timeout:.0f} s.") from None
        if res.returncode == 255:
            err = (res.stderr or "").strip().splitlines()
            detail = err[-1] if err else "connection error"
            if "Host key verification failed" in (res.stderr or "") or "REMOTE HOST IDENTIFICATION" in (res.stderr or ""):
                raise SlurmError(f"ssh to {self.describe()} failed: {detail}")   # not transient: never retried
            raise TransportError(f"ssh to {self.describe()} failed: {detail}")
        return _check(list(argv), res, self.describe()) if check else res

    def _private_key(self, key: str) -> str:
        """The key file, or a private copy of it when others can read it (a Kubernetes Secret volume mounts files
        0644, which ssh refuses for private keys)."""
        try:
            mode = os.stat(key).st_mode
        except OSError:
            return key
        if not mode & 0o077:
            return key
        import hashlib

        copy = self.control_dir() / ("key-" + hashlib.sha256(key.encode()).hexdigest()[:12])
        data = Path(key).read_bytes()
        if not copy.is_file() or copy.read_bytes() != data:
            fd = os.open(str(copy), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        return str(copy)

    def certificate_path(self) -> Path | None:
        """The SSH certificate to present: ``certificate_file``, else ``<key_file>-cert.pub`` when it exists."""
        c = self.cfg
        if c.certificate_file:
            return Path(os.path.expanduser(c.certificate_file))
        if c.key_file:
            guess = Path(os.path.expanduser(c.key_file) + "-cert.pub")
            return guess if guess.is_file() else None
        return None

    def check_certificate(self) -> None:
        """Refuse to connect with an expired or missing certificate: one sentence naming `latxa slurm login`."""
        from latxa.slurm.certs import check_certificate

        cert = self.certificate_path()
        if cert is not None:
            check_certificate(cert, self.describe())

    def popen(self, argv):
        return subprocess.Popen(self.ssh_argv([str(a) for a in argv]), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                bufsize=0)

    def put_text(self, text, path, mode=0o644):
        safety.body_path(path)
        parent = str(Path(path).parent)
        script = 'mkdir -p -- "$1" && umask 022 && cat > "$2.tmp" && chmod "$3" "$2.tmp" && mv -f -- "$2.tmp" "$2"'
        self.run(["sh", "-c", script, "sh", parent, path, format(mode, "o")], input=text, check=True)

    def stage_script(self, text, path, extra_dirs=()):
        # one round trip instead of three: mkdir the folders, write, chmod and rename atomically
        safety.body_path(path)
        for d in extra_dirs:
            safety.body_path(d, "folder")
        script = ('set -e; dst="$1"; shift; mkdir -p -- "$(dirname -- "$dst")" "$@"; umask 022; '
                  'cat > "$dst.tmp"; chmod 755 "$dst.tmp"; mv -f -- "$dst.tmp" "$dst"')
        self.run(["sh", "-c", script, "sh", path, *extra_dirs], input=text, check=True)

    def rsync_argv(self, local: str | Path, remote: str) -> list[str]:
        ssh_cmd = " ".join(shlex.quote(a) for a in ["ssh", *self.ssh_options()])
        # --protect-args: the remote path is not re-split or expanded by the remote shell.
        return ["rsync", "-a", "--protect-args", "-e", ssh_cmd, str(local), f"{self.cfg.host}:{remote}"]

    def put_file(self, local, remote):
        safety.body_path(remote)
        self.mkdir(str(Path(remote).parent))
        argv = self.rsync_argv(local, remote)
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise SlurmError("rsync is not installed on this host (needed to stage files over ssh).") from None
        _check(argv, res, self.describe())


def make_transport(profile: ClusterProfile) -> Transport:
    env = {}
    if profile.slurm_conf_path:
        env["SLURM_CONF"] = profile.slurm_conf_path
    if profile.transport.kind == "ssh":
        return SSHTransport(profile.transport, env)
    return LocalTransport(env)
