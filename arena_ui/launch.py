"""Bring up the whole arena on 127.0.0.1: model serving + arena API, then the Reflex UI; Ctrl-C stops both.

``make arena`` runs ``python -m latxa.arena_ui.launch``. The arena API is started with the serving layer's own CLI
(``latxa serve``: Ray Serve with the local models and the arena API on one port), as a subprocess: this package
never imports serving or training code. With ``--api-url`` an already running arena API is used instead.

The same :class:`ArenaStack` is the session fixture of the browser tests (tests/arena_ui/).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from latxa.net import free_port

UI_DIR = Path(__file__).resolve().parent
REPO = UI_DIR.parent
TOOLS_BIN = REPO / ".tools" / "node_modules" / ".bin"
EXAMPLE = "make arena    # or: python -m latxa.arena_ui.launch --api-url http://127.0.0.1:8000"


class LaunchError(RuntimeError):
    """A part of the stack did not come up; the message says which and where its log is."""


def reflex_env(extra: dict | None = None) -> dict:
    """Environment for an offline Reflex: project-local bun, no telemetry, no version check, no hub."""
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("REFLEX_USE_SYSTEM_BUN", "1")
    env.setdefault("REFLEX_CHECK_LATEST_VERSION", "0")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.update(extra or {})
    return env


def check_tools() -> None:
    if not (TOOLS_BIN / "bun").exists() and not shutil.which("bun"):
        raise LaunchError(f"bun is missing from {TOOLS_BIN}: run `make arena-tools` (npm install bun@1.4.4 into .tools/).")


def wait_http(url: str, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    """Wait until ``url`` answers 200 (not just anything: another server on the port must not pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"{what} exited with status {proc.returncode} before answering {url}; see {log}.")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise LaunchError(f"{what} did not answer {url} within {timeout:.0f} s; see {log}.")


class ArenaStack:
    """The arena API (unless ``api_url`` is given) and the Reflex app, each in its own process group."""

    def __init__(self, host: str = "127.0.0.1", ui_port: int | None = None, api_port: int | None = None,
                 api_url: str | None = None, api_cmd: list[str] | None = None, api_env: dict | None = None,
                 log_dir: Path | None = None, api_timeout: float = 300.0, ui_timeout: float = 600.0):
        self.host = host
        self.auto_ports = not (ui_port or api_port)
        self.ui_port = ui_port or free_port(host)
        self.api_port = api_port or free_port(host)
        self.external_api = api_url is not None
        self.api_url = (api_url or f"http://{host}:{self.api_port}").rstrip("/")
        self.api_cmd = api_cmd
        self.api_env = api_env or {}
        self.log_dir = Path(log_dir or REPO / ".latxa" / "arena-logs")
        self.api_timeout, self.ui_timeout = api_timeout, ui_timeout
        self.procs: list[tuple[str, subprocess.Popen]] = []

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def default_api_cmd(self) -> list[str]:
        latxa = Path(sys.executable).with_name("latxa")
        return [str(latxa), "serve", "--host", "{host}", "--port", "{port}"]

    def _spawn(self, name: str, cmd: list[str], cwd: Path, env: dict) -> tuple[subprocess.Popen, Path]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        fh = open(log, "w")
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc, log

    def spawn_api(self):
        """``api_cmd`` is a template: ``{port}`` and ``{host}`` in its arguments are filled in here."""
        cmd = [a.replace("{port}", str(self.api_port)).replace("{host}", self.host)
               for a in (self.api_cmd or self.default_api_cmd())]
        return self._spawn("arena-api", cmd, REPO, reflex_env(self.api_env))

    def spawn_ui(self):
        check_tools()
        reflex = Path(sys.executable).with_name("reflex")
        cmd = [str(reflex), "run", "--env", "prod", "--single-port", "--frontend-port", str(self.ui_port),
               "--backend-port", str(self.ui_port), "--backend-host", self.host, "--loglevel", "warning"]
        env = reflex_env({"LATXA_ARENA_API_URL": self.api_url, "REFLEX_API_URL": self.ui_url,
                          "REFLEX_DEPLOY_URL": self.ui_url})
        return self._spawn("arena-ui", cmd, UI_DIR, env)

    def start(self, attempts: int = 3) -> "ArenaStack":
        """Start the API and the UI side by side (the UI's build needs no API), then wait for both. If a server
        lost its port to another process meanwhile, start again on fresh ports (ports we picked ourselves only)."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except LaunchError:
                clash = any("address already in use" in t or "failed to bind" in t for t in self._log_texts())
                if not (clash and self.auto_ports and attempt < attempts):
                    raise
                self.api_port, self.ui_port = free_port(self.host), free_port(self.host)
                self.api_url = f"http://{self.host}:{self.api_port}"
        raise AssertionError("unreachable")

    def _log_texts(self) -> list[str]:
        return [p.read_text(errors="replace").lower() for p in self.log_dir.glob("*.log")]

    def _start_once(self) -> "ArenaStack":
        try:
            api = None if self.external_api else self.spawn_api()
            ui_proc, ui_log = self.spawn_ui()
            if api:
                wait_http(self.api_url + "/api/health", api[0], self.api_timeout, "the arena API", api[1])
            wait_http(self.ui_url + "/ping", ui_proc, self.ui_timeout, "the Reflex app", ui_log)
            wait_http(self.ui_url + "/", ui_proc, 60, "the Reflex frontend", ui_log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stop the UI, then the API: SIGINT to each leader, as Ctrl-C would (so `latxa serve` shuts Ray Serve down
        itself), then SIGTERM and, after a few seconds, SIGKILL to whatever is left in its process group."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(pause)
            if proc.poll() is None:
                proc.wait(timeout=5)
        self.procs.clear()

    def restart_api(self, cmd: list[str] | None = None, grace: float = 10.0) -> None:
        """Stop the arena API and start it again (``cmd``: another command template) on the same port; the UI
        keeps running and reaches the new one on its next request."""
        for name, proc in list(self.procs):
            if name != "arena-api":
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            self.procs.remove((name, proc))
        if cmd is not None:
            self.api_cmd = cmd
        proc, log = self.spawn_api()
        wait_http(self.api_url + "/api/health", proc, self.api_timeout, "the arena API", log)

    def __enter__(self) -> "ArenaStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m latxa.arena_ui.launch",
        description="Serve the arena on 127.0.0.1: Ray Serve with the local models and the arena API (latxa serve), "
                    "then the Reflex UI. Prints the URL; Ctrl-C stops everything.",
        epilog=f"Example:\n\n  $ {EXAMPLE}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ui-port", type=int, default=int(os.environ.get("ARENA_UI_PORT", 0)) or None,
                        help="port of the UI (default: a free one)")
    parser.add_argument("--api-port", type=int, default=None, help="port of the arena API (default: a free one)")
    parser.add_argument("--api-url", default=None, help="use this running arena API instead of starting one")
    parser.add_argument("--api-cmd", default=os.environ.get("LATXA_ARENA_API_CMD"),
                        help="command that starts the arena API; {port} and {host} are filled in "
                             "(default: latxa serve --host HOST --port PORT)")
    parser.add_argument("--log-dir", type=Path, default=None, help="where the servers' logs go (default: .latxa/arena-logs)")
    args = parser.parse_args(argv)
    stack = ArenaStack(ui_port=args.ui_port, api_port=args.api_port, api_url=args.api_url, log_dir=args.log_dir)
    if args.api_cmd:
        stack.api_cmd = shlex.split(args.api_cmd)
    def on_signal(_signum, _frame):  # SIGTERM stops everything like Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting the arena API ({stack.api_url}) and the Reflex UI; logs in {stack.log_dir}", flush=True)
        stack.start()
        print(f"\n  Arena running at {stack.ui_url}  (arena API {stack.api_url})\n  Ctrl-C stops everything.\n", flush=True)
        while all(p.poll() is None for _, p in stack.procs):
            time.sleep(1)
        dead = [name for name, p in stack.procs if p.poll() is not None]
        print(f"error: {', '.join(dead)} stopped unexpectedly; see {stack.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
