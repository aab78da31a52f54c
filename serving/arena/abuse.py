"""Abuse controls: sliding-window rate limits and a sequential outlier test for voters.

The outlier test follows the idea of the public Chatbot Arena analysis: each vote of a participant gets a
p-value under the distribution of everybody else's votes on the same model pair, and Fisher's combination
``-2 * sum(log p)`` (chi-squared with 2n degrees of freedom under the null) is checked sequentially at a few
checkpoints with a Bonferroni-corrected level; a participant is flagged when any check rejects.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque

CHECKPOINTS = (5, 10, 20, 50, 100)


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (in memory, per server process)."""

    def __init__(self, window: float = 60.0, max_keys: int = 100_000):
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        """Drop keys whose events have all expired (keys are per address and per username: without this, a
        stream of made-up usernames would grow the table without bound)."""
        old = now - self.window
        for key in [k for k, q in self._events.items() if not q or q[-1] <= old]:
            del self._events[key]

    def wait(self, key: str, limit: int, now: float | None = None) -> float:
        """The seconds until ``key`` may have another event (0 when it may now); records nothing."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.get(key)
            if not q:
                return 0.0
            while q and q[0] <= now - self.window:
                q.popleft()
            return max(0.001, q[0] + self.window - now) if len(q) >= limit else 0.0

    def hit(self, key: str, limit: int, now: float | None = None) -> float:
        """Record an event; return 0 when allowed, else the seconds to wait (the event is not recorded)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._events) >= self.max_keys and key not in self._events:
                self._prune(now)
            q = self._events[key]
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= limit:
                return max(0.001, q[0] + self.window - now)
            q.append(now)
            return 0.0


def _outcome_pvalue(counts: list[float], observed: int) -> float:
    """P(an outcome at most as likely as the observed one) under the smoothed distribution ``counts``."""
    total = sum(counts) + 3.0
    probs = [(c + 1.0) / total for c in counts]
    po = probs[observed]
    return min(1.0, sum(p for p in probs if p <= po + 1e-12))


def outlier_test(votes: list[tuple[str, str, str, int]], alpha: float = 0.001,
                 min_other_votes: int = 5) -> dict[str, float]:
    """Sequential Fisher test per participant.

    ``votes``: (participant, model_a, model_b, outcome) in time order, outcome 0 a wins, 1 b wins, 2 tie.
    Returns {participant: smallest checkpoint p-value} for the participants whose test rejects at ``alpha``.
    """
    from scipy.stats import chi2

    # pair counts from the (unordered) pair's point of view: [first wins, second wins, tie]
    pair_counts: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    by_user_pair: dict[tuple[str, tuple[str, str]], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    norm = []
    for user, a, b, o in votes:
        key = (a, b) if a < b else (b, a)
        oc = o if (a < b or o == 2) else 1 - o
        pair_counts[key][oc] += 1
        by_user_pair[(user, key)][oc] += 1
        norm.append((user, key, oc))
    stats: dict[str, list[float]] = defaultdict(list)
    flagged: dict[str, float] = {}
    level = alpha / len(CHECKPOINTS)
    for user, key, oc in norm:
        others = [pc - uc for pc, uc in zip(pair_counts[key], by_user_pair[(user, key)], strict=True)]
        if sum(others) < min_other_votes:
            continue
        stats[user].append(-2.0 * math.log(max(_outcome_pvalue(others, oc), 1e-300)))
        n = len(stats[user])
        if n in CHECKPOINTS:
            p = float(chi2.sf(sum(stats[user]), 2 * n))
            if p < level:
                flagged[user] = min(p, flagged.get(user, 1.0))
    return flagged
