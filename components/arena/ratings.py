"""Arena ratings (our convention): Bradley-Terry MLE (ties count half) with bootstrap CIs, online Elo, win rates.

The paper's convention (100 rounds, seed 42, bootstrap-mean scores, 90 % intervals) is
:mod:`latxa.components.arena.paper`.

Ratings are on the 400-point scale (P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400))) with the mean
rating anchored at 1000. The fast path aggregates votes into per-pair counts, draws all bootstrap rounds at
once as multinomial resamples of the (pair, outcome) cells, and fits every round together with a batched
Newton solver; it minimises exactly the objective of a per-round logistic-regression refit (the public
Chatbot Arena approach), which `fit_bt_sklearn` implements as the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from latxa.errors import LatxaError
from latxa.jsonl import iter_lines

SCALE = 400.0
ANCHOR = 1000.0
OUTCOMES = ("model_a", "model_b", "tie")
DIMENSIONS = {"overall": "winner", "content": "winner_content", "language": "winner_language"}
RIDGE = 1e-6  # same L2 as LogisticRegression(C=1e6) in the baseline; keeps all-win models finite


def prior_ridge(prior_sd: float | None) -> float:
    """The L2 weight of a Gaussian prior N(1000, prior_sd^2) on every rating (``None``: the plain MLE).

    On the natural-log strength scale a rating sd of ``prior_sd`` points is ``prior_sd * ln(10) / 400``; the
    penalty is ``beta^2 / (2 sd^2)``. With few votes the ratings stay within a few prior sds of 1000; with
    hundreds of battles per model the prior moves them by well under a point.
    """
    if prior_sd is None:
        return RIDGE
    if prior_sd <= 0:
        raise LatxaError("the prior's standard deviation must be positive (rating points, e.g. 200).")
    sd = prior_sd * math.log(10) / SCALE
    return 1.0 / (sd * sd)


class VotesFileError(LatxaError):
    """A votes file that cannot be read."""


@dataclass
class Votes:
    """Votes as integer arrays: model indices and outcome codes per dimension (0 a wins, 1 b wins, 2 tie)."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.a.shape[0])


def votes_from_records(records: Iterable[dict], source: str = "<votes>", lines: list[int] | None = None) -> Votes:
    """Votes in the published schema; errors name ``source:line`` (line = position, or ``lines[pos]``)."""
    names: dict[str, int] = {}
    a, b = [], []
    out: dict[str, list[int]] = {d: [] for d in DIMENSIONS}
    for pos, rec in enumerate(records):
        i = lines[pos] if lines else pos + 1
        try:
            ma, mb = rec["model_a"], rec["model_b"]
        except (KeyError, TypeError):
            raise VotesFileError(f"{source}:{i}: a vote needs model_a and model_b.") from None
        if not isinstance(ma, str) or not isinstance(mb, str) or ma == mb:
            raise VotesFileError(f"{source}:{i}: model_a and model_b must be two different model names.")
        for dim, key in DIMENSIONS.items():
            val = rec.get(key)
            if val is None and dim == "overall":
                val = derive_winner(rec.get("winner_content"), rec.get("winner_language"), None)
            if val not in OUTCOMES:
                raise VotesFileError(f"{source}:{i}: {key} must be one of model_a, model_b, tie (got {val!r}).")
            out[dim].append(OUTCOMES.index(val))
        a.append(names.setdefault(ma, len(names)))
        b.append(names.setdefault(mb, len(names)))
    return Votes(list(names), np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64),
                 {d: np.asarray(v, dtype=np.int8) for d, v in out.items()})


def load_votes_jsonl(path: str | Path) -> Votes:
    path = Path(path)
    if not path.is_file():
        raise VotesFileError(f"{path}: no such votes file.")

    records, lines = [], []
    with path.open(encoding="utf-8") as fh:
        for n, record in iter_lines(fh, str(path), VotesFileError):
            records.append(record)
            lines.append(n)
    return votes_from_records(records, str(path), lines)


def derive_winner(content: str | None, language: str | None, overall: str | None) -> str | None:
    """The reference arena's rule: content if content and language agree, else the overall answer.

    When overall was not asked (older rows), the reference falls back to content unless content is a tie,
    then to language.
    """
    if content == language:
        return content
    if overall is None:
        return content if content != "tie" else language
    return overall


# ----------------------------------------------------------------------------- Bradley-Terry
def pair_cells(votes: Votes, dim: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (i, j) pairs with i < j and counts [i wins, j wins, tie] per pair."""
    k = len(votes.models)
    o = votes.outcome[dim]
    i = np.minimum(votes.a, votes.b)
    j = np.maximum(votes.a, votes.b)
    swapped = votes.a > votes.b
    # outcome from the (i, j) point of view: 0 i wins, 1 j wins, 2 tie
    oc = np.where(o == 2, 2, np.where(swapped, 1 - o, o))
    key = (i * k + j) * 3 + oc
    counts = np.bincount(key, minlength=k * k * 3).reshape(k * k, 3)
    pairs = np.nonzero(counts.sum(1))[0]
    return pairs // k, pairs % k, counts[pairs].astype(np.float64)


def _newton_bt(pi: np.ndarray, pj: np.ndarray, wins: np.ndarray, games: np.ndarray, k: int,
               ridge: float = RIDGE, iters: int = 100, tol: float = 1e-8,
               start: np.ndarray | None = None) -> np.ndarray:
    """Batched MLE. wins/games: (R, P) with wins = i's wins + half the ties. Returns (R, k) natural-log strengths."""
    r = wins.shape[0]
    beta = np.zeros((r, k)) if start is None else np.broadcast_to(start, (r, k)).copy()
    inc = np.zeros((pi.shape[0], k))               # signed incidence: d_ij = beta_i - beta_j
    rows = np.arange(pi.shape[0])
    inc[rows, pi] = 1.0
    inc[rows, pj] = -1.0
    absinc = np.abs(inc)
    diag = np.arange(k)
    h = np.empty((r, k, k))
    for _ in range(iters):
        d = beta @ inc.T
        p = 1.0 / (1.0 + np.exp(-d))
        grad = (wins - games * p) @ inc - ridge * beta
        w = games * p * (1.0 - p)
        # Hessian of the negative log-likelihood: inc^T diag(w) inc (pairs are unique, so plain assignment)
        h.fill(0.0)
        h[:, pi, pj] = -w
        h[:, pj, pi] = -w
        h[:, diag, diag] = w @ absinc + ridge
        step = np.linalg.solve(h, grad[..., None])[..., 0]
        beta += step
        if np.abs(step).max() < tol:
            break
    return beta


def to_scale(beta: np.ndarray) -> np.ndarray:
    centred = beta - beta.mean(axis=-1, keepdims=True)
    return ANCHOR + SCALE / math.log(10) * centred


def fit_bt(votes: Votes, dim: str = "overall", ridge: float = RIDGE) -> np.ndarray:
    pi, pj, c = pair_cells(votes, dim)
    wins = (c[:, 0] + 0.5 * c[:, 2])[None]
    games = c.sum(1)[None]
    return to_scale(_newton_bt(pi, pj, wins, games, len(votes.models), ridge=ridge))[0]


def bootstrap_bt(votes: Votes, dim: str, rounds: int, seed: int, chunk: int = 250,
                 resample: str = "multinomial", ridge: float = RIDGE) -> np.ndarray:
    """(rounds, k) bootstrap ratings: each round resamples the votes with replacement (as cell counts).

    ``resample="multinomial"`` draws the cell counts directly (fastest); ``"indices"`` draws vote indices exactly
    like :func:`bootstrap_bt_sklearn` (same seed -> the same resamples), for a like-for-like comparison.
    """
    pi, pj, c = pair_cells(votes, dim)
    n = int(c.sum())
    k = len(votes.models)
    rng = np.random.default_rng(seed)
    if resample == "indices":
        # cell id of every vote, in the order of pair_cells' rows
        lo, hi = np.minimum(votes.a, votes.b), np.maximum(votes.a, votes.b)
        o = votes.outcome[dim]
        oc = np.where(o == 2, 2, np.where(votes.a > votes.b, 1 - o, o))
        row_of_pair = np.full(k * k, -1)
        row_of_pair[pi * k + pj] = np.arange(pi.shape[0])
        cell = row_of_pair[lo * k + hi] * 3 + oc
        ncell = pi.shape[0] * 3
    probs = (c / n).ravel()
    point = _newton_bt(pi, pj, (c[:, 0] + 0.5 * c[:, 2])[None], c.sum(1)[None], k, ridge=ridge)[0]  # warm start
    out = []
    for start in range(0, rounds, chunk):
        m = min(chunk, rounds - start)
        if resample == "indices":
            idx = rng.integers(0, n, (m, n))
            flat = (cell[idx] + (np.arange(m) * ncell)[:, None]).ravel()
            draw = np.bincount(flat, minlength=m * ncell).reshape(m, -1, 3).astype(np.float64)
        else:
            draw = rng.multinomial(n, probs, size=m).reshape(m, -1, 3).astype(np.float64)
        wins = draw[..., 0] + 0.5 * draw[..., 2]
        games = draw.sum(-1)
        out.append(to_scale(_newton_bt(pi, pj, wins, games, k, ridge=ridge, start=point)))
    return np.concatenate(out) if out else np.zeros((0, k))


def fit_bt_sklearn(votes: Votes, dim: str = "overall", idx: np.ndarray | None = None) -> np.ndarray:
    """The baseline: one logistic regression on the (possibly resampled) votes, ties as two half-weight rows."""
    from sklearn.linear_model import LogisticRegression

    a, b, o = votes.a, votes.b, votes.outcome[dim]
    if idx is not None:
        a, b, o = a[idx], b[idx], o[idx]
    k = len(votes.models)
    n = a.shape[0]
    x = np.zeros((2 * n, k))
    rows = np.arange(n)
    x[rows, a] = 1.0
    x[rows, b] = -1.0
    x[n + rows, a] = 1.0
    x[n + rows, b] = -1.0
    y = np.concatenate([(o == 0).astype(int), np.ones(n, dtype=int)])
    sw = np.concatenate([np.where(o == 2, 0.5, 1.0), np.where(o == 2, 0.5, 0.0)])
    keep = sw > 0
    lr = LogisticRegression(fit_intercept=False, C=1.0 / RIDGE, tol=1e-8, max_iter=1000)
    lr.fit(x[keep], y[keep], sample_weight=sw[keep])
    return to_scale(lr.coef_[0][None])[0]


def bootstrap_bt_sklearn(votes: Votes, dim: str, rounds: int, seed: int, progress: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(votes)
    it = range(rounds)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="baseline bootstrap", unit="round")
    return np.stack([fit_bt_sklearn(votes, dim, rng.integers(0, n, n)) for _ in it])


# ----------------------------------------------------------------------------- Elo, win rates
def online_elo(votes: Votes, dim: str = "overall", k_factor: float = 4.0) -> np.ndarray:
    r = np.full(len(votes.models), ANCHOR)
    o = votes.outcome[dim]
    for a, b, out in zip(votes.a.tolist(), votes.b.tolist(), o.tolist(), strict=True):
        ea = 1.0 / (1.0 + 10 ** ((r[b] - r[a]) / SCALE))
        sa = 1.0 if out == 0 else 0.0 if out == 1 else 0.5
        r[a] += k_factor * (sa - ea)
        r[b] -= k_factor * (sa - ea)
    return r


def win_rate_matrix(votes: Votes, dim: str = "overall") -> tuple[np.ndarray, np.ndarray]:
    """(wins, games) k x k: wins[i, j] = i's wins over j with ties as half."""
    k = len(votes.models)
    o = votes.outcome[dim]
    wins = np.zeros((k, k))
    games = np.zeros((k, k))
    score_a = np.where(o == 0, 1.0, np.where(o == 1, 0.0, 0.5))
    np.add.at(wins, (votes.a, votes.b), score_a)
    np.add.at(wins, (votes.b, votes.a), 1.0 - score_a)
    np.add.at(games, (votes.a, votes.b), 1.0)
    np.add.at(games, (votes.b, votes.a), 1.0)
    return wins, games


def ranks(ci_low: np.ndarray, ci_high: np.ndarray) -> np.ndarray:
    """1 + number of models whose lower bound is above this model's upper bound."""
    return 1 + (ci_low[None, :] > ci_high[:, None]).sum(1)


def compute_ratings(votes: Votes, bootstrap: int = 1000, seed: int = 0, ci: float = 0.95,
                    progress: bool = False, *, prior_sd: float | None = None, min_battles: int = 0) -> dict:
    """The `latxa arena ratings --format json` document (plus elo and win rates under 'extra').

    ``prior_sd``: a weak Gaussian prior on the ratings (rating points; None = the plain MLE). ``min_battles``:
    models with fewer battles are fitted but not listed; ``pending`` says how many more battles each needs.
    """
    if len(votes) == 0:
        return {"ratings": {d: {} for d in DIMENSIONS}, "votes": 0, "models": [], "extra": {}, "pending": {},
                "min_battles": min_battles, "prior_sd": prior_sd}
    if bootstrap < 1:
        raise LatxaError("--bootstrap must be at least 1 round.")
    ridge = prior_ridge(prior_sd)
    battles = np.bincount(np.concatenate([votes.a, votes.b]), minlength=len(votes.models))
    shown = battles >= min_battles
    result: dict = {"ratings": {}, "votes": len(votes), "models": votes.models,
                    "bootstrap": bootstrap, "seed": seed, "ci": ci, "extra": {}, "prior_sd": prior_sd,
                    "min_battles": min_battles,
                    "pending": {votes.models[m]: {"battles": int(battles[m]), "needed": int(min_battles - battles[m])}
                                for m in np.argsort(-battles, kind="stable") if not shown[m]}}
    dims = list(DIMENSIONS)
    it = dims
    if progress:
        from tqdm import tqdm

        it = tqdm(dims, desc="bootstrap", unit="dimension")
    for dim in it:
        point = fit_bt(votes, dim, ridge)
        boots = bootstrap_bt(votes, dim, bootstrap, seed, ridge=ridge)
        lo = np.quantile(boots, (1 - ci) / 2, axis=0)
        hi = np.quantile(boots, 1 - (1 - ci) / 2, axis=0)
        order = [m for m in np.argsort(-point, kind="stable") if shown[m]]
        rk = np.zeros(len(votes.models), dtype=int)
        rk[order] = ranks(lo[order], hi[order])
        result["ratings"][dim] = {
            votes.models[m]: {"rating": round(float(point[m]), 2), "ci_low": round(float(lo[m]), 2),
                              "ci_high": round(float(hi[m]), 2), "rank": int(rk[m]), "battles": int(battles[m])}
            for m in order
        }
        wins, games = win_rate_matrix(votes, dim)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(games > 0, wins / np.maximum(games, 1), np.nan)
        elo = online_elo(votes, dim)
        result["extra"][dim] = {
            "elo": {votes.models[m]: round(float(elo[m]), 2) for m in order},
            "win_rate": {votes.models[i]: {votes.models[j]: (None if np.isnan(rate[i, j]) else round(float(rate[i, j]), 4))
                                            for j in order if j != i} for i in order},
            "games": {votes.models[i]: {votes.models[j]: int(games[i, j]) for j in order if j != i} for i in order},
        }
    return result


def plot_ratings(result: dict, out_dir: str | Path) -> list[Path]:
    """Ratings with CIs per dimension and the overall win-rate heatmap, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    dims = [d for d in DIMENSIONS if result["ratings"].get(d)]
    if not dims:
        return written
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 0.35 * len(result["models"]) + 2), squeeze=False)
    for ax, dim in zip(axes[0], dims, strict=True):
        rows = list(result["ratings"][dim].items())[::-1]
        y = np.arange(len(rows))
        r = np.array([v["rating"] for _, v in rows])
        lo = np.array([v["ci_low"] for _, v in rows])
        hi = np.array([v["ci_high"] for _, v in rows])
        ax.errorbar(r, y, xerr=[r - lo, hi - r], fmt="o", capsize=3)
        ax.set_yticks(y, [name for name, _ in rows], fontsize=8)
        ax.axvline(ANCHOR, color="grey", lw=0.5)
        ax.set_title(f"{dim} (Bradley-Terry, {int(result['ci'] * 100)}% CI)")
        ax.set_xlabel("rating")
    fig.tight_layout()
    path = out_dir / "ratings.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    names = list(result["ratings"]["overall"])
    wr = result["extra"]["overall"]["win_rate"]
    mat = np.array([[np.nan if i == j else (wr[i][j] if wr[i][j] is not None else np.nan) for j in names] for i in names])
    fig, ax = plt.subplots(figsize=(0.45 * len(names) + 3, 0.45 * len(names) + 2))
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_title("win rate of row over column (ties = 1/2)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = out_dir / "win_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
