"""Careless voters are flagged when their votes are written, not when an admin opens a page (#20)."""

from __future__ import annotations

import time

ADMIN = {"X-Admin-Token": "admin-secret"}


def _vote(client, h, side_of):
    b = client.post("/api/battles", headers=h).json()
    if not b["turns"]:
        r = client.post(f"/api/battles/{b['battle_id']}/messages", headers=h, json={"content": "Kaixo", "stream": False})
        assert r.status_code == 200
    side = side_of(b)
    r = client.post(f"/api/battles/{b['battle_id']}/vote", headers=h, json={"content": side, "language": side})
    assert r.status_code == 200, r.text
    return b, r.json()


def test_failing_control_battles_drops_votes_from_the_leaderboard_without_any_admin_call(make_arena, reg):
    from latxa.serving.registry import ControlBattle

    ctrl = ControlBattle(prompt="Zenbat da bi gehi bi?", good="Bi gehi bi lau da.", bad="Txakur berdea hegan.")
    client, settings = make_arena(control_rate=0.0, control_battles=[ctrl], control_fail_flag=2,
                                  leaderboard_min_battles=0)
    careless = reg(client, "arduragabea")
    for _ in range(3):   # three real votes first
        _vote(client, careless, lambda _b: "model_a")
    assert client.get("/api/leaderboard").json()["votes"] == 3
    arena = client.app.state.arena
    arena.settings.control_rate = 1.0   # now every battle is a control battle; fail two of them
    for _ in range(2):
        _vote(client, careless, lambda b: "model_b" if b["turns"][0]["a"] == ctrl.good else "model_a")
    board = client.get("/api/leaderboard").json()   # no admin endpoint was called
    assert board["votes"] == 0
    from latxa.serving.arena.db import Participant, open_db

    _, sf = open_db(settings.database_url)
    with sf() as s:
        p = s.query(Participant).filter_by(username="arduragabea").one()
        assert p.flagged and p.flag_reasons == "control_failures"
    # the admin view only reads: it lists the participant and changes nothing
    flagged = client.get("/api/admin/flagged", headers=ADMIN).json()
    assert [f["username"] for f in flagged] == ["arduragabea"] and flagged[0]["control_failures"] == 2


def test_the_outlier_test_runs_after_votes_arrive_not_on_an_admin_get(make_arena, reg):
    client, _ = make_arena(outlier_check_seconds=0.2, outlier_alpha=0.05, leaderboard_min_battles=0)
    honest = [reg(client, f"zintzoa{i}") for i in range(4)]
    contrarian = reg(client, "kontrakoa")
    arena = client.app.state.arena
    arena.sampler.sample = lambda *_a, **_k: ("tiny-a", "tiny-b")   # one pair: a clear consensus
    for h in honest:
        for _ in range(6):
            _vote(client, h, lambda _b: "model_a")
    for _ in range(10):
        _vote(client, contrarian, lambda _b: "model_b")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and client.get("/api/leaderboard").json()["votes"] != 24:
        time.sleep(0.2)
    assert client.get("/api/leaderboard").json()["votes"] == 24   # the contrarian's 10 votes dropped
    flagged = client.get("/api/admin/flagged", headers=ADMIN).json()
    assert [f["username"] for f in flagged] == ["kontrakoa"] and flagged[0]["reasons"] == ["outlier"]
