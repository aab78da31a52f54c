"""Limits of the HTTP server itself (issue 17, findings 4 and 12), on the uvicorn configuration `latxa arena serve`
runs with: request headers, request bodies, and the time a client may take to send them. Loopback only, a few
connections, each bounded in time."""

from __future__ import annotations

import json
import socket
import time

import httpx

LIMITS = {"max_body_bytes": 65536, "max_header_bytes": 8192, "header_timeout_s": 1.0, "body_timeout_s": 1.0}


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket, within: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took (-1: still open)."""
    start, got = time.monotonic(), b""
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got, time.monotonic() - start
            got += chunk
    except TimeoutError:
        return got, -1.0
    except ConnectionResetError:
        return got, time.monotonic() - start


def test_oversized_headers_are_431(live_arena):
    server = live_arena(limits=LIMITS)
    assert httpx.get(server.url + "/api/health", headers={"X-Pad": "a" * 4000}).status_code == 200
    for pad in (9000, 1_000_000):
        r = httpx.get(server.url + "/api/health", headers={"X-Pad": "a" * pad})
        assert r.status_code == 431, (pad, r.status_code)
    many = {f"X-H{i}": "v" * 100 for i in range(100)}
    assert httpx.get(server.url + "/api/health", headers=many).status_code == 431
    assert httpx.get(server.url + "/api/health?" + "q=" + "x" * 9000).status_code in (414, 431)
    assert httpx.get(server.url + "/api/health").status_code == 200   # the server is fine afterwards


def test_slow_clients_are_cut_off(live_arena):
    server = live_arena(limits=LIMITS)
    # a connection that never sends a request
    idle = _connect(server)
    _, took = _read_all(idle)
    assert 0 <= took < 5, f"an idle connection stayed open ({took})"
    # a request whose headers never end
    slow = _connect(server)
    slow.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for _ in range(3):          # trickling a header line now and then does not keep it alive either
        time.sleep(0.4)
        try:
            slow.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    data, took = _read_all(slow)
    assert 0 <= took < 5, "partial headers held the connection open"
    assert not data or data.startswith(b"HTTP/1.1 408")
    # a body that stops half way: 408 in the arena's error shape, then the connection closes
    part = _connect(server)
    body = json.dumps({"username": "x" * 10}).encode()
    part.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 500\r\n\r\n" + body)
    data, took = _read_all(part)
    assert 0 <= took < 5, "a partial body held the connection open"
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    assert json.loads(payload)["error"]["code"] == "request_timeout"
    # a request sent in good time on a kept-alive connection is answered normally, twice
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/api/health").status_code == 200
        time.sleep(0.5)
        assert c.get("/api/health").status_code == 200


def test_oversized_bodies_are_413_before_they_are_read(live_arena):
    server = live_arena(limits=LIMITS)
    big = {"username": "a" * 100_000, "password": "x"}
    r = httpx.post(server.url + "/api/sessions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():
        for _ in range(100):
            yield b"a" * 1024

    r = httpx.post(server.url + "/api/sessions", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    # a Content-Length that promises too much is refused at once, without waiting for the bytes
    sock = _connect(server)
    sock.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000000\r\n\r\n")
    data, took = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 413") and 0 <= took < 5
    # within the cap the route's own rules answer
    r = httpx.post(server.url + "/api/sessions", json={"username": "a" * 100, "password": "x"})
    assert r.status_code == 422
