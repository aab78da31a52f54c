"""FastAPI dependencies shared by the arena routers: the arena state, the per-IP limit, participant and admin
authentication."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Optional

from fastapi import Depends, Header, Request

from latxa.serving.arena.core import ApiError, Arena, _token_hash
from latxa.serving.arena.db import Participant, Session, utcnow


def get_arena(request: Request) -> Arena:
    return request.app.state.arena


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# The dependencies below are async so that a request does not pay a worker-thread hop just to check a rate limit
# or a cached token; only a cache miss reads the database (in a thread).
async def ip_limit(request: Request) -> str:
    ip = client_ip(request)
    arena: Arena = request.app.state.arena
    arena.limit(f"ip:{ip}", arena.settings.rate_requests_per_minute_ip)
    return ip


def _lookup_session(arena: Arena, th: str) -> Participant:
    with arena.sf() as s:
        sess = s.get(Session, th)
        if sess is None or sess.expires_at < utcnow():
            raise ApiError(401, "unauthorized", "The session token is unknown or expired; log in again.")
        p = s.get(Participant, sess.participant_id)
    if len(arena._tokens) > 100_000:
        arena._tokens.clear()
    arena._tokens[th] = (p, sess.expires_at, time.monotonic())
    return p


async def participant(request: Request, authorization: Optional[str] = Header(None),
                      _ip: str = Depends(ip_limit)) -> Participant:
    if not authorization or not authorization.startswith("Bearer ") or len(authorization) > 512:
        raise ApiError(401, "unauthorized", "Log in first: send Authorization: Bearer <token>.")
    arena: Arena = request.app.state.arena
    th = _token_hash(authorization[7:].strip())
    hit = arena._tokens.get(th)
    if hit and time.monotonic() - hit[2] < 30 and hit[1] >= utcnow():
        return hit[0]
    return await asyncio.to_thread(_lookup_session, arena, th)


def admin(request: Request, x_admin_token: Optional[str] = Header(None), _ip: str = Depends(ip_limit)) -> None:
    expected = request.app.state.arena.settings.admin_token
    if not expected:
        raise ApiError(403, "admin_disabled", "Admin endpoints are disabled: no admin token is configured.")
    if not x_admin_token or not secrets.compare_digest(x_admin_token.encode("utf-8", "surrogatepass"),
                                                       expected.encode()):
        raise ApiError(401, "unauthorized", "A valid X-Admin-Token header is required.")
