"""`latxa serve` end to end: Ray Serve deployments answer an OpenAI client (streamed) and a scripted participant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml


@pytest.mark.slow
def test_latxa_serve_openai_stream_and_scripted_participant(tmp_path, serve_models):
    from latxa.net import free_port
    from latxa.serving.arena.loadgen import wait_http

    port = free_port()
    cfg = {"host": "127.0.0.1", "port": port,
           "models": [{"name": m.name, "kind": "hf", "path": m.path, "generation": {"max_tokens": 8}}
                      for m in serve_models[:2]],
           "arena": {"database_url": f"sqlite:///{tmp_path}/arena.db", "min_reading_seconds": 0.5,
                     "admin_token": "adm", "rate_auth_per_minute_ip": 4}}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(cfg))
    log = open(tmp_path / "serve.log", "wb")
    exe = Path(sys.executable).with_name("latxa")
    proc = subprocess.Popen([str(exe), "serve", "--config", str(tmp_path / "serve.yaml")], stdout=log,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "RAY_DEDUP_LOGS": "0", "LATXA_API_KEYS": "sk-ray-test"},
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{base}/api/health", proc, 300)
        except (RuntimeError, TimeoutError) as err:
            log.flush()
            pytest.fail(f"{err}\n{(tmp_path / 'serve.log').read_text(errors='replace')[-3000:]}")
        import openai
        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key="sk-ray-test", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list().data] == ["tiny-a", "tiny-b"]
        stranger = OpenAI(base_url=f"{base}/v1", api_key="sk-guess", max_retries=0, timeout=120)
        with pytest.raises(openai.AuthenticationError):
            stranger.chat.completions.create(model="tiny-a", messages=[{"role": "user", "content": "Kaixo"}])
        stream = client.chat.completions.create(model="tiny-b", stream=True, max_tokens=5,
                                                messages=[{"role": "user", "content": "Kaixo, zer moduz?"}])
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length") and text.strip()
        plain = client.chat.completions.create(model="tiny-a", max_tokens=4,
                                               messages=[{"role": "user", "content": "Egun on"}])
        assert plain.choices[0].message.content and plain.usage.completion_tokens <= 4

        # a scripted participant: register, battle, read both streamed answers, vote, see the reveal
        h = {"Authorization": "Bearer " + httpx.post(f"{base}/api/participants", json={
            "username": "gidoia", "password": "pasahitza-8", "consent": True, "basque_level": "native",
            "education": "bachelor"}).json()["token"]}
        bid = httpx.post(f"{base}/api/battles", headers=h).json()["battle_id"]
        events = []
        with httpx.stream("POST", f"{base}/api/battles/{bid}/messages", headers=h, timeout=120,
                          json={"content": "Zein da Euskal Herriko mendirik altuena?"}) as r:
            assert r.status_code == 200 and "tiny" not in json.dumps(dict(r.headers))
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        assert {e["side"] for e in events if e["type"] == "done"} == {"a", "b"}
        assert "tiny" not in json.dumps(events)
        time.sleep(0.6)
        vote = httpx.post(f"{base}/api/battles/{bid}/vote", headers=h,
                          json={"content": "model_a", "language": "model_b", "overall": "model_a"}).json()
        assert vote["winner"] == "model_a" and set(vote["models"].values()) == {"tiny-a", "tiny-b"}
        board = httpx.get(f"{base}/api/leaderboard").json()
        assert board["votes"] == 1
        # Ray's proxy does not believe X-Forwarded-For from loopback: rotating it buys no fresh log-in bucket
        # (the registration above spent one of this peer's four)
        codes = [httpx.post(f"{base}/api/sessions", json={"username": "gidoia", "password": "okerra-123"},
                            headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
