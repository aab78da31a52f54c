"""Participants and sessions: registration with consent, login, logout, the participant's own view."""

from __future__ import annotations

import secrets
from typing import Optional

from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from latxa.serving.arena.core import ApiError, Arena, _iso, _token_hash
from latxa.serving.arena.db import Battle, Participant, Session, Vote, utcnow
from latxa.serving.arena.deps import get_arena, ip_limit, participant
from latxa.serving.arena.schemas import ERRORS, LoginIn, RegisterIn, TokenOut

router = APIRouter(prefix="/api", responses=ERRORS)


@router.post("/participants", status_code=201, response_model=TokenOut)
def register(body: RegisterIn, ip: str = Depends(ip_limit), arena: Arena = Depends(get_arena)) -> dict:
    arena.limit(f"auth-ip:{ip}", arena.settings.rate_auth_per_minute_ip)
    if not body.consent:
        raise ApiError(422, "consent_required", "Registration needs consent to the data licence (consent: true).")
    bad = arena.protocol.check_registration(username=body.username, password=body.password, email=body.email,
                                            basque_level=body.basque_level, education=body.education)
    if bad:
        raise ApiError(422, "validation_error", f"Invalid request: {bad[0]}: {bad[1]}")
    pid = "p_" + secrets.token_hex(8)
    with arena.sf() as s:
        if s.execute(select(Participant.id).where(Participant.username == body.username)).first():
            raise ApiError(409, "username_taken", "That username is already taken.")
        now = utcnow()
        s.add(Participant(id=pid, username=body.username, password_hash=arena.hasher.hash(body.password),
                          email=body.email, basque_level=body.basque_level, education=body.education,
                          consent_version=arena.protocol.consent.version, consent_at=now, created_at=now,
                          flagged=False, flag_reasons=""))
        s.flush()
        token = arena.issue_token(s, pid)
        try:
            s.commit()
        except IntegrityError:
            raise ApiError(409, "username_taken", "That username is already taken.") from None
    return {"participant_id": pid, "username": body.username, "token": token}


@router.post("/sessions", response_model=TokenOut)
def login(body: LoginIn, ip: str = Depends(ip_limit), arena: Arena = Depends(get_arena)) -> dict:
    from argon2.exceptions import VerificationError

    arena.limit(f"auth-ip:{ip}", arena.settings.rate_auth_per_minute_ip)
    with arena.sf() as s:
        p = s.execute(select(Participant).where(Participant.username == body.username)).scalar_one_or_none()
        try:
            ok = p is not None and arena.hasher.verify(p.password_hash, body.password)
        except VerificationError:
            ok = False
        if not ok:
            raise ApiError(401, "unauthorized", "Wrong username or password.")
        token = arena.issue_token(s, p.id)
        s.commit()
    return {"participant_id": p.id, "username": p.username, "token": token}


@router.delete("/sessions", status_code=204)
def logout(authorization: Optional[str] = Header(None), _p: Participant = Depends(participant),
           arena: Arena = Depends(get_arena)) -> Response:
    arena._tokens.pop(_token_hash(authorization[7:].strip()), None)
    with arena.sf() as s:
        sess = s.get(Session, _token_hash(authorization[7:].strip()))
        if sess:
            s.delete(sess)
            s.commit()
    return Response(status_code=204)


@router.get("/me")
def me(p: Participant = Depends(participant), arena: Arena = Depends(get_arena)) -> dict:
    with arena.sf() as s:
        votes = s.scalar(select(func.count()).select_from(Vote).where(Vote.participant_id == p.id))
        battles = s.scalar(select(func.count()).select_from(Battle).where(Battle.participant_id == p.id))
    return {"participant_id": p.id, "username": p.username, "basque_level": p.basque_level,
            "education": p.education, "created_at": _iso(p.created_at), "votes": votes, "battles": battles}


@router.get("/me/contributions")
def contributions(p: Participant = Depends(participant), arena: Arena = Depends(get_arena)) -> dict:
    with arena.sf() as s:
        counts = dict(s.execute(select(Vote.participant_id, func.count()).group_by(Vote.participant_id)).all())
        participants = s.scalar(select(func.count()).select_from(Participant))
        battles = s.scalar(select(func.count()).select_from(Battle).where(Battle.participant_id == p.id))
        days = s.execute(select(Vote.created_at).where(Vote.participant_id == p.id)).scalars().all()
    mine = counts.get(p.id, 0)
    by_day: dict[str, int] = {}
    for t in days:
        by_day[t.date().isoformat()] = by_day.get(t.date().isoformat(), 0) + 1
    return {"votes": mine, "battles": battles, "rank": 1 + sum(1 for c in counts.values() if c > mine),
            "participants": participants, "by_day": [{"date": d, "votes": n} for d, n in sorted(by_day.items())]}
