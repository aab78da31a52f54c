"""Hostile JSON bodies (well under the body cap): nesting deeper than any parser's recursion, and integers beyond
Python's digit limit. Both servers answer 400/422 in their own error shape, never 500, and stay healthy."""

from __future__ import annotations

import httpx
import pytest

CHAT = "/v1/chat/completions"
DEEP = 100_000   # 200 KB of brackets, a fifth of the 1 MiB body cap
HUGE_INT = "9" * 5000


def hostile_bodies(field: str) -> dict[str, str]:
    """Raw bodies: ``field`` is where a value goes in an otherwise plausible object."""
    return {
        "unclosed brackets": "[" * 2 * DEEP,
        "balanced brackets": "[" * DEEP + "]" * DEEP,
        "deep value in a field": '{"%s": %s}' % (field, "[" * DEEP + "]" * DEEP),
        # below the interpreter's recursion limit: the parser succeeds, validation must refuse it
        "900 levels in a field": '{"%s": %s}' % (field, "[" * 900 + "]" * 900),
        "huge integer": '{"%s": %s}' % (field, HUGE_INT),
    }


def _post(url: str, body: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url, content=body.encode(), headers={"content-type": "application/json", **(headers or {})},
                      timeout=60)


@pytest.mark.parametrize("path,field", [("/api/participants", "username"),
                                        ("/api/sessions", "password")])
def test_arena_api_refuses_hostile_json_in_its_error_shape(live_arena, path, field):
    server = live_arena()
    for what, body in hostile_bodies(field).items():
        r = _post(server.url + path, body)
        assert r.status_code in (400, 422), (what, r.status_code, r.text[:300])
        err = r.json()["error"]
        assert set(err) >= {"code", "message"} and err["message"].endswith("."), (what, err)
        assert "Traceback" not in r.text
    assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200


def test_arena_vote_refuses_hostile_json(live_arena, reg):
    server = live_arena()
    client = httpx.Client(base_url=server.url, timeout=60)
    h = reg(client, "miren")
    bid = client.post("/api/battles", headers=h).json()["battle_id"]
    for what, body in hostile_bodies("content").items():
        r = _post(f"{server.url}/api/battles/{bid}/vote", body, h)
        assert r.status_code in (400, 422), (what, r.status_code, r.text[:300])
        assert r.json()["error"]["message"].endswith("."), what
    assert client.get("/api/health").status_code == 200
    client.close()


def test_v1_refuses_hostile_json_in_the_openai_shape(live_arena, api_key):
    server = live_arena()
    auth = {"Authorization": f"Bearer {api_key}"}
    bodies = hostile_bodies("messages")
    bodies["huge max_tokens"] = '{"model": "tiny-a", "messages": [{"role": "user", "content": "Kaixo"}], ' \
                                '"max_tokens": %s}' % HUGE_INT
    for what, body in bodies.items():
        r = _post(server.url + CHAT, body, auth)
        assert r.status_code == 400, (what, r.status_code, r.text[:300])
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, (what, body)
        assert body["error"]["type"] == "invalid_request_error", (what, body)
    ok = httpx.post(server.url + CHAT, json={"model": "tiny-a", "messages": [{"role": "user", "content": "Kaixo"}],
                                             "max_tokens": 2}, headers=auth, timeout=60)
    assert ok.status_code == 200, ok.text
