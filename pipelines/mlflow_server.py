"""`latxa mlflow up|down|status`: a real `mlflow server` on 127.0.0.1 (embedded default).

Backend: SQLite under ``<state>/mlflow/mlflow.db``; artifacts: ``<state>/mlflow/artifacts``
(the same store that `latxa.components.tracking.default_tracking_uri()` names, so runs logged
with or without the server land in one place). Production settings (PostgreSQL + S3) are
in ``mlflow/production.env.example`` and rendered by :func:`server_command` as well.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from latxa.components import tracking
from latxa.errors import LatxaError
from latxa.net import free_port
from latxa.paths import expand, resource_dir, state_dir

DEFAULT_PORT = 5000
CONFIG_DIR = resource_dir("mlflow_config")  # mlflow/ in the repository


class ServerError(LatxaError):
    """The tracking server could not be started or stopped."""


@dataclass
class ServerInfo:
    pid: int
    port: int
    host: str
    uri: str
    backend_store_uri: str
    artifact_root: str
    log: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks ignored); malformed lines name file:line."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ServerError(f"{path}:{n}: expected KEY=VALUE, got {line!r}.")
        key, value = line.split("=", 1)
        try:
            out[key.strip()] = expand(value.strip().strip('"'), what=f"setting {key.strip()} ({path}:{n})")
        except LatxaError as err:
            raise ServerError(str(err)) from None
    return out


def server_command(host: str, port: int, backend_store_uri: str, artifact_root: str, workers: int = 1,
                   serve_artifacts: bool = False, extra: list[str] | None = None) -> list[str]:
    """The `mlflow server` command line.

    Local default: ``--default-artifact-root file://...`` without proxying, so clients that log
    straight to the SQLite store and clients that go through the server share artifacts.
    Production: ``serve_artifacts=True`` with ``artifact_root=s3://bucket/path`` proxies artifacts
    through the server (clients need no S3 credentials).
    """
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow_exe, "server", "--backend-store-uri", backend_store_uri, "--host", host, "--port", str(port),
           "--workers", str(workers)]
    if serve_artifacts:
        cmd += ["--serve-artifacts", "--artifacts-destination", artifact_root]
    else:
        cmd += ["--no-serve-artifacts", "--default-artifact-root", artifact_root]
    return cmd + list(extra or [])


def production_command(env_file: str | Path) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command and environment of a production env file (see mlflow/production.env.example).

    ``${VAR}`` references are expanded from the environment (secrets are never written to the file);
    a missing required key or an unset variable is an error naming the key and its line.
    """
    path = Path(env_file)
    if not path.is_file():
        raise ServerError(f"MLflow env file {path} does not exist.")
    env = read_env_file(path)
    for key in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"):
        if not env.get(key):
            raise ServerError(f"{path} does not set {key}.")
    extra: list[str] = []
    if env.get("MLFLOW_ALLOWED_HOSTS"):
        extra += ["--allowed-hosts", env["MLFLOW_ALLOWED_HOSTS"]]
    if env.get("MLFLOW_CORS_ALLOWED_ORIGINS"):
        extra += ["--cors-allowed-origins", env["MLFLOW_CORS_ALLOWED_ORIGINS"]]
    cmd = server_command(env.get("MLFLOW_HOST", "0.0.0.0"), int(env.get("MLFLOW_PORT", "5000")),
                         env["MLFLOW_BACKEND_STORE_URI"], env["MLFLOW_ARTIFACTS_DESTINATION"],
                         workers=int(env.get("MLFLOW_WORKERS", "4")), serve_artifacts=True, extra=extra)
    cmd[0] = "mlflow"
    passthrough = {k: v for k, v in env.items() if k.startswith(("AWS_", "MLFLOW_S3_"))}
    return cmd, passthrough


def status() -> ServerInfo | None:
    path = tracking.server_state_file()
    if not path.is_file():
        return None
    try:
        info = ServerInfo(**json.loads(path.read_text(encoding="utf-8")))
        os.kill(info.pid, 0)
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)  # stale: the process is gone
        return None
    return info


def up(port: int | None = None, host: str = "127.0.0.1", timeout: float = 180.0) -> ServerInfo:
    """Start the server detached (or return the running one) and wait until /health answers."""
    running = status()
    if running is not None:
        if port and port != running.port:
            raise ServerError(f"A tracking server is already running on port {running.port}; stop it with `latxa mlflow down` first.")
        if not tracking.server_healthy(running.uri, 5):
            _wait_healthy(running, timeout)
        return running
    if port is None or port == 0:
        port = DEFAULT_PORT if port is None and port_free(DEFAULT_PORT, host) else free_port(host)
    elif not port_free(port, host):
        raise ServerError(f"Port {port} on {host} is already in use; pick another with --port or use --port 0 for a free one.")
    folder = state_dir() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    backend = tracking.default_tracking_uri() if "MLFLOW_TRACKING_URI" not in os.environ or tracking.is_http(
        os.environ["MLFLOW_TRACKING_URI"]) else os.environ["MLFLOW_TRACKING_URI"]
    if tracking.is_http(backend):
        backend = f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = tracking.default_artifact_root().as_uri()
    log_path = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    cmd = server_command(host, port, backend, artifacts)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=folder)
    info = ServerInfo(pid=proc.pid, port=port, host=host, uri=f"http://{host}:{port}", backend_store_uri=backend,
                      artifact_root=artifacts, log=str(log_path))
    tracking.server_state_file().write_text(json.dumps(info.as_dict(), indent=2), encoding="utf-8")
    try:
        _wait_healthy(info, timeout, proc)
    except ServerError:
        _kill(info.pid)
        tracking.server_state_file().unlink(missing_ok=True)
        raise
    return info


def _wait_healthy(info: ServerInfo, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = Path(info.log).read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
            raise ServerError(f"mlflow server exited with status {proc.returncode} before answering; log {info.log}: "
                              + " | ".join(tail))
        if tracking.server_healthy(info.uri, 2):
            return
        time.sleep(0.5)
    raise ServerError(f"mlflow server on {info.uri} did not answer /health within {timeout:.0f} s; see {info.log}.")


def _kill(pid: int, grace: float = 15.0) -> None:
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return
    # The server is its own session leader (start_new_session), so its group is only its own processes.
    if pgid != pid:
        pgid = None
    try:
        if pgid:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # reap if it is our child
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        except OSError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL) if pgid else os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if pgid:  # uvicorn workers and the job runner may outlive the parent by a moment
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def down() -> ServerInfo | None:
    """Stop the server started by `up` (its whole process group). Returns what was stopped."""
    info = status()
    if info is None:
        return None
    _kill(info.pid)
    tracking.server_state_file().unlink(missing_ok=True)
    return info
