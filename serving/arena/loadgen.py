"""Vote load generator and crash check (used by benchmarks/bench_votes.py and the kill-and-restart test).

Setup writes participants, sessions and answered battles straight into the arena database (the same rows the
API would write, without spending minutes generating answers); the load itself goes through the HTTP API.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from latxa.serving.arena.core import _token_hash
from latxa.serving.arena.db import Battle, Participant, Session, Turn, open_db, utcnow


def seed_battles(db_url: str, participants: int, battles: int, models: list[str]) -> list[tuple[str, str]]:
    """Create participants with tokens and answered battles; returns [(token, battle_id)]."""
    import datetime as dt
    import random

    _, sf = open_db(db_url, migrate_schema=True)  # a fresh benchmark database
    rng = random.Random(0)
    tokens, out = [], []
    past = utcnow() - dt.timedelta(minutes=5)
    with sf() as s:
        for i in range(participants):
            pid = "p_" + secrets.token_hex(8)
            s.add(Participant(id=pid, username=f"load{i}_{secrets.token_hex(3)}", password_hash="-", email=None,
                              basque_level="C1", education="master", consent_version="1", consent_at=past,
                              created_at=past, flagged=False, flag_reasons=""))
            token = secrets.token_urlsafe(24)
            s.add(Session(token_hash=_token_hash(token), participant_id=pid, created_at=past,
                          expires_at=past + dt.timedelta(days=1)))
            tokens.append((pid, token))
        s.flush()
        for j in range(battles):
            pid, token = tokens[j % participants]
            a, b = rng.sample(models, 2)
            bid = "b_" + secrets.token_hex(12)
            s.add(Battle(id=bid, participant_id=pid, model_a=a, model_b=b, settings_a="{}", settings_b="{}",
                         sampling="uniform", is_control=False, control_good=None, created_at=past,
                         last_answer_at=past, status="open"))
            s.flush()
            s.add(Turn(battle_id=bid, idx=0, user="Kaixo", answer_a="Kaixo!", answer_b="Egun on!", created_at=past))
            out.append((token, bid))
        s.commit()
    return out


@dataclass
class LoadResult:
    acked: list[str] = field(default_factory=list)       # vote ids answered 200
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    error_kinds: dict = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def _load(base: str, items: list[tuple[str, str]], concurrency: int, duration: float,
                res: LoadResult, stop) -> LoadResult:
    # aiohttp, not httpx: on 2 shared cores httpx's client spent more CPU per request than the server did
    # (a no-op endpoint topped out at ~290 req/s through it versus ~1,300 req/s through aiohttp).
    import aiohttp

    queue = list(reversed(items))
    choices = ["model_a", "model_b", "tie"]
    start = time.perf_counter()

    async def client_loop(client):
        while queue and time.perf_counter() - start < duration and not (stop and stop.is_set()):
            token, bid = queue.pop()
            c = choices[hash(bid) % 3]
            t0 = time.perf_counter()
            try:
                async with client.post(f"{base}/api/battles/{bid}/vote", json={"content": c, "language": c},
                                       headers={"Authorization": f"Bearer {token}"}) as r:
                    body = await r.json() if r.status == 200 else None
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                res.error(type(err).__name__)
                await asyncio.sleep(0.05)
                continue
            if status == 200:
                res.acked.append(body["vote_id"])
                res.latencies.append(time.perf_counter() - t0)
            else:
                res.error(f"HTTP {status}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10.0)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    res.elapsed = time.perf_counter() - start
    return res


def run_load(base: str, items: list[tuple[str, str]], concurrency: int = 32, duration: float = 10.0,
             res: LoadResult | None = None, stop=None) -> LoadResult:
    """Vote through ``items`` with ``concurrency`` clients until ``duration`` seconds pass, the items run out or
    ``stop`` (a threading.Event) is set; ``res`` (filled live) lets another thread watch progress."""
    return asyncio.run(_load(base, items, concurrency, duration, res if res is not None else LoadResult(), stop))


def start_arena_server(config: Path, db_url: str, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("latxa")
    fh = open(log, "ab")
    proc = subprocess.Popen([str(exe), "arena", "serve", "--config", str(config), "--db", db_url, "--port", str(port),
                             "--min-reading-seconds", "0", "--admin-token", "bench-admin"],
                            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ})
    wait_http(f"http://127.0.0.1:{port}/api/health", proc, 120)
    return proc


def wait_http(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def stored_vote_ids(db_url: str) -> set[str]:
    from sqlalchemy import select

    from latxa.serving.arena.db import Vote

    engine, sf = open_db(db_url)
    with sf() as s:
        ids = set(s.execute(select(Vote.id)).scalars())
    engine.dispose()
    return ids
