"""Adaptive pair sampling, the sequential outlier test, and the Parquet export."""

from __future__ import annotations

import random

import pytest


def test_adaptive_sampling_favours_few_battles_and_uncertain_pairs():
    from latxa.serving.arena.sampling import PairSampler

    models = ["m1", "m2", "m3", "m4"]
    s = PairSampler(models, random.Random(0))
    for _ in range(300):  # m1 has been in many battles and is far stronger
        for other in ("m2", "m3", "m4"):
            s.record_battle("m1", other)
            s.record_vote("m1", other, "model_a")
    counts = {m: 0 for m in models}
    for _ in range(2000):
        for m in s.sample("adaptive"):
            counts[m] += 1
    assert counts["m1"] < 0.1 * counts["m2"]
    uni = PairSampler(models, random.Random(0))
    uni.battles = dict(s.battles)
    ucounts = {m: 0 for m in models}
    for _ in range(2000):
        a, b = uni.sample("uniform")
        assert a != b
        ucounts[a] += 1
        ucounts[b] += 1
    assert min(ucounts.values()) > 800  # uniform ignores the history
    # among never-compared pairs the closer-rated pair is preferred
    s2 = PairSampler(["p", "q", "r"], random.Random(1))
    s2.rating.update({"p": 1000.0, "q": 1010.0, "r": 1600.0})
    w = s2.weights()
    assert w[("p", "q")] > 2 * w[("p", "r")]


def test_sequential_outlier_test_flags_a_contrarian():
    from latxa.serving.arena.abuse import RateLimiter, outlier_test

    rng = random.Random(0)
    votes = []
    for i in range(40):  # honest voters: the stronger model wins 85% of the time
        for _ in range(10):
            a, b = rng.sample(["s", "w1", "w2"], 2)
            strong_a = a == "s" or (a == "w1" and b == "w2")
            win = rng.random() < 0.85
            votes.append((f"u{i}", a, b, 0 if win == strong_a else 1))
    for _ in range(50):  # the contrarian always picks the weaker
        a, b = rng.sample(["s", "w1", "w2"], 2)
        strong_a = a == "s" or (a == "w1" and b == "w2")
        votes.append(("bad", a, b, 1 if strong_a else 0))
    flagged = outlier_test(votes, alpha=0.001)
    assert "bad" in flagged and flagged["bad"] < 1e-5
    assert len(flagged) <= 1
    rl = RateLimiter(window=60)
    assert [rl.hit("k", 2, now=t) for t in (0, 1)] == [0, 0]
    assert rl.hit("k", 2, now=2) == pytest.approx(58)
    assert rl.hit("k", 2, now=61) == 0
