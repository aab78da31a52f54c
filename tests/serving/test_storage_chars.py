"""Text the database cannot store (issue 17, finding 2) on SQLite and on a real PostgreSQL: U+0000 and lone
surrogates are refused at the boundary (422), stripped from model output, and a turn that was answered is stored."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import create_engine, text

BACKENDS = pytest.mark.parametrize("arena_db", ["sqlite", "postgresql"], indirect=True)
PERSON = {"password": "pasahitza-8", "consent": True, "basque_level": "C1", "education": "master"}


def _post_raw(client, path: str, raw: str, headers: dict | None = None):
    """POST a JSON document written by hand (json.dumps would not write a lone surrogate escape)."""
    return client.post(path, content=raw.encode(), headers={"Content-Type": "application/json", **(headers or {})})


@BACKENDS
def test_unstorable_characters_are_refused_with_422(make_arena, reg):
    client, _ = make_arena()
    bad_emails = ["ane\u0000@example.eus", "ane@exa\u0000mple.eus"]
    for email in bad_emails:
        r = client.post("/api/participants", json={**PERSON, "username": "ane", "email": email})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"
    r = _post_raw(client, "/api/participants", json.dumps({**PERSON, "username": "ane"})[:-1]
                  + ', "email": "ane\\ud800@example.eus"}')
    assert r.status_code == 422, r.text
    # log-in is unauthenticated: a NUL in the username is a wrong log-in, never a database error
    for name in ("ane\u0000", "\u0000", "a\u0000" * 20):
        r = client.post("/api/sessions", json={"username": name, "password": "pasahitza-8"})
        assert r.status_code in (401, 422), r.text
    r = _post_raw(client, "/api/sessions", '{"username": "\\udc80ane", "password": "pasahitza-8"}')
    assert r.status_code in (401, 422), r.text
    h = reg(client, "ane")
    bid = client.post("/api/battles", headers=h).json()["battle_id"]
    for content in ("Kaixo\u0000", "\u0000"):
        r = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": content, "stream": False})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    r = _post_raw(client, f"/api/battles/{bid}/messages", '{"content": "Kaixo \\ud83d", "stream": true}', h)
    assert r.status_code == 422, r.text
    # nothing was written by the refused requests; ordinary text with every other control character is fine
    ok = client.post(f"/api/battles/{bid}/messages", headers=h,
                     json={"content": "Kaixo\t\u0001\u001f\u007f\u2028 😀 zer moduz?", "stream": False})
    assert ok.status_code == 200, ok.text
    turns = client.get(f"/api/battles/{bid}", headers=h).json()["turns"]
    assert [t["user"] for t in turns] == ["Kaixo\t\u0001\u001f\u007f\u2028 😀 zer moduz?"]


def _sse(resp) -> list:
    lines = [line for line in resp.text.splitlines() if line.startswith("data: ")]
    assert lines and lines[-1] == "data: [DONE]", resp.text[-500:]
    return [json.loads(line[6:]) for line in lines[:-1]]


@BACKENDS
def test_model_output_with_nul_is_stripped_and_the_turn_is_stored(live_arena, nul_models, api_key):
    from transformers import AutoTokenizer

    from latxa.serving.generation import LocalBackends

    assert AutoTokenizer.from_pretrained(nul_models[1].path).decode([194]) == "\u0000"   # the stand-in's premise
    backends = LocalBackends(nul_models)
    server = live_arena(models=nul_models, backends=backends)
    with httpx.Client(base_url=server.url, timeout=120) as c:
        r = c.post("/api/participants", json={**PERSON, "username": "miren"})
        h = {"Authorization": f"Bearer {r.json()['token']}"}
        for i in range(2):
            bid = c.post("/api/battles", headers=h).json()["battle_id"]
            events = _sse(c.post(f"/api/battles/{bid}/messages", headers=h, json={"content": f"Kaixo {i}"}))
            assert events[-1] == {"type": "end", "turn": 1}, events
            assert {e["side"] for e in events if e["type"] == "done"} == {"a", "b"}
            assert not any("\u0000" in e.get("text", "") for e in events)
            (turn,) = c.get(f"/api/battles/{bid}", headers=h).json()["turns"]
            assert "\u0000" not in turn["a"] + turn["b"]
            assert c.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "tie", "language": "tie"}).status_code == 200
        ah = {"Authorization": f"Bearer {api_key}"}
        for stream in (False, True):
            r = c.post("/v1/chat/completions", headers=ah, json={"model": "tiny-nul", "max_tokens": 4, "stream": stream,
                                                                 "messages": [{"role": "user", "content": "Kaixo"}]})
            assert r.status_code == 200 and "\\u0000" not in r.text and "\u0000" not in r.text
        export = c.get("/api/admin/export", headers={"X-Admin-Token": "admin-secret"})
        assert export.status_code == 200 and len(export.text.splitlines()) == 2


def _block_answer_time_updates(url: str) -> None:
    """Make the battle's answer-time update fail in the database itself (a trigger), as a lost connection or a lock
    timeout would: the write after the turn's own."""
    engine = create_engine(url)
    with engine.begin() as conn:
        if url.startswith("sqlite"):
            conn.execute(text("CREATE TRIGGER no_answer_time BEFORE UPDATE OF last_answer_at ON battles "
                              "BEGIN SELECT RAISE(ABORT, 'answer time refused'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'answer time refused'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER no_answer_time BEFORE UPDATE OF last_answer_at ON battles "
                              "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    engine.dispose()


@BACKENDS
def test_an_answered_turn_is_stored_when_a_later_write_fails(make_arena, reg):
    client, settings = make_arena()
    _block_answer_time_updates(settings.database_url)
    h = reg(client, "koldo")
    bid = client.post("/api/battles", headers=h).json()["battle_id"]
    with client.stream("POST", f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo"}) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[-1] == {"type": "end", "turn": 1}
    (turn,) = client.get(f"/api/battles/{bid}", headers=h).json()["turns"]
    assert turn["user"] == "Kaixo" and turn["a"] and turn["b"]
    vote = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "model_a", "language": "model_a"})
    assert vote.status_code == 200, vote.text
