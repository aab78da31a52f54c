"""Pair sampling for new battles: uniform, or adaptive (uncertain pairs and models with few battles first)."""

from __future__ import annotations

import math
import random
import threading


class PairSampler:
    """Keeps battle counts and online ratings in memory; seeded from the database at start."""

    def __init__(self, models: list[str], rng: random.Random | None = None):
        if len(models) < 2:
            raise ValueError("the arena needs at least two models")
        self.models = list(models)
        self.rng = rng or random.Random()
        self.battles = {m: 0 for m in models}
        self.pair_battles: dict[tuple[str, str], int] = {}
        self.rating = {m: 1000.0 for m in models}
        self._lock = threading.Lock()

    @staticmethod
    def _key(a: str, b: str) -> tuple[str, str]:
        return (a, b) if a < b else (b, a)

    def record_battle(self, a: str, b: str) -> None:
        with self._lock:
            for m in (a, b):
                if m in self.battles:
                    self.battles[m] += 1
            k = self._key(a, b)
            self.pair_battles[k] = self.pair_battles.get(k, 0) + 1

    def record_vote(self, a: str, b: str, winner: str, k_factor: float = 16.0) -> None:
        with self._lock:
            if a not in self.rating or b not in self.rating:
                return
            ea = 1.0 / (1.0 + 10 ** ((self.rating[b] - self.rating[a]) / 400.0))
            sa = {"model_a": 1.0, "model_b": 0.0}.get(winner, 0.5)
            self.rating[a] += k_factor * (sa - ea)
            self.rating[b] -= k_factor * (sa - ea)

    def weights(self) -> dict[tuple[str, str], float]:
        """Adaptive weight per unordered pair: the standard error of the pair's win probability
        (largest for close ratings and few comparisons) times a bonus for models with few battles."""
        out = {}
        for i, a in enumerate(self.models):
            for b in self.models[i + 1:]:
                p = 1.0 / (1.0 + 10 ** ((self.rating[b] - self.rating[a]) / 400.0))
                n_ab = self.pair_battles.get(self._key(a, b), 0)
                unc = math.sqrt(p * (1 - p) / (n_ab + 1))
                few = 1.0 / math.sqrt(1.0 + min(self.battles[a], self.battles[b]))
                out[(a, b)] = unc * few
        mean = sum(out.values()) / len(out)
        return {k: v + 0.05 * mean for k, v in out.items()}  # a floor keeps every pair possible

    def sample(self, mode: str = "adaptive") -> tuple[str, str]:
        with self._lock:
            if mode == "uniform":
                a, b = self.rng.sample(self.models, 2)
                return a, b
            w = self.weights()
            pairs = list(w)
            a, b = self.rng.choices(pairs, weights=[w[p] for p in pairs], k=1)[0]
        return (a, b) if self.rng.random() < 0.5 else (b, a)
