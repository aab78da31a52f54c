"""`--convention paper` against a direct implementation of the study notebook's procedure (#20)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # 100 bootstrap rounds x 3 dimensions, twice, and the CLI once more

SUBSET = ("exp_2_101", "exp_1_101", "exp_0_011", "Llama-3.1-8B-Instruct", "gpt-4o", "claude-3-5-sonnet-20241022")


def notebook_mle_elo(df):
    """The public arena notebook's compute_mle_elo, as the study's scoring.py runs it (pandas pivot tables)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from latxa.components.arena.paper import _unpenalised

    names = np.unique([*df.model_a, *df.model_b])
    base = pd.DataFrame(0, index=names, columns=names)
    piv = lambda sub: (base + pd.pivot_table(sub, index="model_a", columns="model_b", aggfunc="size",  # noqa: E731
                                             fill_value=0)).fillna(0)
    a_win, b_win = piv(df[df.winner == "model_a"]), piv(df[df.winner == "model_b"])
    ties = df[df.winner.isin(["tie", "tie (bothbad)"])]
    tie = pd.DataFrame(0, index=names, columns=names) if len(ties) == 0 else piv(ties)
    if len(ties):
        tie = tie + tie.T
    win = a_win * 2 + b_win.T * 2 + tie
    idx = pd.Series(np.arange(len(win.index)), index=win.index)
    p = len(idx)
    x, y, w = np.zeros([p * (p - 1) * 2, p]), np.zeros(p * (p - 1) * 2), []
    row = 0
    for ma in win.index:
        for mb in win.columns:
            if ma == mb:
                continue
            x[row, idx[ma]], x[row, idx[mb]] = math.log(10), -math.log(10)
            y[row] = 1.0
            w.append(win.loc[ma, mb])
            x[row + 1, idx[ma]], x[row + 1, idx[mb]] = math.log(10), -math.log(10)
            y[row + 1] = 0.0
            w.append(win.loc[mb, ma])
            row += 2
    lr = LogisticRegression(fit_intercept=False, tol=1e-6, **_unpenalised())
    lr.fit(x[:row], y[:row], sample_weight=w)
    return pd.Series(400 * lr.coef_[0] + 1000, index=idx.index).sort_values(ascending=False)


def notebook_leaderboard(df):
    """get_leaderboard_df + process_arena_results + arena_to_pretty_table: {model: (score, "90% CI", rank)}."""
    import pandas as pd

    np.random.seed(42)
    rows = [notebook_mle_elo(df.sample(frac=1.0, replace=True)) for _ in range(100)]
    boot = pd.DataFrame(rows)
    boot = boot[boot.median().sort_values(ascending=False).index]
    score = boot.T.mean(axis=1, skipna=True).astype(int)
    ci = boot.apply(lambda c: "/".join(("+" + str(int(c.quantile(0.95) - c.quantile(0.50))),
                                        "-" + str(int(c.quantile(0.50) - c.quantile(0.05))))), axis=0)
    rank = score.rank(method="max", ascending=False)
    return {m: (int(score[m]), ci[m], int(rank[m])) for m in score.index}


@pytest.fixture(scope="module")
def votes():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("serving_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [r for r in mod.synthetic_study_votes(n=3000, seed=5) if r["model_a"] in SUBSET and r["model_b"] in SUBSET]
    return sorted(rows, key=lambda r: r["timestamp"])   # the notebook sorts by timestamp before fitting


def test_paper_convention_equals_the_notebook_procedure(votes, tmp_path, cli):
    import pandas as pd

    from latxa.components.arena.paper import paper_ratings

    assert len(votes) > 150 and {r["winner"] for r in votes} == {"model_a", "model_b", "tie"}
    ours = paper_ratings(votes)
    df = pd.DataFrame(votes)
    for dim, key in (("overall", "winner"), ("content", "winner_content"), ("language", "winner_language")):
        frame = df.drop(columns=["winner"]).rename(columns={key: "winner"}) if key != "winner" else df
        expected = notebook_leaderboard(frame)
        got = {m: (r["rating"], r["ci"], r["rank"]) for m, r in ours["ratings"][dim].items()}
        assert got == expected, dim
        assert all(re.fullmatch(r"\+\d+/-\d+", r["ci"]) for r in ours["ratings"][dim].values())
    # bounded by construction: the scores average to about 1000 (truncation aside)
    assert abs(np.mean([r["rating"] for r in ours["ratings"]["overall"].values()]) - 1000) < 1
    # the CLI on the published files gives the same numbers
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in reversed(votes)), encoding="utf-8")   # any file order
    out = cli("arena", "ratings", "--votes", str(path), "--convention", "paper", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["convention"] == "paper" and doc["bootstrap"] == 100 and doc["seed"] == 42
    assert doc["ratings"] == json.loads(json.dumps(ours["ratings"]))


def test_a_different_seed_or_order_changes_the_draws(votes):
    from latxa.components.arena.paper import leaderboard

    a, b, w = ([r[k] for r in votes] for k in ("model_a", "model_b", "winner"))
    base = leaderboard(a, b, w, rounds=20)
    assert leaderboard(a, b, w, rounds=20) == base
    assert leaderboard(a, b, w, rounds=20, seed=7) != base
    assert leaderboard(a[::-1], b[::-1], w[::-1], rounds=20) != base
