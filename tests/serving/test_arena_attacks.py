"""The arena API tried as a hostile participant would (issue 17, findings 5, 6, 7, 9, 10, 11), on real servers,
loopback only, every attack bounded in count and time."""

from __future__ import annotations

import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

BACKENDS = pytest.mark.parametrize("arena_db", ["sqlite", "postgresql"], indirect=True)
PERSON = {"password": "pasahitza-8", "consent": True, "basque_level": "C1", "education": "master"}
UI = Path(__file__).resolve().parents[2] / "arena_ui"


# ------------------------------------------------------------------------------------------------ finding 5
class _ServerLog(logging.Handler):
    """What the server's loggers print, formatted as a log file would hold it (tracebacks included): the root
    logger, uvicorn's (which do not propagate to the root, so caplog alone would miss them) and SQLAlchemy's
    engine at INFO, which logs every statement with its parameters unless the engine hides them."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def server_log():
    """server_log.attach() once the server has started (uvicorn's logging set-up replaces its loggers' handlers);
    SQLAlchemy's engine logs every statement meanwhile, as `echo` would."""
    handler = _ServerLog()
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy.engine")
    saved: list = []

    def attach() -> _ServerLog:
        for name in names:
            lg = logging.getLogger(name)
            saved.append((lg, lg.level))
            lg.addHandler(handler)
            if name:
                lg.setLevel(logging.INFO)
        return handler

    handler.attach = attach
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


@BACKENDS
def test_concurrent_registrations_of_one_username(live_arena, server_log):
    """Six registrations of one username at once: one 201, five 409 username_taken; no 500, and the server log
    holds no password hash and no e-mail address (the failed INSERT's parameters)."""
    server = live_arena()
    server_log.attach()
    barrier = threading.Barrier(6)
    results: list = []

    def go(i: int) -> None:
        body = {**PERSON, "username": "bikia", "email": f"bikia{i}@example.eus"}
        barrier.wait()
        r = httpx.post(server.url + "/api/participants", json=body, timeout=60)
        results.append((r.status_code, r.text))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = sorted(c for c, _ in results)
    assert codes == [201, 409, 409, 409, 409, 409], results
    for code, text in results:
        if code == 409:
            assert json.loads(text)["error"]["code"] == "username_taken"
    assert "$argon2" not in server_log.text and "@example.eus" not in server_log.text, server_log.text[-2000:]


def test_database_errors_never_carry_parameters(tmp_path):
    """The engine hides statement parameters in its errors (and so in every log that prints one)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from latxa.serving.arena.db import open_db

    engine, _ = open_db(f"sqlite:///{tmp_path}/e.db", migrate_schema=True)
    row = {"id": "p_1", "u": "x", "h": "$argon2id$secret", "e": "someone@example.eus"}
    sql = text("INSERT INTO participants (id, username, password_hash, email, basque_level, education, consent_version,"
               " consent_at, created_at, flagged, flag_reasons) VALUES (:id, :u, :h, :e, 'C1', 'phd', '1',"
               " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, '')")
    with engine.begin() as conn:
        conn.execute(sql, row)
    with pytest.raises(IntegrityError) as err:
        with engine.begin() as conn:
            conn.execute(sql, row)
    assert "$argon2id$secret" not in str(err.value) and "someone@example.eus" not in str(err.value)
    engine.dispose()


# ------------------------------------------------------------------------------------------------ finding 6
@BACKENDS
def test_no_vote_while_a_turn_is_streaming(live_arena, long_models, long_backends, reg):
    server = live_arena(models=long_models, backends=long_backends)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        h = reg(client, "presaka")
        bid = client.post("/api/battles", headers=h).json()["battle_id"]
        vote = {"content": "model_a", "language": "model_a"}
        with client.stream("POST", f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo"}) as resp:
            lines = resp.iter_lines()
            while not next(lines).startswith("data: "):
                pass
            early = client.post(f"/api/battles/{bid}/vote", headers=h, json=vote)
            assert early.status_code == 409 and early.json()["error"]["code"] == "battle_busy", early.text
            assert "tiny" not in early.text
        # the streamed turn was abandoned: there is nothing to vote on yet, and nothing was revealed
        after = client.post(f"/api/battles/{bid}/vote", headers=h, json=vote)
        assert after.status_code == 409 and after.json()["error"]["code"] == "no_answers"
        assert client.get(f"/api/battles/{bid}", headers=h).json()["models"] is None


# ------------------------------------------------------------------------------------------------ finding 7
def _login(url: str, username: str, password: str, headers: dict | None = None) -> int:
    return httpx.post(url + "/api/sessions", json={"username": username, "password": password},
                      headers=headers or {}, timeout=60).status_code


def test_limits_key_on_the_real_participant(live_arena, monkeypatch):
    monkeypatch.setenv("LATXA_ARENA_PROXY_TOKEN", "ui-backend-secret")
    server = live_arena(rate_auth_per_minute_ip=5, rate_login_failures_per_username=1000)
    url = server.url
    assert httpx.post(url + "/api/participants", json={**PERSON, "username": "egiazkoa"}).status_code == 201

    def via_ui(addr: str) -> dict:
        return {"X-Latxa-Client-Address": addr, "X-Latxa-Proxy-Token": "ui-backend-secret"}

    # one participant (behind the UI backend) exhausts their own bucket ...
    assert [_login(url, "egiazkoa", "okerra-123", via_ui("203.0.113.7")) for _ in range(5)] == [401] * 5
    assert _login(url, "egiazkoa", "pasahitza-8", via_ui("203.0.113.7")) == 429
    # ... and nobody else behind the same UI backend is blocked
    assert _login(url, "egiazkoa", "pasahitza-8", via_ui("198.51.100.20")) == 200
    r = httpx.post(url + "/api/participants", json={**PERSON, "username": "berria"}, headers=via_ui("198.51.100.21"))
    assert r.status_code == 201
    # a client that forges the address without the UI backend's secret keeps its own bucket (the peer's)
    forged = [_login(url, "egiazkoa", "okerra-123", {"X-Latxa-Client-Address": f"10.0.0.{i}",
                                                     "X-Latxa-Proxy-Token": "guess"}) for i in range(6)]
    assert forged == [401] * 4 + [429] * 2   # the registration above was this peer's first
    # and a rotating X-Forwarded-For from 127.0.0.1 does not buy a fresh bucket either
    assert _login(url, "egiazkoa", "pasahitza-8", {"X-Forwarded-For": "192.0.2.99"}) == 429
    assert _login(url, "egiazkoa", "pasahitza-8", {"X-Latxa-Client-Address": "192.0.2.98"}) == 429


def test_failed_logins_are_limited_per_username(live_arena, monkeypatch):
    monkeypatch.setenv("LATXA_ARENA_PROXY_TOKEN", "ui-backend-secret")
    server = live_arena(rate_auth_per_minute_ip=1000, rate_login_failures_per_username=4)
    url = server.url
    for name in ("jopuntua", "bestea"):
        assert httpx.post(url + "/api/participants", json={**PERSON, "username": name}).status_code == 201
    # guesses from many addresses at one account
    codes = [_login(url, "jopuntua", f"asmakizuna-{i}", {"X-Latxa-Client-Address": f"203.0.113.{i}",
                                                        "X-Latxa-Proxy-Token": "ui-backend-secret"}) for i in range(6)]
    assert codes == [401] * 4 + [429] * 2
    assert _login(url, "bestea", "pasahitza-8") == 200       # other accounts are untouched
    assert _login(url, "ezezaguna", "x" * 8) == 401            # unknown names count on their own key too


def test_the_ui_client_forwards_the_participant_address(live_arena, monkeypatch):
    """The Reflex backend's client (arena_ui/latxa_arena/api.py) sends the participant's address with the shared
    secret, so the API limits each participant on their own."""
    import asyncio

    monkeypatch.setenv("LATXA_ARENA_PROXY_TOKEN", "ui-backend-secret")
    server = live_arena(rate_auth_per_minute_ip=3)
    monkeypatch.syspath_prepend(str(UI))
    sys.modules.pop("latxa_arena.api", None)
    from latxa_arena.api import ApiError, ArenaClient

    async def attempt(addr: str, name: str):
        async with ArenaClient(base_url=server.url, client_address=addr) as api:
            try:
                await api.register(username=name, **PERSON)
                return 201
            except ApiError as err:
                return err.status

    async def scenario():
        first = [await attempt("203.0.113.50", f"lehena{i}") for i in range(4)]
        other = await attempt("203.0.113.51", "bigarrena")
        return first, other

    first, other = asyncio.run(scenario())
    assert first == [201, 201, 201, 429] and other == 201


# ------------------------------------------------------------------------------------------------ finding 9
def test_control_battles_look_like_any_battle(make_arena, reg):
    from latxa.serving.registry import ControlBattle

    ctrl = ControlBattle(prompt="Zenbat da bi gehi bi?", good="Bi gehi bi lau da.", bad="Txakur berdea hegan.")
    client, _ = make_arena(control_rate=1.0, control_battles=[ctrl])
    normal, _ = make_arena(control_rate=0.0)
    h, hn = reg(client, "kontrola"), reg(normal, "arrunta")
    created, regular = client.post("/api/battles", headers=h), normal.post("/api/battles", headers=hn)
    assert created.status_code == regular.status_code == 201
    c, n = created.json(), regular.json()
    assert set(c) == set(n) and c["turns"] == n["turns"] == [] and c["status"] == n["status"] == "open"
    assert len(c["battle_id"]) == len(n["battle_id"]) and ctrl.prompt not in created.text
    # the participant's own message gets two streamed answers, like in any battle
    with client.stream("POST", f"/api/battles/{c['battle_id']}/messages", headers=h, json={"content": "Kaixo!"}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
    assert [e["type"] for e in events if e["type"] != "delta"][-1] == "end"
    assert {e["side"] for e in events if e["type"] == "done"} == {"a", "b"}
    (turn,) = client.get(f"/api/battles/{c['battle_id']}", headers=h).json()["turns"]
    assert turn["user"] == "Kaixo!"


@pytest.mark.parametrize("pick_good", [True, False])
def test_control_battles_still_check_the_voter(make_arena, reg, pick_good):
    """A control battle answers the participant's message on one side and an unrelated question on the other;
    preferring the unrelated answer fails the check, and two failures flag the voter."""
    from sqlalchemy import create_engine, text

    from latxa.serving.registry import ControlBattle

    ctrl = ControlBattle(prompt="Zenbat da bi gehi bi?", good="Bi gehi bi lau da.", bad="Txakur berdea hegan.")
    client, settings = make_arena(control_rate=1.0, control_battles=[ctrl], control_fail_flag=2)
    h = reg(client, "zaindua" if pick_good else "arduragabea")
    engine = create_engine(settings.database_url)
    for _ in range(2):
        bid = client.post("/api/battles", headers=h).json()["battle_id"]
        client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False})
        with engine.connect() as conn:
            good = conn.execute(text("select control_good from battles where id = :b"), {"b": bid}).scalar_one()
        side = good if pick_good else ("model_b" if good == "model_a" else "model_a")
        assert client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": side, "language": side}).status_code == 200
    engine.dispose()
    flagged = client.get("/api/admin/flagged", headers={"X-Admin-Token": "admin-secret"}).json()
    assert [f["control_failures"] for f in flagged] == ([] if pick_good else [2])
    assert client.get("/api/leaderboard").json()["votes"] == 0     # control votes never reach the ratings


# ------------------------------------------------------------------------------------------------ finding 10
def test_consent_is_a_real_true_and_emails_are_printable(make_arena):
    client, _ = make_arena()
    for i, consent in enumerate(("yes", 1, "true", "1", 1.0, [True], None)):
        r = client.post("/api/participants", json={**PERSON, "username": f"baietz{i}", "consent": consent})
        assert r.status_code == 422, (consent, r.text)
    for i, email in enumerate(("a\u0001b@example.eus", "ab@exa\u007fmple.eus", "a\nb@example.eus", "a@b\u200bc.eus",
                               "ab@example.eus\r\n", "a b@example.eus", "@example.eus", "ab@", "a@b@c")):
        r = client.post("/api/participants", json={**PERSON, "username": f"posta{i}", "email": email})
        assert r.status_code == 422, (email, r.text)
    ok = client.post("/api/participants", json={**PERSON, "username": "postaona", "email": "itziar.äñ@example.eus"})
    assert ok.status_code == 201, ok.text


# ------------------------------------------------------------------------------------------------ finding 11
def test_login_time_does_not_tell_which_usernames_exist(live_arena):
    """A wrong password costs an argon2 verification; an unknown username now costs one too. Bound: over 7
    interleaved pairs, the median unknown-user log-in takes at least a third of the median wrong-password one
    (before: 0.002 s against 0.139 s, a seventieth)."""
    server = live_arena(rate_login_failures_per_username=1000)
    url = server.url
    assert httpx.post(url + "/api/participants", json={**PERSON, "username": "badago"}).status_code == 201
    known, unknown = [], []
    with httpx.Client(base_url=url, timeout=60) as c:
        c.post("/api/sessions", json={"username": "badago", "password": "berotzea"})   # warm up both paths
        c.post("/api/sessions", json={"username": "ez-dago", "password": "berotzea"})
        for i in range(7):
            for name, out in (("badago", known), (f"ez-dago-{i}", unknown)):
                t0 = time.perf_counter()
                assert c.post("/api/sessions", json={"username": name, "password": f"okerra-{i}"}).status_code == 401
                out.append(time.perf_counter() - t0)
    assert statistics.median(unknown) >= statistics.median(known) / 3, (known, unknown)
