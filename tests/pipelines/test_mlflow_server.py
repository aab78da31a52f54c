"""The local MLflow tracking server: `latxa mlflow up|status|down`, fail-fast, buffered metrics across an outage.

Everything runs against a real `mlflow server` (SQLite + local artifacts) on a random free port, in a
private LATXA_HOME so the tests never touch another test's or the user's state.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_kfp import run_latxa  # noqa: E402


def _rest(uri: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(uri + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture
def server(mlflow_server):
    return mlflow_server


@pytest.fixture
def home(mlflow_home):
    return mlflow_home


def test_up_status_and_rest_api(server, home):
    assert server["uri"] == f"http://127.0.0.1:{server['port']}"
    assert server["backend_store_uri"] == f"sqlite:///{home.resolve() / 'mlflow' / 'mlflow.db'}"
    st = run_latxa("mlflow", "status", "--format", "json", env=server["env"])
    assert st.returncode == 0
    status = json.loads(st.stdout)
    assert status["healthy"] and status["pid"] == server["pid"] and status["tracking_uri"] == server["uri"]
    # a second `up` is idempotent: same server
    again = run_latxa("mlflow", "up", "--format", "json", env=server["env"])
    assert json.loads(again.stdout)["pid"] == server["pid"]
    # the REST API answers and persists to the SQLite file under the state folder
    exp = _rest(server["uri"], "/api/2.0/mlflow/experiments/create", {"name": "rest-check"})
    got = _rest(server["uri"], "/api/2.0/mlflow/experiments/get-by-name?experiment_name=rest-check")
    assert got["experiment"]["experiment_id"] == exp["experiment_id"]
    assert (home / "mlflow" / "mlflow.db").stat().st_size > 0


def test_buffered_logging_survives_an_outage(server, monkeypatch):
    """Metrics logged while the server is down are buffered on disk and synced when it is back; the run says so."""
    from mlflow.tracking import MlflowClient

    from latxa.components import tracking
    from latxa.pipelines import mlflow_server

    monkeypatch.setenv("LATXA_HOME", server["env"]["LATXA_HOME"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = server["uri"]
    exp_id = tracking.ensure_experiment("buffer-test", uri)
    run_id = MlflowClient(uri).create_run(exp_id, run_name="exp_2_101").info.run_id
    log = tracking.BufferedRunLogger(run_id, uri)
    assert log.log_metrics({"loss": 3.0}, step=1) is True

    mlflow_server.down()                                   # the server drops mid-run
    assert not tracking.server_healthy(uri)
    t0 = time.monotonic()
    assert log.log_metrics({"loss": 2.5}, step=2) is False  # buffered, and quickly (training is not held up)
    assert log.log_metrics({"loss": 2.0}, step=3) is False
    assert log.set_tags({"phase": "outage"}) is False
    assert time.monotonic() - t0 < 15
    assert log.pending() == 3 and log.buffer_path.is_file()
    assert log.close() == 3                                # still down: nothing lost, nothing sent

    info = mlflow_server.up(port=server["port"])           # the server returns (same store)
    assert info.uri == uri
    assert log.log_metrics({"loss": 1.5}, step=4) is True   # flushes the buffer first, then this one
    assert log.close() == 0
    client = MlflowClient(uri)
    hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert hist == [(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.5)]
    tags = client.get_run(run_id).data.tags
    assert tags["phase"] == "outage"
    assert tags[tracking.TAG_TRACKING_BUFFERED] == "3"
    assert "unreachable" in tags[tracking.TAG_TRACKING_NOTE]
    assert not log.buffer_path.exists()


def test_sync_pushes_buffers_left_by_an_ended_process(server, monkeypatch):
    from mlflow.tracking import MlflowClient

    from latxa.components import tracking

    monkeypatch.setenv("LATXA_HOME", server["env"]["LATXA_HOME"])
    uri = server["uri"]
    exp_id = tracking.ensure_experiment("buffer-test", uri)
    run_id = MlflowClient(uri).create_run(exp_id, run_name="exp_2_010").info.run_id
    # what a process that ended during an outage leaves behind
    path = tracking.buffer_dir() / f"{run_id}.jsonl"
    path.write_text("".join(json.dumps({"kind": "metric", "key": "loss", "value": v, "step": s, "ts": 1}) + "\n"
                            for s, v in ((1, 4.0), (2, 3.5))))
    res = run_latxa("mlflow", "sync", "--tracking-uri", uri, env=server["env"])
    assert res.returncode == 0, res.stderr
    assert f"run {run_id}: synced 2 buffered records" in res.stdout
    assert sorted(m.value for m in MlflowClient(uri).get_metric_history(run_id, "loss")) == [3.5, 4.0]
    assert MlflowClient(uri).get_run(run_id).data.tags[tracking.TAG_TRACKING_BUFFERED] == "2"
    assert not path.exists()


def test_pipeline_fails_fast_when_tracking_is_unreachable(tmp_path):
    from latxa.net import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    res = run_latxa("pipeline", "run", "--variants", "exp_2_101", "--tracking-uri", dead,
                    env={"LATXA_HOME": str(tmp_path)})
    assert res.returncode == 2
    assert f"error: The MLflow tracking server at {dead} is unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 120
    assert not (tmp_path / "kfp").exists() and not (tmp_path / "models").exists()  # no work was started


def test_status_and_down_without_a_server(tmp_path):
    env = {"LATXA_HOME": str(tmp_path)}
    st = run_latxa("mlflow", "status", env=env)
    assert st.returncode == 1 and "no tracking server running" in st.stdout
    down = run_latxa("mlflow", "down", env=env)
    assert down.returncode == 0 and "no tracking server was running" in down.stdout


def test_port_in_use_is_one_sentence(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_latxa("mlflow", "up", "--port", str(port), env={"LATXA_HOME": str(tmp_path)})
    assert res.returncode == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in res.stderr


def test_production_command_from_the_shipped_env_file(monkeypatch):
    from latxa.pipelines.mlflow_server import CONFIG_DIR, ServerError, production_command

    example = CONFIG_DIR / "production.env.example"
    for var in ("MLFLOW_DB_PASSWORD", "MLFLOW_S3_ACCESS_KEY", "MLFLOW_S3_SECRET_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ServerError, match=r"MLFLOW_BACKEND_STORE_URI .*:9\).* \$MLFLOW_DB_PASSWORD, which is not set"):
        production_command(example)
    monkeypatch.setenv("MLFLOW_DB_PASSWORD", "pw")
    monkeypatch.setenv("MLFLOW_S3_ACCESS_KEY", "ak")
    monkeypatch.setenv("MLFLOW_S3_SECRET_KEY", "sk")
    cmd, env = production_command(example)
    assert cmd[:2] == ["mlflow", "server"]
    arg = lambda flag: cmd[cmd.index(flag) + 1]  # noqa: E731
    assert arg("--backend-store-uri") == "postgresql+psycopg2://mlflow:pw@postgres.mlops.svc:5432/mlflow"
    assert "--serve-artifacts" in cmd and arg("--artifacts-destination") == "s3://latxa-mlflow/artifacts"
    assert arg("--host") == "0.0.0.0" and "--allowed-hosts" in cmd
    assert env == {"MLFLOW_S3_ENDPOINT_URL": "https://minio.mlops.svc:9000", "AWS_ACCESS_KEY_ID": "ak",
                   "AWS_SECRET_ACCESS_KEY": "sk"}


def test_env_file_errors_name_file_and_line(tmp_path):
    from latxa.pipelines.mlflow_server import ServerError, production_command

    bad = tmp_path / "bad.env"
    bad.write_text("# comment\nMLFLOW_BACKEND_STORE_URI=sqlite:///x.db\nthis line has no equals sign\n")
    with pytest.raises(ServerError, match=r"bad.env:3: expected KEY=VALUE"):
        production_command(bad)
    missing = tmp_path / "missing.env"
    missing.write_text("MLFLOW_BACKEND_STORE_URI=sqlite:///x.db\n")
    with pytest.raises(ServerError, match="does not set MLFLOW_ARTIFACTS_DESTINATION"):
        production_command(missing)
