"""Kill the arena server (SIGKILL) in the middle of a vote load, restart it: every acknowledged vote is stored.
Run on both storage backends: SQLite (WAL, synchronous=FULL) and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

LOAD_CONFIG = """
arena:
  rate_votes_per_minute: 1000000
  rate_requests_per_minute_ip: 10000000
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_load_loses_no_acknowledged_vote(backend, request, tmp_path, serve_models):
    from latxa.net import free_port
    from latxa.serving.arena.loadgen import (
        LoadResult,
        kill,
        run_load,
        seed_battles,
        start_arena_server,
        stored_vote_ids,
    )

    cfg = tmp_path / "serve.yaml"
    cfg.write_text(LOAD_CONFIG)
    db = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/arena.db"
    items = seed_battles(db, participants=32, battles=2500, models=[m.name for m in serve_models])
    port = free_port()
    proc = start_arena_server(cfg, db, port, tmp_path / "server.log")
    try:
        load, stop = LoadResult(), threading.Event()
        t = threading.Thread(target=run_load, args=(f"http://127.0.0.1:{port}", items, 32, 120.0, load, stop))
        t.start()
        deadline = time.time() + 90
        while len(load.acked) < 100 and time.time() < deadline and t.is_alive():
            time.sleep(0.05)
        kill(proc)  # SIGKILL mid-load: no shutdown hooks, no flush
        time.sleep(1.0)
        stop.set()
        t.join(60)
        assert len(load.acked) > 20, f"the load never got going: {load.error_kinds}"
        assert load.errors > 0, "the kill happened after the load finished"
        proc = start_arena_server(cfg, db, port, tmp_path / "server.log")
        stats = httpx.get(f"http://127.0.0.1:{port}/api/admin/stats", headers={"X-Admin-Token": "bench-admin"}).json()
        stored = stored_vote_ids(db)
        lost = set(load.acked) - stored
        assert not lost, f"{len(lost)} acknowledged votes lost"
        assert stats["votes"] == len(stored) >= len(load.acked)
        # the restarted server still refuses to change an acknowledged vote (unique vote per battle)
        token, bid = items[0]
        again = httpx.post(f"http://127.0.0.1:{port}/api/battles/{bid}/vote", headers={"Authorization": f"Bearer {token}"},
                           json={"content": "model_b", "language": "model_a", "overall": "tie"})
        assert again.status_code in (200, 409)
    finally:
        kill(proc)
