"""Public read-only resources: health, the configuration the UI renders, the leaderboard."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from latxa.serving.arena.core import Arena
from latxa.serving.arena.deps import get_arena
from latxa.serving.arena.schemas import ERRORS

router = APIRouter(prefix="/api", responses=ERRORS)


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.get("/config")
def config(arena: Arena = Depends(get_arena)) -> dict:
    settings, proto = arena.settings, arena.protocol
    reg = proto.registration
    return {"protocol": proto.public(),
            "consent": {"version": proto.consent.version, "licence": proto.consent.licence,
                        "title": proto.consent.title, "text": proto.consent.text},
            "basque_levels": [c.code for c in reg.basque_levels],
            "education_levels": [c.code for c in reg.education_levels],
            "questions": proto.questions, "choices": ["model_a", "model_b", "tie"],
            "min_reading_seconds": settings.min_reading_seconds, "max_turns": settings.max_turns,
            "max_message_chars": settings.max_message_chars,
            "leaderboard_min_battles": settings.leaderboard_min_battles}


@router.get("/leaderboard")
async def leaderboard(arena: Arena = Depends(get_arena)) -> dict:
    return await asyncio.to_thread(arena.leaderboard)
