"""Limits of the HTTP server (registry.ServerLimits): request headers, request bodies, and the time to send them.

Two layers, because the app runs behind two servers:

- :class:`LimitsMiddleware`, in the app itself (so also behind Ray Serve's proxy): headers over the cap answer 431,
  a body over the cap 413 (at once when Content-Length says so, else as soon as the bytes pass the cap), a body
  that does not arrive within ``body_timeout_s`` 408. Errors have the arena's shape, or OpenAI's under /v1.
- :func:`limited_http_protocol`, the uvicorn protocol of `latxa arena serve`: it refuses oversized headers while
  parsing them (a 1 MB header is never buffered), and closes connections that do not finish their request line
  and headers within ``header_timeout_s`` (idle new connections included: uvicorn's keep-alive timer only starts
  after a first response).
"""

from __future__ import annotations

import json
import time

from latxa.serving.registry import ServerLimits

_TEXTS = {
    408: ("request_timeout", "The request was not sent in time"),
    413: ("request_too_large", "The request body is larger than this server accepts"),
    431: ("headers_too_large", "The request headers are larger than this server accepts"),
    400: ("bad_request", "The Content-Length header is not a number"),
}


def error_body(path: str, status: int, limit: str = "") -> bytes:
    code, text = _TEXTS[status]
    message = f"{text}{limit}."
    if path.startswith("/v1"):
        typ = "invalid_request_error"
        return json.dumps({"error": {"message": message, "type": typ, "param": None, "code": code}}).encode()
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class LimitsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: that one would hide client disconnects from streamed responses)."""

    def __init__(self, app, limits: ServerLimits):
        self.app = app
        self.limits = limits

    async def _reject(self, send, path: str, status: int, limit: str = "") -> None:
        body = error_body(path, status, limit)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lim = self.limits
        path = scope.get("path", "")
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        length = None
        for k, v in scope.get("headers", ()):
            head += len(k) + len(v) + 4
            if k == b"content-length":
                length = v
        if head > lim.max_header_bytes:
            await self._reject(send, path, 431, f" ({lim.max_header_bytes} bytes)")
            return
        if length is not None:
            if not length.strip().isdigit():
                await self._reject(send, path, 400)
                return
            if int(length) > lim.max_body_bytes:
                await self._reject(send, path, 413, f" ({lim.max_body_bytes} bytes)")
                return
        await self._guarded(scope, receive, send, path)

    async def _guarded(self, scope, receive, send, path: str) -> None:
        import anyio

        lim = self.limits
        deadline = time.monotonic() + lim.body_timeout_s
        state = {"received": 0, "done": False, "started": False, "rejected": False}

        async def refuse(status: int, limit: str = "") -> dict:
            if not state["started"]:
                state["started"] = True
                await self._reject(send, path, status, limit)
            state["rejected"] = True
            return {"type": "http.disconnect"}

        async def limited_receive():
            if state["done"] or state["rejected"]:
                return await receive()
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as timer:
                message = await receive()
            if timer.cancelled_caught:
                return await refuse(408, f" (the body within {lim.body_timeout_s:g} s)")
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > lim.max_body_bytes:
                    return await refuse(413, f" ({lim.max_body_bytes} bytes)")
                if not message.get("more_body", False):
                    state["done"] = True
            return message

        async def guarded_send(message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if state["rejected"]:   # the app gave up on the body we cut off; the client has its answer
                return
            raise


def uvicorn_options(limits: ServerLimits) -> dict:
    """uvicorn.Config keyword arguments for these limits."""
    opts: dict = {"timeout_keep_alive": max(1, int(limits.header_timeout_s)),
                  # X-Forwarded-For is believed from the configured proxies only (uvicorn's default: any loopback peer)
                  "proxy_headers": bool(limits.trusted_proxies), "forwarded_allow_ips": list(limits.trusted_proxies)}
    try:
        opts["http"] = limited_http_protocol(limits)
    except ImportError:   # no httptools: h11, whose incomplete-event cap bounds the headers (no header timeout)
        opts.update(http="h11", h11_max_incomplete_event_size=limits.max_header_bytes)
    return opts


def limited_http_protocol(limits: ServerLimits):
    """uvicorn's httptools protocol with a header size cap and a header timeout (see the module docstring)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_bytes = 0
            self._head_too_large = False
            self._head_timer = None
            self._in_head = True   # before a request's headers have ended
            self._arm()

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._head_bytes:   # a request began and its headers never ended
                self._send_error(408, f" (the headers within {limits.header_timeout_s:g} s)")
            else:                  # nothing sent at all
                self.transport.close()

        def _send_error(self, status: int, limit: str) -> None:
            body = error_body("/v1", status, limit)   # the 4-field shape, which both kinds of client can read
            reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n" % (status, reason, len(body)) + body)
            self.transport.close()

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > limits.max_header_bytes:
                self._head_too_large = True
                raise ValueError("request headers over the limit")   # aborts the parser (send_400_response)

        def send_400_response(self, msg: str) -> None:
            if self._head_too_large:
                self._send_error(431, f" ({limits.max_header_bytes} bytes)")
            else:
                super().send_400_response(msg)

        def data_received(self, data: bytes) -> None:
            # httptools hands over a header only once it is complete, buffering it meanwhile: while a request's
            # headers are still coming, feed the parser at most the cap at a time, so the count in on_url and
            # on_header stops an oversized header before much of it is buffered.
            step = limits.max_header_bytes
            while self._in_head and len(data) > step and not self.transport.is_closing():
                piece, data = data[:step], data[step:]
                super().data_received(piece)
            if data and not self.transport.is_closing():
                super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 1
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_head = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._head_bytes = 0
            self._in_head = True
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return LimitedHttpToolsProtocol
