"""Ratings benchmark: 12,890 votes over 21 models, N bootstrap rounds (default 1000), three dimensions.

Compares, in the same run, the batched Newton bootstrap of latxa.components.arena.ratings with the straightforward baseline
(the public Chatbot Arena approach): one scikit-learn LogisticRegression refit per bootstrap round. Both
draw the *same* resamples (vote indices from the same seed), so the ratings and CI bounds must agree; the
multinomial fast path (what `latxa arena ratings` uses) is timed too.

    .venv/bin/python benchmarks/bench_ratings.py --rounds 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE_MODELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "latxa_instruct" / "evaluation" / "human" / "backend" / "partial_config.jsonl"


def arena_models() -> list[str]:
    """The reference arena's 21 models: its public endpoint list (19) plus the two API baselines."""
    names = []
    if REFERENCE_MODELS.is_file():
        names = [json.loads(line)["model_name"] for line in REFERENCE_MODELS.read_text().splitlines() if line.strip()]
    names += ["gpt-4o", "claude-3-5-sonnet-20241022"]
    while len(names) < 21:
        names.append(f"model-{len(names)}")
    return names[:21]


def synthesize(n: int = 12890, seed: int = 0) -> list[dict]:
    """Votes from a BT model with a tie band, content/language answered separately, winner by the reference rule."""
    from latxa.components.arena.ratings import derive_winner

    rng = np.random.default_rng(seed)
    models = arena_models()
    strength = {m: s for m, s in zip(models, rng.normal(0, 0.6, len(models)), strict=True)}
    lang_shift = {m: s for m, s in zip(models, rng.normal(0, 0.3, len(models)), strict=True)}

    def outcome(d: float) -> str:
        p = 1 / (1 + np.exp(-d))
        u = rng.random()
        return "model_a" if u < p - 0.1 else "model_b" if u > p + 0.1 else "tie"

    votes = []
    for _ in range(n):
        a, b = rng.choice(len(models), 2, replace=False)
        ma, mb = models[a], models[b]
        c = outcome(strength[ma] - strength[mb])
        l = outcome(strength[ma] + lang_shift[ma] - strength[mb] - lang_shift[mb])
        o = outcome(strength[ma] - strength[mb]) if c != l else None
        votes.append({"model_a": ma, "model_b": mb, "winner": derive_winner(c, l, o), "winner_content": c,
                      "winner_language": l})
    return votes


def main() -> None:
    from latxa.components.arena.ratings import (
        DIMENSIONS,
        bootstrap_bt,
        bootstrap_bt_sklearn,
        compute_ratings,
        fit_bt,
        fit_bt_sklearn,
        votes_from_records,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=12890)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-rounds", type=int, default=20, help="rounds the sklearn baseline refits (<= --rounds)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    votes = votes_from_records(synthesize(args.votes, args.seed))
    print(f"{len(votes)} votes, {len(votes.models)} models, {args.rounds} bootstrap rounds x {len(DIMENSIONS)} dimensions")

    t = time.perf_counter()
    fast = {d: bootstrap_bt(votes, d, args.rounds, args.seed, resample="indices") for d in DIMENSIONS}
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    full = compute_ratings(votes, bootstrap=args.rounds, seed=args.seed)
    t_cli = time.perf_counter() - t
    br = min(args.baseline_rounds, args.rounds)
    t = time.perf_counter()
    base = {d: bootstrap_bt_sklearn(votes, d, br, args.seed, progress=True) for d in DIMENSIONS}
    t_base_measured = time.perf_counter() - t
    t_base = t_base_measured * args.rounds / br

    point_diff = max(float(np.abs(fit_bt(votes, d) - fit_bt_sklearn(votes, d)).max()) for d in DIMENSIONS)
    round_diff = max(float(np.abs(fast[d][:br] - base[d]).max()) for d in DIMENSIONS)
    res = {"votes": len(votes), "models": len(votes.models), "rounds": args.rounds, "dimensions": len(DIMENSIONS),
           "baseline_rounds_refit": br, "baseline_measured_s": round(t_base_measured, 2),
           "baseline_sklearn_s_for_all_rounds": round(t_base, 1),
           "batched_newton_same_resamples_s": round(t_fast, 2), "latxa_arena_ratings_s": round(t_cli, 2),
           "speedup_same_resamples": round(t_base / t_fast, 1), "speedup_full_command": round(t_base / t_cli, 1),
           "max_point_rating_diff": round(point_diff, 4), "max_per_round_rating_diff": round(round_diff, 4)}
    top = list(full["ratings"]["overall"].items())[:3]
    res["top3_overall"] = {m: r["rating"] for m, r in top}
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
