"""The OpenAI-compatible routes under attack (issue 17, findings 4 and 8): an API key, one OpenAI-style error shape,
an error frame and [DONE] when a stream fails, bounded sampling parameters, edge inputs answered 400, never 500."""

from __future__ import annotations

import json

import httpx

CHAT = "/v1/chat/completions"


def openai_error(resp, code: str | None) -> dict:
    """The one error shape of /v1 (OpenAI's): {"error": {"message", "type", "param", "code"}}, nothing else."""
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"].endswith(".") and isinstance(err["type"], str)
    if code is not None:
        assert err["code"] == code, err
    return err


def _chat(server, body, key=None, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + CHAT, json=body, headers=headers, timeout=60, **kw)


def _sse(resp) -> list:
    lines = [line for line in resp.text.splitlines() if line.startswith("data: ")]
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_v1_needs_an_api_key(live_arena, api_key, monkeypatch):
    server = live_arena()
    body = {"model": "tiny-a", "messages": [{"role": "user", "content": "Kaixo"}], "max_tokens": 2}
    for key in (None, "sk-wrong", api_key[:-1], api_key + "x"):
        r = _chat(server, body, key)
        assert r.status_code == 401, (key, r.text)
        openai_error(r, "invalid_api_key")
    assert _chat(server, body, api_key).status_code == 200
    # x-api-key (Anthropic-style clients) is accepted too
    r = httpx.post(server.url + CHAT, json=body, headers={"x-api-key": api_key}, timeout=60)
    assert r.status_code == 200
    # the model list stays public (the leaderboard names the same models), with or without a key
    assert {m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]} == {"tiny-a", "tiny-b", "tiny-c"}
    # a server started without any configured key refuses every completion (closed by default), in one sentence
    monkeypatch.delenv("LATXA_API_KEYS")
    closed = live_arena()
    r = _chat(closed, body, api_key)
    assert r.status_code == 401 and "LATXA_API_KEYS" in openai_error(r, "invalid_api_key")["message"]


def test_v1_edge_inputs_are_400_in_the_openai_shape(live_arena, api_key):
    server = live_arena()
    user = {"role": "user", "content": "Kaixo"}
    bad = {
        "number in a content part": {"model": "tiny-a", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "null in a content part": {"model": "tiny-a", "messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
        "image part": {"model": "tiny-a", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "null content": {"model": "tiny-a", "messages": [{"role": "user", "content": None}]},
        "system after a user turn": {"model": "tiny-a", "messages": [user, {"role": "system", "content": "Zu zara"}]},
        "no messages": {"model": "tiny-a", "messages": []},
        "unknown role": {"model": "tiny-a", "messages": [{"role": "tool", "content": "x"}]},
        "temperature above 2": {"model": "tiny-a", "messages": [user], "temperature": 2.5},
        "negative temperature": {"model": "tiny-a", "messages": [user], "temperature": -1},
        "top_p 0": {"model": "tiny-a", "messages": [user], "top_p": 0},
        "max_tokens 0": {"model": "tiny-a", "messages": [user], "max_tokens": 0},
        "max_tokens huge": {"model": "tiny-a", "messages": [user], "max_tokens": 10**12},
        "n 2": {"model": "tiny-a", "messages": [user], "n": 2},
        "model not a string": {"model": 7, "messages": [user]},
    }
    for what, body in bad.items():
        for stream in (False, True):
            r = _chat(server, {**body, "stream": stream}, api_key)
            assert r.status_code == 400, (what, stream, r.status_code, r.text)
            err = openai_error(r, None)
            assert err["type"] == "invalid_request_error", (what, err)
    # a lone surrogate (valid JSON, not valid Unicode text) in a message and in the model name
    for raw in (b'{"model": "tiny-a", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
                b'{"model": "tiny-\\udfff", "messages": [{"role": "user", "content": "Kaixo"}]}',
                b'{"model": "tiny-a", "stream": true, "messages": [{"role": "user", "content": "\\ud83d"}]}'):
        r = httpx.post(server.url + CHAT, content=raw, timeout=60,
                       headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        assert r.status_code == 400, (raw, r.text)
        openai_error(r, None)
    # NaN and infinities (Python's JSON reader takes them)
    for raw in (b'{"model": "tiny-a", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
                b'{"model": "tiny-a", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}'):
        r = httpx.post(server.url + CHAT, content=raw, timeout=60,
                       headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        assert r.status_code == 400, (raw, r.text)
    # not JSON, not an object, wrong content type
    for raw in (b"{", b"[]", b"null", b"\xff\xfe"):
        r = httpx.post(server.url + CHAT, content=raw, timeout=60,
                       headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        assert r.status_code == 400, (raw, r.text)
        openai_error(r, None)
    # an unknown model, an unknown route, a wrong method: the same shape
    r = _chat(server, {"model": "gpt-5", "messages": [user]}, api_key)
    assert r.status_code == 404 and openai_error(r, "model_not_found")
    r = httpx.post(server.url + "/v1/completions", json={}, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 404 and openai_error(r, None)
    r = httpx.get(server.url + CHAT, headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 405 and openai_error(r, None)


def test_v1_tiny_temperatures_decode_greedily(live_arena, api_key):
    """temperature 1e-300 divided the logits into infinities (a 502 with torch's message); a temperature below
    0.01 now means greedy decoding, the limit it approaches, so it equals temperature 0."""
    server = live_arena()
    base = {"model": "tiny-a", "messages": [{"role": "user", "content": "Kaixo, zer moduz?"}], "max_tokens": 6}
    greedy = _chat(server, {**base, "temperature": 0}, api_key)
    assert greedy.status_code == 200, greedy.text
    for t in (1e-300, 5e-324, 1e-5):
        r = _chat(server, {**base, "temperature": t}, api_key)
        assert r.status_code == 200, (t, r.text)
        assert r.json()["choices"][0]["message"]["content"] == greedy.json()["choices"][0]["message"]["content"]
    r = _chat(server, {**base, "temperature": 1e-300, "top_p": 1e-300, "stream": True}, api_key)
    events = _sse(r)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])


def test_v1_failures_in_streams_end_with_an_error_frame_and_done(live_arena, api_key, serve_models, tmp_path):
    """A backend that fails (an unreachable endpoint) and a conversation longer than the context window: in JSON an
    OpenAI-style error (502 / 400), in a stream an error frame in the same shape followed by [DONE]."""
    from latxa.net import free_port
    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import ModelSpec

    dead = ModelSpec(name="dead", kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", remote_model="x")
    models = [*serve_models[:2], dead]
    server = live_arena(models=models, backends=LocalBackends(models))
    user = {"role": "user", "content": "Kaixo"}
    r = _chat(server, {"model": "dead", "messages": [user]}, api_key)
    assert r.status_code == 502 and openai_error(r, "backend_error")
    events = _sse(_chat(server, {"model": "dead", "messages": [user], "stream": True}, api_key))
    assert events[-1] == "[DONE]" and "error" in events[-2]
    assert set(events[-2]["error"]) == {"message", "type", "param", "code"}
    long = {"role": "user", "content": "kaixo " * 5000}  # > 2048 positions of the tiny model
    r = _chat(server, {"model": "tiny-a", "messages": [long]}, api_key)
    assert r.status_code == 400 and openai_error(r, "context_length_exceeded")
    events = _sse(_chat(server, {"model": "tiny-a", "messages": [long], "stream": True}, api_key))
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "context_length_exceeded"


def test_v1_body_cap_prompt_cap_and_per_key_rate(live_arena, api_key):
    server = live_arena(api={"rate_requests_per_minute": 3, "max_prompt_chars": 5000})
    huge = {"model": "tiny-a", "messages": [{"role": "user", "content": "a" * 10_000_000}]}
    for key in (api_key, None):   # refused before the body is read, with or without a key
        r = _chat(server, huge, key)
        assert r.status_code == 413, r.text[:300]
        openai_error(r, "request_too_large")
    over = _chat(server, {"model": "tiny-a", "messages": [{"role": "user", "content": "a" * 6000}]}, api_key)
    assert over.status_code == 400 and openai_error(over, "context_length_exceeded")
    body = {"model": "tiny-a", "messages": [{"role": "user", "content": "Kaixo"}], "max_tokens": 1}
    codes = [_chat(server, body, api_key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]   # the refused prompt above counted as one request of this key
    limited = _chat(server, body, api_key)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert openai_error(limited, "rate_limit_exceeded")["type"] == "rate_limit_error"
