"""Votes: the three-question vote on a battle, written through the group-commit writer and acknowledged only once
durable; a repeated identical vote answers the stored one, a different one is a conflict."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Depends, Request
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from latxa.serving.arena.core import ApiError, Arena
from latxa.serving.arena.db import Battle, Participant, Vote, utcnow
from latxa.serving.arena.deps import client_ip, get_arena, participant
from latxa.serving.arena.schemas import ERRORS, VoteIn, VoteOut

router = APIRouter(prefix="/api", responses=ERRORS)

_battles, _votes = Battle.__table__, Vote.__table__
# Built once at import: no per-request cache-key work on the hottest path.
VOTE_CHECK = (select(_battles.c.participant_id, _battles.c.model_a, _battles.c.model_b, _battles.c.is_control,
                     _battles.c.control_good, _battles.c.last_answer_at, *_votes.columns)
              .select_from(_battles.outerjoin(_votes, _votes.c.battle_id == _battles.c.id))
              .where(_battles.c.id == bindparam("battle_id")))


def same_or_conflict(arena: Arena, v: Vote, content: str, language: str, overall: str | None) -> dict:
    if (v.winner_content, v.winner_language, v.winner_overall) != (content, language, overall):
        raise ApiError(409, "vote_conflict", "This battle already has a different vote.")
    return arena.vote_out(v)


@router.post("/battles/{battle_id}/vote", response_model=VoteOut)
async def vote(battle_id: str, body: VoteIn, request: Request, p: Participant = Depends(participant),
               arena: Arena = Depends(get_arena)) -> dict:
    settings = arena.settings
    try:
        winner, overall = arena.protocol.winner(body.content, body.language, body.overall)
    except ValueError:
        raise ApiError(422, "overall_required",
                       "Content and language disagree, so the overall question must be answered too.") from None

    def check():
        # One Core query for the battle and its vote: loading ORM entities here cost more than the rest of
        # the request under load.
        if len(battle_id) > 40:
            raise ApiError(404, "not_found", "There is no such battle.")
        with arena.engine.connect() as conn:
            row = conn.execute(VOTE_CHECK, {"battle_id": battle_id}).first()
        if row is None or row[0] != p.id:
            raise ApiError(404, "not_found", "There is no such battle.")
        _, model_a, model_b, is_control, control_good, last_answer_at = row[:6]
        if row[6] is not None:   # votes.id: this battle already has a vote
            existing = Vote(**dict(zip((c.key for c in _votes.columns), row[6:], strict=True)))
            return same_or_conflict(arena, existing, body.content, body.language, overall)
        if last_answer_at is None:
            raise ApiError(409, "no_answers", "Send a message and read both answers before voting.")
        read = (utcnow() - last_answer_at).total_seconds()
        if read < settings.min_reading_seconds:
            wait = round(settings.min_reading_seconds - read, 2)
            raise ApiError(425, "too_early", "Please read both answers before voting.", {"retry_after_s": wait})
        return Vote(id="v_" + secrets.token_hex(12), battle_id=battle_id, participant_id=p.id, model_a=model_a,
                    model_b=model_b, winner=winner, winner_content=body.content, winner_language=body.language,
                    winner_overall=overall, is_control=is_control,
                    control_passed=(body.content == control_good) if is_control else None,
                    reading_seconds=read, created_at=utcnow())

    v = await asyncio.to_thread(check)
    if isinstance(v, dict):  # the same vote again
        return v
    arena.limit(f"votes:{p.id}", settings.rate_votes_per_minute)
    arena.limit(f"votes-ip:{client_ip(request)}", settings.rate_votes_per_minute * 4)
    try:
        # acknowledged only once the group commit holding this vote is durable
        await asyncio.wrap_future(arena.writer.submit(v))
    except IntegrityError:  # a concurrent submission for the same battle won
        def reread():
            with arena.sf() as s:
                existing = s.execute(select(Vote).where(Vote.battle_id == battle_id)).scalar_one()
                return same_or_conflict(arena, existing, body.content, body.language, overall)

        return await asyncio.to_thread(reread)
    if not v.is_control:
        arena.sampler.record_vote(v.model_a, v.model_b, winner)
    return arena.vote_out(v)
