"""Admin resources (X-Admin-Token): models with their battle and vote counts, flagged participants, totals, and
the export in the published schema."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import func, select

from latxa.serving.arena.backends import backend_kinds
from latxa.serving.arena.core import Arena
from latxa.serving.arena.db import Battle, Participant, Vote
from latxa.serving.arena.deps import admin, get_arena
from latxa.serving.arena.schemas import ERRORS

router = APIRouter(prefix="/api/admin", responses=ERRORS, dependencies=[Depends(admin)])


@router.get("/models")
def admin_models(arena: Arena = Depends(get_arena)) -> list[dict]:
    with arena.sf() as s:
        battles: dict[str, int] = {}
        for a, b in s.execute(select(Battle.model_a, Battle.model_b)):
            battles[a] = battles.get(a, 0) + 1
            battles[b] = battles.get(b, 0) + 1
        votes: dict[str, int] = {}
        for a, b in s.execute(select(Vote.model_a, Vote.model_b)):
            votes[a] = votes.get(a, 0) + 1
            votes[b] = votes.get(b, 0) + 1
    kinds = backend_kinds(arena.backends)
    return [{"name": n, "kind": kinds.get(n, "hf"), "battles": battles.get(n, 0), "votes": votes.get(n, 0)}
            for n in arena.backends.names()]


@router.get("/flagged")
async def admin_flagged(arena: Arena = Depends(get_arena)) -> list[dict]:
    return await asyncio.to_thread(arena.flagged)


@router.get("/stats")
def admin_stats(arena: Arena = Depends(get_arena)) -> dict:
    with arena.sf() as s:
        count = lambda q: s.scalar(select(func.count()).select_from(q))  # noqa: E731
        return {"participants": count(Participant), "battles": count(Battle),
                "votes": s.scalar(select(func.count()).select_from(Vote).where(Vote.is_control.is_(False))),
                "control_votes": s.scalar(select(func.count()).select_from(Vote).where(Vote.is_control.is_(True))),
                "flagged": s.scalar(select(func.count()).select_from(Participant)
                                    .where(Participant.flagged.is_(True)))}


@router.get("/export", responses={200: {"content": {"application/x-ndjson": {}}}})
def admin_export(sanitized: bool = Query(False), arena: Arena = Depends(get_arena)) -> Response:
    from latxa.serving.arena.export import export_rows

    specs = getattr(arena.backends, "specs", {}) or {}
    names = {n: sp.export_name for n, sp in specs.items() if getattr(sp, "export_name", None)}
    with arena.sf() as s:
        rows = export_rows(s, sanitized=sanitized, salt=arena.settings.export_salt,
                           timezone=arena.settings.export_timezone, export_names=names)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return Response(text, media_type="application/x-ndjson")
