"""Battles and messages: a new anonymous battle (a sampled pair or a control battle), its state, and the turns
streamed from both models side by side."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Optional

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from latxa.serving.arena.core import ApiError, Arena
from latxa.serving.arena.db import Battle, Participant, Turn, Vote, utcnow
from latxa.serving.arena.deps import get_arena, participant
from latxa.serving.arena.schemas import APOLOGY, ERRORS, BattleIn, BattleOut, MessageIn

router = APIRouter(prefix="/api", responses=ERRORS)


@router.post("/battles", status_code=201, response_model=BattleOut)
def new_battle(body: Optional[BattleIn] = None, p: Participant = Depends(participant),
               arena: Arena = Depends(get_arena)) -> dict:
    settings = arena.settings
    arena.limit(f"battles:{p.id}", settings.rate_battles_per_minute)
    asked = body.sampling if body and body.sampling else None
    if asked and asked != settings.sampling and not arena.protocol.allow_sampling_override:
        raise ApiError(422, "validation_error",
                       f"This arena's protocol ({arena.protocol.name}) samples pairs {settings.sampling}ly.")
    mode = asked or settings.sampling
    bid = str(uuid.uuid4())   # the published dataset's conversation id
    now = utcnow()
    if arena.protocol.control_battles and settings.control_battles and arena.rng.random() < settings.control_rate:
        ctrl = arena.rng.choice(settings.control_battles)
        good_first = arena.rng.random() < 0.5
        a_text, b_text = (ctrl.good, ctrl.bad) if good_first else (ctrl.bad, ctrl.good)
        battle = Battle(id=bid, participant_id=p.id, model_a="control-good" if good_first else "control-bad",
                        model_b="control-bad" if good_first else "control-good", settings_a="{}",
                        settings_b="{}", sampling="control", is_control=True,
                        control_good="model_a" if good_first else "model_b", created_at=now,
                        last_answer_at=now, status="open")
        turns = [Turn(battle_id=bid, idx=0, user=ctrl.prompt, answer_a=a_text, answer_b=b_text, created_at=now)]
    else:
        a, b = arena.sampler.sample(mode)
        battle = Battle(id=bid, participant_id=p.id, model_a=a, model_b=b,
                        settings_a=arena.backends.settings(a).model_dump_json(),
                        settings_b=arena.backends.settings(b).model_dump_json(),
                        sampling=mode, is_control=False, control_good=None, created_at=now, status="open")
        turns = []
        arena.sampler.record_battle(a, b)
    with arena.sf() as s:
        s.add(battle)
        s.flush()
        for t in turns:
            s.add(t)
        s.commit()
        return arena.battle_out(s, battle)


@router.get("/battles/{battle_id}", response_model=BattleOut)
def get_battle(battle_id: str, p: Participant = Depends(participant), arena: Arena = Depends(get_arena)) -> dict:
    with arena.sf() as s:
        return arena.battle_out(s, arena.own_battle(s, battle_id, p))


@router.post("/battles/{battle_id}/messages",
             responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}})
async def send_message(battle_id: str, body: MessageIn, p: Participant = Depends(participant),
                       arena: Arena = Depends(get_arena)):
    settings = arena.settings
    if len(body.content) > settings.max_message_chars:
        raise ApiError(422, "validation_error",
                       f"The message is longer than {settings.max_message_chars} characters.")
    if not body.content.strip():
        raise ApiError(422, "validation_error", "The message is empty.")

    def prepare():
        with arena.sf() as s:
            b = arena.own_battle(s, battle_id, p)
            if b.is_control or s.execute(select(Vote.id).where(Vote.battle_id == b.id)).first():
                raise ApiError(409, "battle_closed", "This battle takes no more turns.")
            turns = s.execute(select(Turn).where(Turn.battle_id == b.id).order_by(Turn.idx)).scalars().all()
            if len(turns) >= settings.max_turns:
                raise ApiError(409, "battle_closed", f"A battle has at most {settings.max_turns} turns.")
            return b.model_a, b.model_b, [(t.user, t.answer_a, t.answer_b) for t in turns]

    model_a, model_b, history = await asyncio.to_thread(prepare)
    if battle_id in arena.busy:
        raise ApiError(409, "battle_busy", "The models are still answering the previous message.")
    arena.limit(f"messages:{p.id}", settings.rate_messages_per_minute)
    arena.busy.add(battle_id)
    turn_idx = len(history)

    def conv(side: int) -> list[dict]:
        msgs = []
        for u, a, b in history:
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": (a, b)[side]}]
        return msgs + [{"role": "user", "content": body.content}]

    queue: asyncio.Queue = asyncio.Queue()
    answers = {"a": [], "b": []}
    failed: set[str] = set()

    async def run(side: str, name: str) -> None:
        try:
            gen = arena.backends.astream(name, conv(0 if side == "a" else 1), arena.backends.settings(name))
            async for chunk in gen:
                if chunk["text"]:
                    answers[side].append(chunk["text"])
                    await queue.put({"type": "delta", "side": side, "text": chunk["text"]})
            await queue.put({"type": "done", "side": side})
        except Exception:  # noqa: BLE001 - a failing backend must not reveal itself or break the battle
            failed.add(side)
            answers[side] = [APOLOGY]
            await queue.put({"type": "error", "side": side, "message": APOLOGY})

    def persist() -> None:
        with arena.sf() as s:
            now = utcnow()
            s.add(Turn(battle_id=battle_id, idx=turn_idx, user=body.content, answer_a="".join(answers["a"]),
                       answer_b="".join(answers["b"]), created_at=now))
            b = s.get(Battle, battle_id)
            b.last_answer_at = now
            s.commit()

    tasks = [asyncio.create_task(run("a", model_a)), asyncio.create_task(run("b", model_b))]

    async def events():
        try:
            finished = 0
            while finished < 2:
                ev = await queue.get()
                if ev["type"] in ("done", "error"):
                    finished += 1
                yield ev
            await asyncio.to_thread(persist)
            yield {"type": "end", "turn": turn_idx + 1}
        finally:
            for t in tasks:
                t.cancel()
            arena.busy.discard(battle_id)

    if not body.stream:
        async for _ in events():
            pass
        return {"turn": turn_idx + 1, "a": "".join(answers["a"]), "b": "".join(answers["b"])}

    async def sse():
        async for ev in events():
            yield f"data: {json.dumps(ev, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
