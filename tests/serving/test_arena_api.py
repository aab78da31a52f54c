"""The arena API end to end in-process (real FastAPI app, real SQLite, real tiny models)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, text

MODEL_NAMES = ("tiny-a", "tiny-b", "tiny-c")


def sse_events(client, path, headers, content="Kaixo! Zer moduz?"):
    with client.stream("POST", path, headers=headers, json={"content": content}) as resp:
        assert resp.status_code == 200, resp.read()
        raw_headers = json.dumps(dict(resp.headers))
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]], raw_headers, "\n".join(lines)


BACKENDS = pytest.mark.parametrize("arena_db", ["sqlite", "postgresql"], indirect=True)


@BACKENDS
def test_participant_battle_vote_reveal_and_anonymity(make_arena, reg):
    client, _ = make_arena()
    h = reg(client, "miren")
    battle = client.post("/api/battles", headers=h)
    assert battle.status_code == 201
    bid = battle.json()["battle_id"]
    events, headers, raw = sse_events(client, f"/api/battles/{bid}/messages", h)
    sides = {e["side"] for e in events if e["type"] == "delta"}
    assert sides <= {"a", "b"} and {e["side"] for e in events if e["type"] == "done"} == {"a", "b"}
    assert events[-1] == {"type": "end", "turn": 1}
    # second turn: multi-turn history kept per side
    events2, _, raw2 = sse_events(client, f"/api/battles/{bid}/messages", h, "Eta gehiago?")
    before = client.get(f"/api/battles/{bid}", headers=h)
    # anonymity: no model name anywhere before the vote (payloads, SSE, headers)
    for blob in (battle.text, raw, raw2, headers, before.text, json.dumps(dict(before.headers))):
        for name in MODEL_NAMES:
            assert name not in blob
    view = before.json()
    assert view["models"] is None and view["vote"] is None and len(view["turns"]) == 2
    assert view["turns"][0]["a"] == "".join(e["text"] for e in events if e.get("side") == "a" and e["type"] == "delta")
    vote = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "model_a", "language": "model_a"})
    assert vote.status_code == 200, vote.text
    v = vote.json()
    assert v["winner"] == "model_a" and v["winner_overall"] is None
    assert {v["models"]["model_a"], v["models"]["model_b"]} <= set(MODEL_NAMES)
    assert v["models"]["model_a"] != v["models"]["model_b"]
    after = client.get(f"/api/battles/{bid}", headers=h).json()
    assert after["status"] == "voted" and after["models"] == v["models"]
    # no more turns after the vote
    closed = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Beste bat"})
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "battle_closed"
    # another participant cannot see the battle
    other = reg(client, "jon")
    assert client.get(f"/api/battles/{bid}", headers=other).status_code == 404
    contrib = client.get("/api/me/contributions", headers=h).json()
    assert contrib["votes"] == 1 and contrib["rank"] == 1 and contrib["participants"] == 2
    board = client.get("/api/leaderboard").json()
    # one vote: no model has the 20 battles the leaderboard needs; the page says how many more each needs
    assert board["votes"] == 1 and board["ratings"]["overall"] == {} and board["min_battles"] == 20
    assert {p["model"]: p["needed"] for p in board["pending"]} == {
        **{m: 19 for m in v["models"].values()}, **{m: 20 for m in MODEL_NAMES if m not in v["models"].values()}}


def _voted_battle(client, h):
    bid = client.post("/api/battles", headers=h).json()["battle_id"]
    r = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False})
    assert r.status_code == 200 and r.json()["turn"] == 1
    return bid


@BACKENDS
def test_winner_rule_and_idempotent_votes(make_arena, reg):
    client, _ = make_arena()
    h = reg(client, "ane")
    cases = [  # (content, language, overall) -> winner (the reference's rule)
        (("model_a", "model_a", None), "model_a"),
        (("tie", "tie", "model_b"), "tie"),            # agree -> overall ignored
        (("model_a", "model_b", "model_b"), "model_b"),
        (("model_a", "tie", "tie"), "tie"),
        (("tie", "model_b", "model_a"), "model_a"),
    ]
    for (content, language, overall), winner in cases:
        bid = _voted_battle(client, h)
        body = {"content": content, "language": language, "overall": overall}
        first = client.post(f"/api/battles/{bid}/vote", headers=h, json=body)
        assert first.status_code == 200, first.text
        assert first.json()["winner"] == winner
        again = client.post(f"/api/battles/{bid}/vote", headers=h, json=body)
        assert again.status_code == 200 and again.json() == first.json()
        flipped = {"content": "model_b" if content != "model_b" else "model_a", "language": language,
                   "overall": "model_a"}
        conflict = client.post(f"/api/battles/{bid}/vote", headers=h, json=flipped)
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "vote_conflict"
    bid = _voted_battle(client, h)
    missing = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "model_a", "language": "model_b"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "overall_required"
    fresh = client.post("/api/battles", headers=h).json()["battle_id"]
    early = client.post(f"/api/battles/{fresh}/vote", headers=h, json={"content": "tie", "language": "tie"})
    assert early.status_code == 409 and early.json()["error"]["code"] == "no_answers"
    stats = client.get("/api/admin/stats", headers={"X-Admin-Token": "admin-secret"}).json()
    assert stats["votes"] == len(cases)


def test_min_reading_time_and_rate_limits(make_arena, reg):
    client, _ = make_arena(min_reading_seconds=1.5, rate_battles_per_minute=3)
    h = reg(client, "koldo")
    bid = _voted_battle(client, h)
    early = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "tie", "language": "tie"})
    assert early.status_code == 425
    assert 0 < early.json()["error"]["details"]["retry_after_s"] <= 1.5
    time.sleep(1.6)
    assert client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "tie", "language": "tie"}).status_code == 200
    codes = [client.post("/api/battles", headers=h).status_code for _ in range(3)]
    assert codes == [201, 201, 429]  # one battle already created above
    limited = client.post("/api/battles", headers=h)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    # per-IP limit on registration/login
    client2, _ = make_arena(rate_auth_per_minute_ip=2)
    reg(client2, "a1b")
    assert client2.post("/api/sessions", json={"username": "a1b", "password": "pasahitza-8"}).status_code == 200
    assert client2.post("/api/sessions", json={"username": "a1b", "password": "pasahitza-8"}).status_code == 429


def test_registration_auth_and_admin(make_arena, reg, tmp_path):
    client, settings = make_arena()
    base = {"username": "itziar", "password": "pasahitza-8", "basque_level": "B2", "education": "phd",
            "email": "itziar@example.eus"}
    no = client.post("/api/participants", json={**base, "consent": False})
    assert no.status_code == 422 and no.json()["error"]["code"] == "consent_required"
    assert client.post("/api/participants", json={**base, "consent": True}).status_code == 201
    dup = client.post("/api/participants", json={**base, "consent": True})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "username_taken"
    assert client.post("/api/sessions", json={"username": "itziar", "password": "okerra-123"}).status_code == 401
    login = client.post("/api/sessions", json={"username": "itziar", "password": "pasahitza-8"})
    h = {"Authorization": f"Bearer {login.json()['token']}"}
    assert client.get("/api/me", headers=h).json()["basque_level"] == "B2"
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    # passwords are argon2 hashes, tokens are stored hashed
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        pw = conn.execute(text("select password_hash from participants")).scalar_one()
        tokens = conn.execute(text("select token_hash from sessions")).scalars().all()
    engine.dispose()
    assert pw.startswith("$argon2id$") and "pasahitza" not in pw
    assert login.json()["token"] not in tokens
    assert client.delete("/api/sessions", headers=h).status_code == 204
    assert client.get("/api/me", headers=h).status_code == 401
    # admin endpoints: token required; disabled without a configured token
    for path in ("/api/admin/models", "/api/admin/flagged", "/api/admin/export", "/api/admin/stats"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-Admin-Token": "wrong"}).status_code == 401
        assert client.get(path, headers={"X-Admin-Token": "admin-secret"}).status_code == 200
    models = client.get("/api/admin/models", headers={"X-Admin-Token": "admin-secret"}).json()
    assert [m["name"] for m in models] == list(MODEL_NAMES)
    disabled, _ = make_arena(admin_token=None)
    r = disabled.get("/api/admin/stats", headers={"X-Admin-Token": "admin-secret"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_control_battles_flag_careless_voters(make_arena, reg):
    from latxa.serving.registry import ControlBattle

    ctrl = ControlBattle(prompt="Zenbat da bi gehi bi?", good="Bi gehi bi lau da.", bad="Txakur berdea hegan.")
    client, _ = make_arena(control_rate=1.0, control_battles=[ctrl], control_fail_flag=2)
    careful, careless = reg(client, "zaindua"), reg(client, "arduragabea")
    for h, pick_good in ((careful, True), (careless, False)):
        for _ in range(2):
            b = client.post("/api/battles", headers=h).json()
            assert len(b["turns"]) == 1 and b["turns"][0]["user"] == ctrl.prompt
            good_side = "model_a" if b["turns"][0]["a"] == ctrl.good else "model_b"
            bad_side = "model_b" if good_side == "model_a" else "model_a"
            side = good_side if pick_good else bad_side
            r = client.post(f"/api/battles/{b['battle_id']}/vote", headers=h, json={"content": side, "language": side})
            assert r.status_code == 200
    flagged = client.get("/api/admin/flagged", headers={"X-Admin-Token": "admin-secret"}).json()
    assert [f["username"] for f in flagged] == ["arduragabea"]
    assert flagged[0]["reasons"] == ["control_failures"] and flagged[0]["control_failures"] == 2
    # control votes never reach the ratings
    assert client.get("/api/leaderboard").json()["votes"] == 0
