"""HTTP client for the arena API (contract: docs/arena-api.md). The UI talks to the arena only through here.

The base URL is configuration: ``LATXA_ARENA_API_URL`` (default ``http://127.0.0.1:8000``). Nothing in this
module imports serving or training code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
# Seconds without any stream event before the UI gives up on the sides still writing.
STREAM_IDLE_TIMEOUT_S = float(os.environ.get("LATXA_ARENA_STREAM_TIMEOUT_S", "60"))


def api_url() -> str:
    return os.environ.get("LATXA_ARENA_API_URL", DEFAULT_API_URL).rstrip("/")


@dataclass
class ApiError(Exception):
    """A non-2xx answer (or no answer at all) from the arena API, in the contract's error shape."""

    status: int
    code: str
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} ({self.status}): {self.message}"


def _error_from(resp: httpx.Response, body: bytes | None = None) -> ApiError:
    raw = body if body is not None else resp.content
    try:
        err = json.loads(raw or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        err = {}
    return ApiError(resp.status_code, str(err.get("code") or f"http_{resp.status_code}"),
                    str(err.get("message") or raw[:200].decode("utf-8", "replace") if raw else resp.reason_phrase),
                    err.get("details") or {})


def forwarding_headers(client_address: str | None) -> dict:
    """The participant's address for the API's per-participant limits, with the secret the API shares with this
    backend (``LATXA_ARENA_PROXY_TOKEN``); without the secret nothing is forwarded (the API would ignore it)."""
    secret = os.environ.get("LATXA_ARENA_PROXY_TOKEN", "").strip()
    if not (secret and client_address):
        return {}
    return {"X-Latxa-Client-Address": client_address, "X-Latxa-Proxy-Token": secret}


class ArenaClient:
    """One short-lived client per UI event; ``token`` is the participant's bearer token (may be empty) and
    ``client_address`` the participant's address as this backend sees it (forwarded to the API)."""

    def __init__(self, token: str = "", base_url: str | None = None, timeout: float = 30.0,
                 client_address: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(forwarding_headers(client_address))
        self._client = httpx.AsyncClient(base_url=(base_url or api_url()) + "/api", headers=headers,
                                         timeout=httpx.Timeout(timeout, connect=5.0))

    async def __aenter__(self) -> "ArenaClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = await self._client.request(method, path, **kw)
        except httpx.HTTPError as err:
            raise ApiError(0, "unreachable", f"The arena API at {api_url()} is not reachable ({type(err).__name__}).") from err
        if resp.status_code >= 400:
            raise _error_from(resp)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # --- public
    async def config(self) -> dict:
        return await self._call("GET", "/config")

    async def leaderboard(self) -> dict:
        return await self._call("GET", "/leaderboard")

    async def register(self, **fields: Any) -> dict:
        return await self._call("POST", "/participants", json=fields)

    async def login(self, username: str, password: str) -> dict:
        return await self._call("POST", "/sessions", json={"username": username, "password": password})

    # --- participant
    async def logout(self) -> None:
        await self._call("DELETE", "/sessions")

    async def me(self) -> dict:
        return await self._call("GET", "/me")

    async def contributions(self) -> dict:
        return await self._call("GET", "/me/contributions")

    async def new_battle(self) -> dict:
        return await self._call("POST", "/battles", json={})

    async def battle(self, battle_id: str) -> dict:
        return await self._call("GET", f"/battles/{battle_id}")

    async def vote(self, battle_id: str, content: str, language: str, overall: str | None) -> dict:
        return await self._call("POST", f"/battles/{battle_id}/vote",
                                json={"content": content, "language": language, "overall": overall})

    async def stream_message(self, battle_id: str, content: str,
                             idle_timeout: float = STREAM_IDLE_TIMEOUT_S) -> AsyncIterator[dict]:
        """Send a user turn and yield the SSE events (``delta``/``done``/``error``/``end``) as dicts.

        Raises ApiError for a refused request, ``httpx.ReadTimeout`` when the stream stalls longer than
        ``idle_timeout`` seconds (the caller marks the unfinished sides as timed out).
        """
        timeout = httpx.Timeout(connect=5.0, read=idle_timeout, write=30.0, pool=5.0)
        try:
            async with self._client.stream("POST", f"/battles/{battle_id}/messages",
                                           json={"content": content, "stream": True}, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    raise _error_from(resp, await resp.aread())
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    try:
                        yield json.loads(payload)
                    except ValueError:
                        continue
        except (httpx.ConnectError, httpx.RemoteProtocolError) as err:
            raise ApiError(0, "unreachable", f"The arena API at {api_url()} dropped the stream ({type(err).__name__}).") from err
