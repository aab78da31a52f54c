"""The arena API (FastAPI): participants, anonymous battles, the three-question vote, reveal, ratings, admin.

The contract is docs/arena-api.md. Model backends are injected (``backends``: ``names()``,
``settings(name)``, ``astream(name, messages, settings)``), so the same app runs standalone with in-process
models, or inside the Ray Serve gateway with deployment handles.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import secrets
import time
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from latxa.serving.arena.abuse import RateLimiter, outlier_test
from latxa.serving.arena.db import Battle, Participant, Session, Turn, Vote, rated_votes, utcnow
from latxa.serving.arena.sampling import PairSampler
from latxa.serving.ratings import derive_winner
from latxa.serving.registry import ArenaSettings

Choice = Literal["model_a", "model_b", "tie"]
BASQUE_LEVELS = ["A1", "A2", "B1", "B2", "C1", "C2", "native"]
EDUCATION_LEVELS = ["primary", "secondary", "vocational", "bachelor", "master", "phd", "other"]
CONSENT = {
    "version": "1",
    "licence": "CC0-1.0",
    "text": ("Zure galderak, bi ereduen erantzunak eta zure balorazioak CC0-1.0 lizentziapean argitaratuko dira, "
             "zure identitatea ezkutatuta (erabiltzaile-izenaren hash bat). Ez idatzi datu pertsonalik."),
}
QUESTIONS = {"content": "Zein erantzunek du eduki hobea?", "language": "Zein erantzunek du euskara hobea?",
             "overall": "Orokorrean, zein da hobea?"}
APOLOGY = "Barkatu, arazo bat egon da erantzuna sortzean."
USERNAME_RE = r"^[A-Za-z0-9_.-]{3,40}$"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details, headers


def _error(status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None):
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


# ----------------------------------------------------------------------------- request/response models
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    username: str = Field(pattern=USERNAME_RE)
    password: str = Field(min_length=8, max_length=256)
    consent: bool
    basque_level: Literal["A1", "A2", "B1", "B2", "C1", "C2", "native"]
    education: Literal["primary", "secondary", "vocational", "bachelor", "master", "phd", "other"]
    email: Optional[str] = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class LoginIn(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenOut(BaseModel):
    participant_id: str
    username: str
    token: str


class BattleIn(Strict):
    sampling: Optional[Literal["adaptive", "uniform"]] = None


class MessageIn(Strict):
    content: str = Field(min_length=1, max_length=100_000)
    stream: bool = True


class VoteIn(Strict):
    content: Choice
    language: Choice
    overall: Optional[Choice] = None


class VoteOut(BaseModel):
    vote_id: str
    battle_id: str
    winner: Choice
    winner_content: Choice
    winner_language: Choice
    winner_overall: Optional[Choice]
    created_at: str
    models: dict[str, str]


class TurnOut(BaseModel):
    user: str
    a: str
    b: str


class BattleOut(BaseModel):
    battle_id: str
    status: Literal["open", "voted"]
    created_at: str
    turns: list[TurnOut]
    vote: Optional[VoteOut] = None
    models: Optional[dict[str, str]] = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Optional[dict] = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 422, 425, 429)}


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.replace(microsecond=t.microsecond).isoformat(timespec="milliseconds") + "Z"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# ----------------------------------------------------------------------------- the app
class VoteWriter:
    """Group commit: one thread writes every vote waiting in the queue in one transaction (one fsync), then
    resolves each vote's future; a vote is acknowledged only after its transaction committed. If a batch hits a
    unique-constraint conflict (two submissions for one battle), its votes are retried one by one."""

    def __init__(self, engine, max_batch: int = 512):
        import queue
        import threading

        self.engine = engine
        self.max_batch = max_batch
        self.q: "queue.SimpleQueue" = queue.SimpleQueue()
        threading.Thread(target=self._run, name="vote-writer", daemon=True).start()

    def submit(self, vote: Vote):
        from concurrent.futures import Future

        fut: Future = Future()
        self.q.put((vote, fut))
        return fut

    def _write(self, batch) -> None:
        from sqlalchemy import insert, update

        # Core statements (one executemany), not the ORM unit of work: at hundreds of votes per second the ORM's
        # per-object bookkeeping was a large share of the writer's time. The Vote objects stay transient.
        votes, battles = Vote.__table__, Battle.__table__
        cols = [c.key for c in votes.columns]
        with self.engine.begin() as conn:
            conn.execute(insert(votes), [{c: getattr(v, c) for c in cols} for v, _ in batch])
            conn.execute(update(battles).where(battles.c.id.in_([v.battle_id for v, _ in batch])).values(status="voted"))

    def _run(self) -> None:
        import queue

        while True:
            batch = [self.q.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
                for v, fut in batch:
                    fut.set_result(v)
            except IntegrityError:
                for v, fut in batch:
                    try:
                        self._write([(v, fut)])
                        fut.set_result(v)
                    except Exception as err:  # noqa: BLE001 - handed to the waiting request
                        fut.set_exception(err)
            except Exception as err:  # noqa: BLE001
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)


class Arena:
    """State shared by the routes: database sessions, backends, limiters, sampler, caches."""

    def __init__(self, settings: ArenaSettings, session_factory, backends, rng: random.Random | None = None):
        from argon2 import PasswordHasher

        self.settings = settings
        self.sf = session_factory
        self.backends = backends
        self.hasher = PasswordHasher()
        self.limiter = RateLimiter()
        self.rng = rng or random.Random()
        self.sampler = PairSampler(backends.names(), self.rng)
        self.busy: set[str] = set()
        self.engine = session_factory.kw["bind"]   # for the hot paths that use Core SQL instead of sessions
        self.writer = VoteWriter(self.engine)
        self._tokens: dict[str, tuple[Participant, dt.datetime, float]] = {}  # token hash -> (who, expiry, cached at)
        self._leaderboard: tuple[float, dict] | None = None
        with self.sf() as s:
            for a, b in s.execute(select(Battle.model_a, Battle.model_b).where(Battle.is_control.is_(False))):
                self.sampler.record_battle(a, b)
            for a, b, w in s.execute(select(Vote.model_a, Vote.model_b, Vote.winner)
                                     .where(Vote.is_control.is_(False)).order_by(Vote.created_at)):
                self.sampler.record_vote(a, b, w)

    # -- helpers
    def limit(self, key: str, limit: int) -> None:
        wait = self.limiter.hit(key, limit)
        if wait:
            secs = max(1, int(wait + 0.999))
            raise ApiError(429, "rate_limited", "Too many requests; please wait a moment and try again.",
                           {"retry_after_s": secs}, {"Retry-After": str(secs)})

    def issue_token(self, s, participant_id: str) -> str:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        s.add(Session(token_hash=_token_hash(token), participant_id=participant_id, created_at=now,
                      expires_at=now + dt.timedelta(days=self.settings.token_days)))
        return token

    def vote_out(self, v: Vote) -> dict:
        return {"vote_id": v.id, "battle_id": v.battle_id, "winner": v.winner, "winner_content": v.winner_content,
                "winner_language": v.winner_language, "winner_overall": v.winner_overall,
                "created_at": _iso(v.created_at), "models": {"model_a": v.model_a, "model_b": v.model_b}}

    def battle_out(self, s, b: Battle) -> dict:
        turns = s.execute(select(Turn).where(Turn.battle_id == b.id).order_by(Turn.idx)).scalars().all()
        vote = s.execute(select(Vote).where(Vote.battle_id == b.id)).scalar_one_or_none()
        out = {"battle_id": b.id, "status": "voted" if vote else "open", "created_at": _iso(b.created_at),
               "turns": [{"user": t.user, "a": t.answer_a, "b": t.answer_b} for t in turns],
               "vote": None, "models": None}
        if vote:
            out["vote"] = self.vote_out(vote)
            out["models"] = {"model_a": b.model_a, "model_b": b.model_b}
        return out

    def own_battle(self, s, battle_id: str, participant: Participant) -> Battle:
        b = s.get(Battle, battle_id) if len(battle_id) <= 40 else None
        if b is None or b.participant_id != participant.id:
            raise ApiError(404, "not_found", "There is no such battle.")
        return b

    def leaderboard(self) -> dict:
        from latxa.serving.ratings import compute_ratings, votes_from_records

        now = time.monotonic()
        if self._leaderboard and now - self._leaderboard[0] < self.settings.leaderboard_cache_seconds:
            return self._leaderboard[1]
        with self.sf() as s:
            records = rated_votes(s)
        res = compute_ratings(votes_from_records(records, "database"), self.settings.leaderboard_bootstrap, seed=0)
        out = {"votes": len(records), "updated_at": _iso(utcnow()), "ratings": res["ratings"]}
        self._leaderboard = (now, out)
        return out

    def flagged(self) -> list[dict]:
        with self.sf() as s:
            rows = s.execute(select(Vote.participant_id, Vote.model_a, Vote.model_b, Vote.winner, Vote.is_control,
                                    Vote.control_passed).order_by(Vote.created_at)).all()
            code = {"model_a": 0, "model_b": 1, "tie": 2}
            outliers = outlier_test([(p, a, b, code[w]) for p, a, b, w, c, _ in rows if not c],
                                    self.settings.outlier_alpha)
            ctrl: dict[str, list[int]] = {}
            for p, _, _, _, c, passed in rows:
                if c:
                    ctrl.setdefault(p, [0, 0])
                    ctrl[p][1] += 1
                    ctrl[p][0] += 0 if passed else 1
            out = []
            for p in s.execute(select(Participant).order_by(Participant.created_at)).scalars():
                reasons = []
                fails, total = ctrl.get(p.id, [0, 0])
                if fails >= self.settings.control_fail_flag:
                    reasons.append("control_failures")
                if p.id in outliers:
                    reasons.append("outlier")
                if reasons and (not p.flagged or p.flag_reasons != ",".join(reasons)):
                    p.flagged, p.flag_reasons = True, ",".join(reasons)
                if p.flagged:
                    out.append({"participant_id": p.id, "username": p.username,
                                "reasons": p.flag_reasons.split(",") if p.flag_reasons else [],
                                "control_failures": fails, "control_total": total,
                                "outlier_p": outliers.get(p.id)})
            s.commit()
        self._leaderboard = None
        return out


def create_arena_app(settings: ArenaSettings, session_factory, backends, rng: random.Random | None = None,
                     app: FastAPI | None = None) -> FastAPI:
    """Build the arena FastAPI app (or add its routes to ``app``)."""
    arena = Arena(settings, session_factory, backends, rng)
    app = app or FastAPI(title="Latxa arena API", version="1", openapi_url="/api/openapi.json",
                         docs_url="/api/docs", redoc_url=None)
    app.state.arena = arena
    install_error_handlers(app)
    r = APIRouter(prefix="/api", responses=ERRORS)

    def client_ip(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    # The two dependencies below are async so that a request does not pay a worker-thread hop just to check a
    # rate limit or a cached token; only a cache miss reads the database (in a thread).
    async def ip_limit(request: Request) -> str:
        ip = client_ip(request)
        arena.limit(f"ip:{ip}", settings.rate_requests_per_minute_ip)
        return ip

    def lookup_session(th: str) -> Participant:
        with arena.sf() as s:
            sess = s.get(Session, th)
            if sess is None or sess.expires_at < utcnow():
                raise ApiError(401, "unauthorized", "The session token is unknown or expired; log in again.")
            p = s.get(Participant, sess.participant_id)
        if len(arena._tokens) > 100_000:
            arena._tokens.clear()
        arena._tokens[th] = (p, sess.expires_at, time.monotonic())
        return p

    async def participant(authorization: Optional[str] = Header(None), _ip: str = Depends(ip_limit)) -> Participant:
        if not authorization or not authorization.startswith("Bearer ") or len(authorization) > 512:
            raise ApiError(401, "unauthorized", "Log in first: send Authorization: Bearer <token>.")
        th = _token_hash(authorization[7:].strip())
        hit = arena._tokens.get(th)
        if hit and time.monotonic() - hit[2] < 30 and hit[1] >= utcnow():
            return hit[0]
        return await asyncio.to_thread(lookup_session, th)

    def admin(x_admin_token: Optional[str] = Header(None), _ip: str = Depends(ip_limit)) -> None:
        expected = settings.admin_token
        if not expected:
            raise ApiError(403, "admin_disabled", "Admin endpoints are disabled: no admin token is configured.")
        if not x_admin_token or not secrets.compare_digest(x_admin_token.encode("utf-8", "surrogatepass"),
                                                           expected.encode()):
            raise ApiError(401, "unauthorized", "A valid X-Admin-Token header is required.")

    @r.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @r.get("/config")
    def config() -> dict:
        return {"consent": CONSENT, "basque_levels": BASQUE_LEVELS, "education_levels": EDUCATION_LEVELS,
                "questions": QUESTIONS, "choices": ["model_a", "model_b", "tie"],
                "min_reading_seconds": settings.min_reading_seconds, "max_turns": settings.max_turns,
                "max_message_chars": settings.max_message_chars}

    @r.post("/participants", status_code=201, response_model=TokenOut)
    def register(body: RegisterIn, ip: str = Depends(ip_limit)) -> dict:
        arena.limit(f"auth-ip:{ip}", settings.rate_auth_per_minute_ip)
        if not body.consent:
            raise ApiError(422, "consent_required", "Registration needs consent to the data licence (consent: true).")
        pid = "p_" + secrets.token_hex(8)
        with arena.sf() as s:
            if s.execute(select(Participant.id).where(Participant.username == body.username)).first():
                raise ApiError(409, "username_taken", "That username is already taken.")
            now = utcnow()
            s.add(Participant(id=pid, username=body.username, password_hash=arena.hasher.hash(body.password),
                              email=body.email, basque_level=body.basque_level, education=body.education,
                              consent_version=CONSENT["version"], consent_at=now, created_at=now,
                              flagged=False, flag_reasons=""))
            s.flush()
            token = arena.issue_token(s, pid)
            try:
                s.commit()
            except IntegrityError:
                raise ApiError(409, "username_taken", "That username is already taken.") from None
        return {"participant_id": pid, "username": body.username, "token": token}

    @r.post("/sessions", response_model=TokenOut)
    def login(body: LoginIn, ip: str = Depends(ip_limit)) -> dict:
        from argon2.exceptions import VerificationError

        arena.limit(f"auth-ip:{ip}", settings.rate_auth_per_minute_ip)
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

    @r.delete("/sessions", status_code=204)
    def logout(authorization: Optional[str] = Header(None), _p: Participant = Depends(participant)) -> Response:
        arena._tokens.pop(_token_hash(authorization[7:].strip()), None)
        with arena.sf() as s:
            sess = s.get(Session, _token_hash(authorization[7:].strip()))
            if sess:
                s.delete(sess)
                s.commit()
        return Response(status_code=204)

    @r.get("/me")
    def me(p: Participant = Depends(participant)) -> dict:
        with arena.sf() as s:
            votes = s.scalar(select(func.count()).select_from(Vote).where(Vote.participant_id == p.id))
            battles = s.scalar(select(func.count()).select_from(Battle).where(Battle.participant_id == p.id))
        return {"participant_id": p.id, "username": p.username, "basque_level": p.basque_level,
                "education": p.education, "created_at": _iso(p.created_at), "votes": votes, "battles": battles}

    @r.get("/me/contributions")
    def contributions(p: Participant = Depends(participant)) -> dict:
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

    @r.post("/battles", status_code=201, response_model=BattleOut)
    def new_battle(body: Optional[BattleIn] = None, p: Participant = Depends(participant)) -> dict:
        arena.limit(f"battles:{p.id}", settings.rate_battles_per_minute)
        mode = (body.sampling if body and body.sampling else None) or settings.sampling
        bid = "b_" + secrets.token_hex(12)
        now = utcnow()
        if settings.control_battles and arena.rng.random() < settings.control_rate:
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

    @r.get("/battles/{battle_id}", response_model=BattleOut)
    def get_battle(battle_id: str, p: Participant = Depends(participant)) -> dict:
        with arena.sf() as s:
            return arena.battle_out(s, arena.own_battle(s, battle_id, p))

    @r.post("/battles/{battle_id}/messages",
            responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}})
    async def send_message(battle_id: str, body: MessageIn, p: Participant = Depends(participant)):
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

    battles, votes = Battle.__table__, Vote.__table__
    vote_check = (select(battles.c.participant_id, battles.c.model_a, battles.c.model_b, battles.c.is_control,
                         battles.c.control_good, battles.c.last_answer_at, *votes.columns)
                  .select_from(battles.outerjoin(votes, votes.c.battle_id == battles.c.id))
                  .where(battles.c.id == bindparam("battle_id")))   # built once: no per-request cache-key work

    @r.post("/battles/{battle_id}/vote", response_model=VoteOut)
    async def vote(battle_id: str, body: VoteIn, request: Request, p: Participant = Depends(participant)) -> dict:
        overall = body.overall if body.content != body.language else None
        if body.content != body.language and overall is None:
            raise ApiError(422, "overall_required",
                           "Content and language disagree, so the overall question must be answered too.")
        winner = derive_winner(body.content, body.language, overall)

        def check():
            # One Core query for the battle and its vote: loading ORM entities here cost more than the rest of
            # the request under load.
            if len(battle_id) > 40:
                raise ApiError(404, "not_found", "There is no such battle.")
            with arena.engine.connect() as conn:
                row = conn.execute(vote_check, {"battle_id": battle_id}).first()
            if row is None or row[0] != p.id:
                raise ApiError(404, "not_found", "There is no such battle.")
            _, model_a, model_b, is_control, control_good, last_answer_at = row[:6]
            if row[6] is not None:   # votes.id: this battle already has a vote
                existing = Vote(**dict(zip((c.key for c in votes.columns), row[6:], strict=True)))
                return same_or_conflict(existing, body.content, body.language, overall)
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
        arena.limit(f"votes-ip:{request.client.host if request.client else 'unknown'}", settings.rate_votes_per_minute * 4)
        try:
            # acknowledged only once the group commit holding this vote is durable
            await asyncio.wrap_future(arena.writer.submit(v))
        except IntegrityError:  # a concurrent submission for the same battle won
            def reread():
                with arena.sf() as s:
                    existing = s.execute(select(Vote).where(Vote.battle_id == battle_id)).scalar_one()
                    return same_or_conflict(existing, body.content, body.language, overall)

            return await asyncio.to_thread(reread)
        if not v.is_control:
            arena.sampler.record_vote(v.model_a, v.model_b, winner)
        return arena.vote_out(v)

    def same_or_conflict(v: Vote, content: str, language: str, overall: str | None) -> dict:
        if (v.winner_content, v.winner_language, v.winner_overall) != (content, language, overall):
            raise ApiError(409, "vote_conflict", "This battle already has a different vote.")
        return arena.vote_out(v)

    @r.get("/leaderboard")
    async def leaderboard() -> dict:
        return await asyncio.to_thread(arena.leaderboard)

    # -- admin
    @r.get("/admin/models", dependencies=[Depends(admin)])
    def admin_models() -> list[dict]:
        with arena.sf() as s:
            battles: dict[str, int] = {}
            for a, b in s.execute(select(Battle.model_a, Battle.model_b)):
                battles[a] = battles.get(a, 0) + 1
                battles[b] = battles.get(b, 0) + 1
            votes: dict[str, int] = {}
            for a, b in s.execute(select(Vote.model_a, Vote.model_b)):
                votes[a] = votes.get(a, 0) + 1
                votes[b] = votes.get(b, 0) + 1
        kinds = getattr(arena.backends, "kinds", lambda: {})()
        return [{"name": n, "kind": kinds.get(n, "hf"), "battles": battles.get(n, 0), "votes": votes.get(n, 0)}
                for n in arena.backends.names()]

    @r.get("/admin/flagged", dependencies=[Depends(admin)])
    async def admin_flagged() -> list[dict]:
        return await asyncio.to_thread(arena.flagged)

    @r.get("/admin/stats", dependencies=[Depends(admin)])
    def admin_stats() -> dict:
        with arena.sf() as s:
            count = lambda q: s.scalar(select(func.count()).select_from(q))  # noqa: E731
            return {"participants": count(Participant), "battles": count(Battle),
                    "votes": s.scalar(select(func.count()).select_from(Vote).where(Vote.is_control.is_(False))),
                    "control_votes": s.scalar(select(func.count()).select_from(Vote).where(Vote.is_control.is_(True))),
                    "flagged": s.scalar(select(func.count()).select_from(Participant).where(Participant.flagged.is_(True)))}

    @r.get("/admin/export", dependencies=[Depends(admin)],
           responses={200: {"content": {"application/x-ndjson": {}}}})
    def admin_export(sanitized: bool = Query(False)) -> Response:
        from latxa.serving.arena.export import export_rows

        with arena.sf() as s:
            rows = export_rows(s, sanitized=sanitized, salt=settings.export_salt)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return Response(text, media_type="application/x-ndjson")

    app.include_router(r)
    return app


def install_error_handlers(app: FastAPI) -> None:
    if getattr(app.state, "latxa_errors", False):
        return
    app.state.latxa_errors = True

    @app.exception_handler(ApiError)
    async def _api_error(_request, err: ApiError):
        return _error(err.status, err.code, err.message, err.details, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        msg = first.get("msg", "invalid request")
        return _error(422, "validation_error", f"Invalid request: {loc + ': ' if loc else ''}{msg}.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, err: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(err.status_code, "error")
        return _error(err.status_code, code, str(err.detail).rstrip(".") + ".", headers=getattr(err, "headers", None))
