"""Network helpers every layer may use (foundation: standard library only)."""

from __future__ import annotations

import random
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, drawn below Linux's ephemeral range (32768+).

    Binding port 0 would hand out an ephemeral port, which any process that binds port 0 in the meantime (Ray
    starts several) can be given too before our server binds it; a random port from 20000-31999 avoids that race.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port found on {host} in 20000-31999 after 200 tries")
