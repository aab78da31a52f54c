"""Votes benchmark: 32 concurrent clients on loopback for a bounded time against `latxa arena serve` (SQLite WAL),
then a crash run: SIGKILL the server mid-load, restart it, and count acknowledged votes missing from the database.

    .venv/bin/python benchmarks/bench_votes.py --duration 20 --clients 32 --json out.json

Setup (participants, sessions, answered battles) is written straight into the database; every vote goes
through the HTTP API (token check, battle ownership, reading time, rate limits, one transaction per vote).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIG = """
arena:
  rate_votes_per_minute: 100000000
  rate_requests_per_minute_ip: 100000000
"""


def health_load(base: str, clients: int, duration: float) -> float:
    """Baseline in the same run: the same HTTP stack, client library and client count on GET /api/health
    (no database)."""
    import asyncio

    import aiohttp

    async def go() -> float:
        done = 0
        start = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                         timeout=aiohttp.ClientTimeout(total=10.0)) as client:
            async def loop():
                nonlocal done
                while time.perf_counter() - start < duration:
                    async with client.get(f"{base}/api/health") as r:
                        await r.read()
                        done += r.status == 200
            await asyncio.gather(*(loop() for _ in range(clients)))
        return done / (time.perf_counter() - start)

    return asyncio.run(go())


def main() -> None:
    from latxa.net import free_port
    from latxa.serving.arena.loadgen import (
        LoadResult,
        kill,
        run_load,
        seed_battles,
        start_arena_server,
        stored_vote_ids,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--battles", type=int, default=30000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-votes-"))
    cfg = work / "serve.yaml"
    cfg.write_text(CONFIG)
    db = f"sqlite:///{work}/arena.db"
    models = ["tiny-a", "tiny-b", "tiny-c"]
    print(f"seeding {args.battles} answered battles in {db}")
    items = seed_battles(db, participants=args.clients * 4, battles=args.battles, models=models)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    # 1. throughput
    proc = start_arena_server(cfg, db, port, work / "server.log")
    try:
        half = len(items) // 2
        health_rps = health_load(base, args.clients, args.duration / 2)
        load = run_load(base, items[:half], args.clients, args.duration)
    finally:
        kill(proc)
    lat = np.array(load.latencies) * 1000
    res = {"clients": args.clients, "duration_s": round(load.elapsed, 2), "votes": len(load.acked),
           "votes_per_s": round(len(load.acked) / load.elapsed, 1),
           "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
           "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
           "errors": load.errors, "error_kinds": load.error_kinds, "cpus": os.cpu_count(),
           "baseline_health_requests_per_s": round(health_rps, 1),
           "votes_vs_health_ratio": round(len(load.acked) / load.elapsed / health_rps, 3)}
    print(json.dumps(res, indent=2))

    # 2. crash: SIGKILL mid-load, restart, count
    proc = start_arena_server(cfg, db, port, work / "server.log")
    crash, stop = LoadResult(), threading.Event()
    t = threading.Thread(target=run_load, args=(base, items[half:], args.clients, 300.0, crash, stop))
    t.start()
    time.sleep(args.duration / 2)
    kill(proc)
    time.sleep(1.0)
    stop.set()
    t.join(60)
    proc = start_arena_server(cfg, db, port, work / "server.log")
    kill(proc)
    stored = stored_vote_ids(db)
    lost = set(crash.acked) - stored
    res["crash"] = {"acknowledged_before_kill": len(crash.acked), "lost": len(lost),
                    "failed_during_kill": crash.errors, "stored_total": len(stored)}
    print(json.dumps(res["crash"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
