"""The public leaderboard with few votes (#19): a minimum of battles per model and a weak prior keep it honest."""

from __future__ import annotations

import numpy as np


def _four_votes(client, h):
    for _ in range(4):
        bid = client.post("/api/battles", headers=h).json()["battle_id"]
        assert client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False}).status_code == 200
        assert client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "model_a", "language": "model_a"}).status_code == 200


def test_four_votes_stay_bounded_with_the_prior_and_explode_without_it(make_arena, reg):
    bounded, _ = make_arena(leaderboard_min_battles=0)
    _four_votes(bounded, reg(bounded, "ane"))
    board = bounded.get("/api/leaderboard").json()
    ratings = [r for dim in board["ratings"].values() for r in dim.values()]
    assert board["votes"] == 4 and board["prior_sd"] == 200 and ratings
    assert all(abs(r["rating"] - 1000) < 400 and 400 < r["ci_low"] and r["ci_high"] < 1600 for r in ratings)
    # the same votes with the plain MLE (the old leaderboard): ratings thousands of points away, as issue 19 saw
    plain, _ = make_arena(leaderboard_min_battles=0, leaderboard_prior_sd=None)
    _four_votes(plain, reg(plain, "ane"))
    wild = [r["rating"] for r in plain.get("/api/leaderboard").json()["ratings"]["overall"].values()]
    assert max(abs(x - 1000) for x in wild) > 1000


def test_models_wait_for_enough_battles_and_the_board_says_how_many_more(make_arena, reg):
    client, _ = make_arena(leaderboard_min_battles=3)
    _four_votes(client, reg(client, "jon"))
    board = client.get("/api/leaderboard").json()
    battles = {}
    for p in board["pending"]:
        assert p["needed"] == 3 - p["battles"] > 0
        battles[p["model"]] = p["battles"]
    for name, r in board["ratings"]["overall"].items():
        assert r["battles"] >= 3 and name not in battles
        battles[name] = r["battles"]
    assert sum(battles.values()) == 8 and set(battles) == {"tiny-a", "tiny-b", "tiny-c"}
    assert sorted(r["rank"] for r in board["ratings"]["overall"].values())[0] == 1


def test_the_prior_barely_moves_well_measured_ratings():
    from latxa.components.arena.ratings import compute_ratings, votes_from_records

    rng = np.random.default_rng(0)
    strength = {"a": 100.0, "b": 0.0, "c": -80.0, "d": 30.0}
    names = list(strength)
    records = []
    for _ in range(2000):
        x, y = rng.choice(names, 2, replace=False)
        p = 1 / (1 + 10 ** ((strength[y] - strength[x]) / 400))
        w = "model_a" if rng.random() < p else "model_b"
        records.append({"model_a": x, "model_b": y, "winner": w, "winner_content": w, "winner_language": w})
    votes = votes_from_records(records)
    plain = compute_ratings(votes, bootstrap=20)["ratings"]["overall"]
    prior = compute_ratings(votes, bootstrap=20, prior_sd=200)["ratings"]["overall"]
    assert max(abs(plain[m]["rating"] - prior[m]["rating"]) for m in names) < 2.0
