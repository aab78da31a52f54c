"""A client that goes away mid-stream stops the generation and frees the model's lock (issue 17, finding 3), through
/v1 and through an arena battle, on a real uvicorn server. The models are the tiny seeds with answers of 8,000-12,000 tokens
(minutes each here): a lock still held seconds after the client left means the generation went on."""

from __future__ import annotations

import time

import httpx

UNLOCK_WITHIN_S = 20.0   # a full answer takes minutes here; a stopped one frees the lock within a token or two


def _locked(backends, name: str) -> bool:
    model = backends._models.get(name)
    return model is not None and model._lock.locked()


def _wait(predicate, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _open_stream(client: httpx.Client, path: str, body: dict, headers: dict, frames: int):
    """Start a streamed POST and read `frames` data frames; returns the open response (close it to disconnect)."""
    req = client.build_request("POST", path, json=body, headers=headers)
    resp = client.send(req, stream=True)
    assert resp.status_code == 200, resp.read()
    lines = resp.iter_lines()
    got = 0
    while got < frames:
        if next(lines).startswith("data: "):
            got += 1
    return resp


def test_v1_disconnect_stops_generation_and_frees_the_lock(live_arena, long_models, long_backends, api_key):
    server = live_arena(models=long_models, backends=long_backends)
    h = {"Authorization": f"Bearer {api_key}"}
    body = {"model": "tiny-a", "messages": [{"role": "user", "content": "Kontatu istorio luze bat."}],
            "max_tokens": 8000, "stream": True}
    with httpx.Client(base_url=server.url, timeout=60) as c1, httpx.Client(base_url=server.url, timeout=60) as c2:
        first = _open_stream(c1, "/v1/chat/completions", body, h, frames=4)   # role frame + 3 tokens
        assert _locked(long_backends, "tiny-a")
        queued = _open_stream(c2, "/v1/chat/completions", body, h, frames=1)  # waits for the lock
        queued.close()
        first.close()
        assert _wait(lambda: not _locked(long_backends, "tiny-a"), UNLOCK_WITHIN_S), "still generating"
        # the request that left while waiting for the lock never starts generating
        time.sleep(1.0)
        assert not _locked(long_backends, "tiny-a")
    # and the model answers the next client at once
    r = httpx.post(server.url + "/v1/chat/completions", headers=h, timeout=60,
                   json={"model": "tiny-a", "max_tokens": 3, "messages": [{"role": "user", "content": "Kaixo"}]})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_arena_disconnect_stops_both_sides(live_arena, long_models, long_backends, reg):
    server = live_arena(models=long_models, backends=long_backends)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        h = reg(client, "joanda")
        bid = client.post("/api/battles", headers=h).json()["battle_id"]
        resp = _open_stream(client, f"/api/battles/{bid}/messages", {"content": "Kontatu istorio luze bat."}, h,
                            frames=4)
        assert any(_locked(long_backends, n) for n in ("tiny-a", "tiny-b", "tiny-c"))
        resp.close()
        assert _wait(lambda: not any(_locked(long_backends, n) for n in ("tiny-a", "tiny-b", "tiny-c")),
                     UNLOCK_WITHIN_S), "still generating"
        # the abandoned turn is not stored and the battle takes the next message
        assert client.get(f"/api/battles/{bid}", headers=h).json()["turns"] == []
        again = _open_stream(client, f"/api/battles/{bid}/messages", {"content": "Beste bat."}, h, frames=1)
        again.close()
        assert _wait(lambda: not any(_locked(long_backends, n) for n in ("tiny-a", "tiny-b", "tiny-c")),
                     UNLOCK_WITHIN_S)
