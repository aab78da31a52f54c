"""The paper's rating convention (``--convention paper``): the study notebook's procedure, step by step.

1. Bradley-Terry as the public Chatbot Arena notebook fits it: per (resampled) set of battles, the models in it
   (sorted), W[i, j] = 2 * wins of i over j (either seat) + ties between them, two weighted rows per ordered pair,
   ``LogisticRegression(fit_intercept=False, penalty=None, tol=1e-6)``, rating = 400 * coef + 1000.
2. 100 bootstrap rounds: NumPy's legacy generator seeded with 42 at the start of every leaderboard, each round
   ``choice(n, n)`` row indices (what ``DataFrame.sample(frac=1, replace=True)`` draws from the global generator).
3. score = the mean of a model's bootstrap ratings, truncated to an integer (no full-data fit);
   the 90 % interval "+a/-b" = (q95 - q50, q50 - q05) of the bootstrap ratings, each truncated;
   rank = ``rank(method="max", ascending=False)`` of the integer score (ties share the larger rank).

Battles are taken in the order given (the notebook sorts the published votes by timestamp first); the same
seed and order give the same numbers as the notebook.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

ROUNDS = 100
SEED = 42
SCALE, BASE, INIT_RATING = 400, 10, 1000
OUTCOME_CODE = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}


def _unpenalised() -> dict:
    """``penalty=None`` (the notebook's); scikit-learn 1.8 spells it ``C=inf`` (the same fit, bit for bit)."""
    import sklearn

    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return {"C": math.inf} if (major, minor) >= (1, 8) else {"penalty": None}


_UNPENALISED: dict = {}


def mle_elo(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """One fit. ``a``/``b``: indices into ``names`` (sorted); ``outcome``: 0 a wins, 1 b wins, 2 tie.
    Self-pairs (a == b, as when grouped models meet) are counted but never become rows, as in the notebook."""
    from sklearn.linear_model import LogisticRegression

    if not _UNPENALISED:
        _UNPENALISED.update(_unpenalised())
    present = np.unique(np.concatenate([a, b]))
    p = present.shape[0]
    pos = np.full(len(names), -1)
    pos[present] = np.arange(p)
    ra, rb = pos[a], pos[b]
    count = np.zeros((3, p, p))
    np.add.at(count, (outcome, ra, rb), 1.0)
    ties = count[2] + count[2].T
    w = count[0] * 2 + count[1].T * 2 + ties
    ii, jj = np.nonzero(~np.eye(p, dtype=bool))     # row-major: the notebook's double loop order
    rows = ii.shape[0]
    x = np.zeros((2 * rows, p))
    r = np.arange(rows)
    for off in (0, 1):
        x[2 * r + off, ii] = math.log(BASE)
        x[2 * r + off, jj] = -math.log(BASE)
    y = np.tile([1.0, 0.0], rows)
    weight = np.empty(2 * rows)
    weight[0::2] = w[ii, jj]
    weight[1::2] = w[jj, ii]
    lr = LogisticRegression(fit_intercept=False, tol=1e-6, **_UNPENALISED)
    lr.fit(x, y, sample_weight=weight)
    rating = SCALE * lr.coef_[0] + INIT_RATING
    return {names[m]: float(rating[k]) for k, m in enumerate(present)}


def _codes(model_a: Sequence[str], model_b: Sequence[str], winner: Sequence[str]):
    names = sorted(set(model_a) | set(model_b))
    index = {n: i for i, n in enumerate(names)}
    a = np.fromiter((index[m] for m in model_a), dtype=np.int64, count=len(model_a))
    b = np.fromiter((index[m] for m in model_b), dtype=np.int64, count=len(model_b))
    o = np.fromiter((OUTCOME_CODE[w] for w in winner), dtype=np.int64, count=len(winner))
    return names, a, b, o


def bootstrap(model_a: Sequence[str], model_b: Sequence[str], winner: Sequence[str], rounds: int = ROUNDS,
              seed: int = SEED, progress=None):
    """A (rounds x models) DataFrame of bootstrap ratings (NaN where a model is absent from a round)."""
    import pandas as pd

    names, a, b, o = _codes(model_a, model_b, winner)
    rng = np.random.RandomState(seed)
    n = a.shape[0]
    rows = []
    for _ in range(rounds):
        idx = rng.choice(n, size=n, replace=True)
        rows.append(mle_elo(a[idx], b[idx], o[idx], names))
        if progress is not None:
            progress.update(1)
    return pd.DataFrame(rows, columns=names)


def leaderboard(model_a: Sequence[str], model_b: Sequence[str], winner: Sequence[str], rounds: int = ROUNDS,
                seed: int = SEED, progress=None) -> dict[str, dict]:
    """{model: {rating, ci, ci_plus, ci_minus, rank, battles}} best first, in the paper's convention."""
    import pandas as pd

    if len(model_a) == 0:
        return {}
    boots = bootstrap(model_a, model_b, winner, rounds, seed, progress)
    score = boots.mean(axis=0, skipna=True).astype(int)
    q05, q50, q95 = (boots.quantile(q) for q in (0.05, 0.50, 0.95))
    rank = score.rank(method="max", ascending=False)
    battles = pd.Series(list(model_a) + list(model_b)).value_counts()
    order = sorted(score.index, key=lambda m: (-score[m], -q50[m], m))
    out = {}
    for m in order:
        plus, minus = int(q95[m] - q50[m]), int(q50[m] - q05[m])
        out[m] = {"rating": int(score[m]), "ci": f"+{plus}/-{minus}", "ci_plus": plus, "ci_minus": minus,
                  "rank": int(rank[m]), "battles": int(battles.get(m, 0))}
    return out


def paper_ratings(records: Iterable[dict], rounds: int = ROUNDS, seed: int = SEED, progress: bool = False) -> dict:
    """The three dimensions of the paper's arena table (global = ``winner``, content, language)."""
    from latxa.components.arena.ratings import DIMENSIONS

    records = list(records)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=rounds * len(DIMENSIONS), desc="bootstrap (paper)", unit="round")
    out: dict = {"convention": "paper", "bootstrap": rounds, "seed": seed, "ci": 0.90, "votes": len(records),
                 "ratings": {}}
    try:
        for dim, key in DIMENSIONS.items():
            out["ratings"][dim] = leaderboard([r["model_a"] for r in records], [r["model_b"] for r in records],
                                              [r[key] for r in records], rounds, seed, bar)
    finally:
        if bar is not None:
            bar.close()
    return out
