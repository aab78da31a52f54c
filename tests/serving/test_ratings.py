"""Ratings on real human judgments (TruthfulQA-eu manual review): BT, bootstrap CIs, rank rule, CLI."""

from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
JUDGMENTS = REPO / "data" / "human" / "truthfulqa_eu_judgments.jsonl"


def derived_votes() -> list[dict]:
    """Pairwise battles from real judgments: the truthful answer beats the untruthful one, else a tie."""
    by_q = collections.defaultdict(list)
    for line in JUDGMENTS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        q, model = row["id"].split("__", 1)
        by_q[q].append((model, row["truthfulness"] == "yes", row["informativeness"] == "yes"))
    votes = []
    for answers in by_q.values():
        for (ma, ta, ia), (mb, tb, ib) in itertools.combinations(answers, 2):
            w = "tie" if ta == tb else ("model_a" if ta else "model_b")
            wl = "tie" if ia == ib else ("model_a" if ia else "model_b")
            votes.append({"model_a": ma, "model_b": mb, "winner": w, "winner_content": w, "winner_language": wl})
    return votes


@pytest.fixture(scope="module")
def votes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("votes") / "tqa.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in derived_votes()), encoding="utf-8")
    return path


def test_bt_matches_logistic_regression_and_real_order(votes_file):
    from latxa.components.arena.ratings import compute_ratings, fit_bt, fit_bt_sklearn, load_votes_jsonl

    votes = load_votes_jsonl(votes_file)
    assert len(votes) == 300
    fast, base = fit_bt(votes), fit_bt_sklearn(votes)
    assert np.abs(fast - base).max() < 0.5
    assert abs(fast.mean() - 1000) < 1e-6
    # the judgments: gemma-2-27b truthful 63/100, Llama-3-70B 49, Llama-3-8B 32 -> that order
    res = compute_ratings(votes, bootstrap=200, seed=3)
    overall = res["ratings"]["overall"]
    assert list(overall) == ["gemma-2-27b-it", "Meta-Llama-3-70B-Instruct", "Meta-Llama-3-8B-Instruct"]
    for r in overall.values():
        assert r["ci_low"] <= r["rating"] <= r["ci_high"] and r["battles"] == 200
    assert [r["rank"] for r in overall.values()] == [1, 2, 3]  # the three CIs do not overlap on this data
    again = compute_ratings(votes, bootstrap=200, seed=3)
    assert again["ratings"] == res["ratings"]
    other_seed = compute_ratings(votes, bootstrap=200, seed=4)
    assert other_seed["ratings"]["overall"] != overall
    # like-for-like: the batched bootstrap on index resamples equals per-round logistic-regression refits
    from latxa.components.arena.ratings import bootstrap_bt, bootstrap_bt_sklearn

    diff = np.abs(bootstrap_bt(votes, "content", 4, 9, resample="indices") - bootstrap_bt_sklearn(votes, "content", 4, 9))
    assert diff.max() < 0.5


def test_ties_half_rank_rule_and_elo():
    from latxa.components.arena.ratings import compute_ratings, online_elo, ranks, votes_from_records

    ties = [{"model_a": "x", "model_b": "y", "winner": "tie", "winner_content": "tie", "winner_language": "tie"}] * 10
    res = compute_ratings(votes_from_records(ties), bootstrap=20, seed=0)
    assert all(abs(r["rating"] - 1000) < 1e-6 for r in res["ratings"]["overall"].values())
    # one win + two ties == (1 + 1) / 3 win share: rating gap = 400 * log10(2)
    mixed = [{"model_a": "x", "model_b": "y", "winner": w, "winner_content": w, "winner_language": w}
             for w in ("model_a", "tie", "tie")]
    r = compute_ratings(votes_from_records(mixed), bootstrap=5, seed=0)["ratings"]["overall"]
    assert abs((r["x"]["rating"] - r["y"]["rating"]) - 400 * np.log10(2)) < 0.01
    lo, hi = np.array([1050, 990, 900.0]), np.array([1100, 1060, 980.0])
    assert ranks(lo, hi).tolist() == [1, 1, 3]
    elo = online_elo(votes_from_records(mixed[:1] * 5))
    assert elo[0] > 1000 > elo[1] and abs(elo.sum() - 2000) < 1e-9


def test_votes_file_errors_name_file_and_line(tmp_path):
    from latxa.components.arena.ratings import load_votes_jsonl
    from latxa.errors import LatxaError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "x", "model_b": "y", "winner": "tie", "winner_content": "tie", "winner_language": "tie"}\n'
                   '\n{"model_a": "x", "model_b": "y", "winner": "draw", "winner_content": "tie", "winner_language": "tie"}\n')
    with pytest.raises(LatxaError, match=r"bad.jsonl:3: winner must be one of"):
        load_votes_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(LatxaError, match=r"bad.jsonl:1: malformed JSON \(Expecting property name .* at column 2\)\.$"):
        load_votes_jsonl(bad)


def test_hostile_votes_lines_are_one_sentence(cli, tmp_path, hostile_json, one_sentence):
    """A line nested 100,000 deep or with a 5000-digit integer was a RecursionError / ValueError traceback."""
    from latxa.components.arena.ratings import load_votes_jsonl
    from latxa.errors import LatxaError

    vote = json.dumps({"model_a": "x", "model_b": "y", "winner": "tie", "winner_content": "tie", "winner_language": "tie"})
    for line, reason in hostile_json.items():
        bad = tmp_path / "votes.jsonl"
        bad.write_text(f"{vote}\n\n{line}\n{vote}\n")
        res = cli("arena", "ratings", "--votes", str(bad))   # the published-format reader
        one_sentence(res.returncode, res.stderr, f"{bad}:3", reason)
        with pytest.raises(LatxaError, match=rf"votes.jsonl:3: .*{reason}"):
            load_votes_jsonl(bad)


def test_cli_ratings_json_and_plots(cli, votes_file, tmp_path):
    out = cli("arena", "ratings", "--votes", str(votes_file), "--format", "json", "--bootstrap", "100", "--seed", "1",
              "--plots", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc["ratings"]) == {"overall", "content", "language"}
    for dim in doc["ratings"].values():
        for r in dim.values():
            assert set(r) == {"rating", "ci_low", "ci_high", "rank", "battles"}
    assert (tmp_path / "plots" / "ratings.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "win_rate.png").stat().st_size > 1000
    missing = cli("arena", "ratings", "--votes", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl: no such votes file" in missing.stderr
    assert "Example:" in cli("arena", "ratings", "--help").stdout


def test_cli_ratings_from_the_arena_database_skip_flagged_voters(cli, make_arena, reg):
    from sqlalchemy import update

    from latxa.serving.arena.db import Participant, open_db

    client, settings = make_arena()
    voters = {name: reg(client, name) for name in ("itziar", "mikel")}
    cast = {}
    for name, h in voters.items():
        for winner in ("model_a", "tie"):
            bid = client.post("/api/battles", headers=h).json()["battle_id"]
            client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False})
            v = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": winner, "language": winner})
            assert v.status_code == 200, v.text
            cast.setdefault(name, []).append(v.json())
    _, sf = open_db(settings.database_url)
    with sf() as s:   # an admin flags mikel: his votes must drop out of the ratings
        s.execute(update(Participant).where(Participant.username == "mikel").values(flagged=True))
        s.commit()
    res = cli("arena", "ratings", "--db", settings.database_url, "--format", "json", "--bootstrap", "20", "--seed", "0")
    assert res.returncode == 0, res.stderr
    overall = json.loads(res.stdout)["ratings"]["overall"]
    expected = collections.Counter(m for v in cast["itziar"] for m in v["models"].values())
    assert {m: r["battles"] for m, r in overall.items()} == dict(expected)
