"""Public read-only resources: health, the configuration the UI renders, the leaderboard."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from latxa.serving.arena.core import Arena
from latxa.serving.arena.deps import get_arena
from latxa.serving.arena.schemas import BASQUE_LEVELS, CONSENT, EDUCATION_LEVELS, ERRORS, QUESTIONS

router = APIRouter(prefix="/api", responses=ERRORS)


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.get("/config")
def config(arena: Arena = Depends(get_arena)) -> dict:
    settings = arena.settings
    return {"consent": CONSENT, "basque_levels": BASQUE_LEVELS, "education_levels": EDUCATION_LEVELS,
            "questions": QUESTIONS, "choices": ["model_a", "model_b", "tie"],
            "min_reading_seconds": settings.min_reading_seconds, "max_turns": settings.max_turns,
            "max_message_chars": settings.max_message_chars}


@router.get("/leaderboard")
async def leaderboard(arena: Arena = Depends(get_arena)) -> dict:
    return await asyncio.to_thread(arena.leaderboard)
