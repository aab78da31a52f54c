"""The `make arena` launcher: ports, readiness checks, a dying API reported in one sentence, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from latxa.arena_ui.launch import ArenaStack, LaunchError, main, wait_http  # noqa: E402
from latxa.net import free_port  # noqa: E402


def test_free_port_is_bindable_and_outside_the_ephemeral_range():
    ports = {free_port() for _ in range(5)}
    assert all(20000 <= p < 32000 for p in ports)
    import socket

    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_readiness_needs_a_200_not_just_any_server(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/", server, 20, "the test server", tmp_path / "x.log")  # 200: ready
        # Some other server holds the port: its 404 must not pass for the arena API's health check.
        with pytest.raises(LaunchError, match="did not answer .*/api/health within 2 s"):
            wait_http(f"http://127.0.0.1:{port}/api/health", server, 2, "the arena API", tmp_path / "x.log")
    finally:
        server.terminate()
        server.wait(10)


def test_an_api_that_dies_is_reported_and_nothing_is_left_running(tmp_path):
    stack = ArenaStack(api_cmd=[sys.executable, "-c", "import sys; print('no models'); sys.exit(3)"],
                       log_dir=tmp_path, api_timeout=30, ui_timeout=30)
    with pytest.raises(LaunchError, match=r"the arena API exited with status 3 .*see .*arena-api.log"):
        stack.start()
    assert stack.procs == []
    assert "no models" in (tmp_path / "arena-api.log").read_text()
    ui_cmd = (tmp_path / "arena-ui.log").read_text().splitlines()[0]
    assert "reflex run --env prod --single-port" in ui_cmd  # the UI was started alongside, and stopped
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--frontend-port {stack.ui_port}" not in out


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "Example:" in text and "make arena" in text and "--api-url" in text


def test_cli_reports_a_failing_api_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--api-cmd", f"{sys.executable} -c 'import sys; sys.exit(4)'", "--ui-port", str(free_port()),
                 "--log-dir", str(tmp_path / "logs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: the arena API exited with status 4")
    assert (tmp_path / "logs" / "arena-api.log").is_file()
