"""Identities must not leak through timing (issue 17, finding 1).

Each local model serves one generation at a time, so a model kept busy shows up as the side of a battle that stalls.
The attack, through both routes the tests can reach: keep one model busy (through /v1 with an API key, or through
another arena battle whose two models the attacker learns later), open a battle, and guess that the side whose first
answer arrives later (or finishes later) is the busy model.

The bound: 20 battles that each have exactly one busy side. If the arena hides which side stalls, each guess is
right with probability 1/2 independently of the others (the sides are drawn at random), so the number of right
guesses k is Binomial(20, 1/2), and the test requires 5 <= k <= 15 for every observable: a fair coin fails that
with probability 2 * P(k >= 16) = 1.2 %. The arena's pair sampler is seeded and the battles' answers are greedy
where the attacker reads them to the end, so a run gives the same k every time (no flakiness): with lockstep the
first-answer guess is always side b, right whenever the sampler put the busy model there. Through /v1 the busy
model alternates between the two, so a difference between the models themselves (one's greedy answer has fewer
events and always ends first) is right exactly half the time and cannot pass for a timing leak. The old behaviour
identified the busy model in every battle: k = 20 for both routes.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

TRIALS = 20
LOW, HIGH = 5, 15
HOLD_S = 1.0   # how long the attacker keeps the model busy once the battle has started


def _models_of(db_url: str, bid: str) -> tuple[str, str]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        row = conn.execute(text("select model_a, model_b from battles where id = :b"), {"b": bid}).one()
    engine.dispose()
    return row[0], row[1]


def _attacker(client: httpx.Client) -> dict:
    """Register the attacking participant; the headers of its requests."""
    token = client.post("/api/participants", json={"username": "erasotzailea", "password": "pasahitza-8",
                                                   "consent": True, "basque_level": "C1",
                                                   "education": "master"}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _open(client: httpx.Client, path: str, body: dict, headers: dict):
    resp = client.send(client.build_request("POST", path, json=body, headers=headers), stream=True)
    assert resp.status_code == 200, resp.read()
    return resp, resp.iter_lines()


def _read_battle(lines, until_first_deltas: bool) -> list[tuple[float, dict]]:
    """(arrival time, event) for the battle's SSE events; stops once both sides have sent text when asked to."""
    got: list[tuple[float, dict]] = []
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        got.append((time.monotonic(), ev))
        sides = {e.get("side") for _, e in got if e["type"] in ("delta", "done", "error")}
        if ev["type"] == "end" or (until_first_deltas and sides >= {"a", "b"}):
            break
    return got


def _guesses(events: list[tuple[float, dict]]) -> dict[str, str]:
    """The attacker's guess of the busy side from each observable: the side whose first answer came later (by
    arrival time, ties broken by stream order), the side that finished later, the side whose error came later."""
    def last_to(kind: tuple[str, ...]) -> str | None:
        first: dict[str, tuple[float, int]] = {}
        for i, (t, ev) in enumerate(events):
            if ev["type"] in kind and ev.get("side") in ("a", "b") and ev["side"] not in first:
                first[ev["side"]] = (t, i)
        if len(first) < 2:
            return next(iter({"a", "b"} - set(first)), None) if first else None
        return max(first, key=lambda s: first[s])

    out = {"first_answer": last_to(("delta", "error"))}
    finished = last_to(("done", "error"))
    if finished:
        out["finish"] = finished
    return out


def _score(trials: list[tuple[dict[str, str], str]]) -> dict[str, int]:
    keys = {k for guesses, _ in trials for k in guesses}
    return {k: sum(1 for guesses, busy in trials if guesses.get(k) == busy) for k in keys}


@pytest.mark.slow
def test_a_model_kept_busy_through_v1_does_not_show(live_arena, long_models, api_key, monkeypatch):
    """Route 1: /v1. Without the key it cannot be used at all; with it, the busy model still does not show."""
    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import GenerationSettings

    # greedy answers: each battle's answers (and so how many events each side sends) are the same every run
    models = [m.model_copy(update={"generation": GenerationSettings(max_tokens=8, temperature=0)})
              for m in long_models[:2]]
    server = live_arena(models=models, backends=LocalBackends(models))

    def busy_body(name: str) -> dict:
        return {"model": name, "stream": True, "max_tokens": 8000,
                "messages": [{"role": "user", "content": "Kontatu istorio luze bat."}]}

    keyless = httpx.post(server.url + "/v1/chat/completions", json=busy_body("tiny-a"), timeout=30)
    assert keyless.status_code == 401   # an attacker without the key cannot keep anything busy this way
    trials = []
    with httpx.Client(base_url=server.url, timeout=120) as arena, httpx.Client(base_url=server.url, timeout=120) as v1:
        h = _attacker(arena)
        for i in range(TRIALS):
            # the busy model alternates, so what tells the two models apart anyway (their answers: how long,
            # how many events) is right about "the busy one" exactly half the time; only busyness could do better
            busy_name = models[i % 2].name
            busy, busy_lines = _open(v1, "/v1/chat/completions", busy_body(busy_name),
                                     {"Authorization": f"Bearer {api_key}"})
            for _ in range(3):
                next(busy_lines)                       # the busy model is generating
            bid = arena.post("/api/battles", headers=h).json()["battle_id"]
            resp, lines = _open(arena, f"/api/battles/{bid}/messages", {"content": f"Kaixo {i}"}, h)
            release = threading.Timer(HOLD_S, busy.close)
            release.start()
            events = _read_battle(lines, until_first_deltas=False)
            release.join()
            resp.close()
            a, b = _models_of(server.cfg.arena.database_url, bid)
            trials.append((_guesses(events), "a" if a == busy_name else "b"))
    score = _score(trials)
    print(f"right guesses of the busy side, of {TRIALS}: {score}")
    assert set(score) >= {"first_answer", "finish"}
    for observable, k in score.items():
        assert LOW <= k <= HIGH, f"{observable}: the busy model was identified in {k} of {TRIALS} battles"


@pytest.mark.slow
def test_a_model_kept_busy_by_another_battle_does_not_show(live_arena, long_models, long_backends):
    """Route 2: the arena alone. Battle 1's turn keeps its two models busy (the attacker learns them by voting on
    it later); battle 2 shares exactly one of them."""
    server = live_arena(models=long_models, backends=long_backends)
    db = server.cfg.arena.database_url
    trials = []
    with httpx.Client(base_url=server.url, timeout=120) as c1, httpx.Client(base_url=server.url, timeout=120) as c2:
        h = _attacker(c1)
        attempts = 0
        while len(trials) < TRIALS:
            attempts += 1
            assert attempts < 5 * TRIALS
            first = c1.post("/api/battles", headers=h).json()["battle_id"]
            second = c2.post("/api/battles", headers=h).json()["battle_id"]
            busy = set(_models_of(db, first))
            a, b = _models_of(db, second)
            if len(busy & {a, b}) != 1:
                continue                               # both or neither side busy: nothing to tell apart
            r1, lines1 = _open(c1, f"/api/battles/{first}/messages", {"content": "Kontatu istorio luze bat."}, h)
            _read_battle(lines1, until_first_deltas=True)   # battle 1's models are generating
            r2, lines2 = _open(c2, f"/api/battles/{second}/messages", {"content": "Kaixo"}, h)
            release = threading.Timer(HOLD_S, r1.close)
            release.start()
            events = _read_battle(lines2, until_first_deltas=True)
            release.join()
            r2.close()
            trials.append((_guesses(events), "a" if a in busy else "b"))
            time.sleep(0.3)   # both streams are closed; let the models stop before the next trial
    score = _score(trials)
    print(f"right guesses of the busy side, of {TRIALS}: {score}")
    assert "first_answer" in score
    for observable, k in score.items():
        assert LOW <= k <= HIGH, f"{observable}: the busy model was identified in {k} of {TRIALS} battles"
