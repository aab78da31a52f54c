"""The arena's shared state and plumbing: errors, the group-commit vote writer, and :class:`Arena` (database
sessions, backends, limiters, the pair sampler, caches) that every router reaches through ``app.state.arena``."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
import threading
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from latxa.serving.arena.abuse import RateLimiter, outlier_test
from latxa.serving.arena.backends import Backends
from latxa.serving.arena.db import Battle, Participant, Session, Turn, Vote, rated_votes, utcnow
from latxa.serving.arena.sampling import PairSampler
from latxa.serving.registry import ArenaSettings


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


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.replace(microsecond=t.microsecond).isoformat(timespec="milliseconds") + "Z"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class VoteWriter:
    """Group commit: one thread writes every vote waiting in the queue in one transaction (one fsync), then
    resolves each vote's future; a vote is acknowledged only after its transaction committed. If a batch hits a
    unique-constraint conflict (two submissions for one battle), its votes are retried one by one."""

    def __init__(self, engine, max_batch: int = 512, on_write=None):
        import queue
        import threading

        self.engine = engine
        self.max_batch = max_batch
        self.on_write = on_write   # on_write(conn, votes): runs in the votes' transaction (flags careless voters)
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
            if self.on_write is not None:
                self.on_write(conn, [v for v, _ in batch])

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
    """State shared by the routes: the protocol, database sessions, backends, limiters, sampler, caches."""

    def __init__(self, settings: ArenaSettings, session_factory, backends: Backends,
                 rng: random.Random | None = None):
        from argon2 import PasswordHasher

        from latxa.serving.arena.protocol import effective_settings, load_protocol

        self.protocol = load_protocol(settings.protocol)
        self.settings = effective_settings(settings, self.protocol)
        self.sf = session_factory
        self.backends = backends
        self.hasher = PasswordHasher()
        self.limiter = RateLimiter()
        self.rng = rng or random.Random()
        self.sampler = PairSampler(backends.names(), self.rng)
        self.busy: set[str] = set()
        self.engine = session_factory.kw["bind"]   # for the hot paths that use Core SQL instead of sessions
        self.writer = VoteWriter(self.engine, on_write=self._flag_on_write)
        self._tokens: dict[str, tuple[Participant, dt.datetime, float]] = {}  # token hash -> (who, expiry, cached at)
        self._leaderboard: tuple[float, dict] | None = None
        self._votes_arrived = threading.Event()
        with self.sf() as s:
            for a, b in s.execute(select(Battle.model_a, Battle.model_b).where(Battle.is_control.is_(False))):
                self.sampler.record_battle(a, b)
            for a, b, w in s.execute(select(Vote.model_a, Vote.model_b, Vote.winner)
                                     .where(Vote.is_control.is_(False)).order_by(Vote.created_at)):
                self.sampler.record_vote(a, b, w)
        if self.protocol.outlier_test:
            self._votes_arrived.set()   # a first check at start, over the votes already stored
            threading.Thread(target=self._outlier_loop, name="outlier-test", daemon=True).start()

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

    def models_out(self, model_a: str, model_b: str) -> dict | None:
        """The names after the vote, only where the protocol reveals them (the study never did)."""
        return {"model_a": model_a, "model_b": model_b} if self.protocol.reveal else None

    def vote_out(self, v: Vote) -> dict:
        return {"vote_id": v.id, "battle_id": v.battle_id, "winner": v.winner, "winner_content": v.winner_content,
                "winner_language": v.winner_language, "winner_overall": v.winner_overall,
                "created_at": _iso(v.created_at), "models": self.models_out(v.model_a, v.model_b)}

    def battle_out(self, s, b: Battle) -> dict:
        turns = s.execute(select(Turn).where(Turn.battle_id == b.id).order_by(Turn.idx)).scalars().all()
        vote = s.execute(select(Vote).where(Vote.battle_id == b.id)).scalar_one_or_none()
        out = {"battle_id": b.id, "status": "voted" if vote else "open", "created_at": _iso(b.created_at),
               "turns": [{"user": t.user, "a": t.answer_a, "b": t.answer_b} for t in turns],
               "vote": None, "models": None}
        if vote:
            out["vote"] = self.vote_out(vote)
            out["models"] = self.models_out(b.model_a, b.model_b)
        return out

    def own_battle(self, s, battle_id: str, participant: Participant) -> Battle:
        b = s.get(Battle, battle_id) if len(battle_id) <= 40 else None
        if b is None or b.participant_id != participant.id:
            raise ApiError(404, "not_found", "There is no such battle.")
        return b

    # -- the leaderboard
    def leaderboard(self) -> dict:
        from latxa.components.arena.ratings import compute_ratings, votes_from_records

        now = time.monotonic()
        if self._leaderboard and now - self._leaderboard[0] < self.settings.leaderboard_cache_seconds:
            return self._leaderboard[1]
        st = self.settings
        with self.sf() as s:
            records = rated_votes(s)
        out: dict[str, Any] = {"votes": len(records), "updated_at": _iso(utcnow()),
                               "hidden": not self.protocol.public_leaderboard, "min_battles": st.leaderboard_min_battles,
                               "prior_sd": st.leaderboard_prior_sd, "ratings": None, "pending": None}
        if self.protocol.public_leaderboard:
            res = compute_ratings(votes_from_records(records, "database"), st.leaderboard_bootstrap, seed=0,
                                  prior_sd=st.leaderboard_prior_sd, min_battles=st.leaderboard_min_battles)
            out["ratings"] = res["ratings"]
            out["pending"] = [{"model": m, **v} for m, v in res["pending"].items()]
            if st.leaderboard_min_battles:   # served models nobody has rated yet need all their battles
                seen = set(res["models"])
                out["pending"] += [{"model": m, "battles": 0, "needed": st.leaderboard_min_battles}
                                   for m in self.backends.names() if m not in seen]
        self._leaderboard = (now, out)
        return out

    # -- careless voters: flagged as their votes are written, never by reading a page
    def _flag(self, conn, reasons: dict[str, str]) -> None:
        """Add ``reasons[participant]`` to each participant's flags (sticky: a flag is never removed here)."""
        if not reasons:
            return
        part = Participant.__table__
        rows = conn.execute(select(part.c.id, part.c.flag_reasons).where(part.c.id.in_(list(reasons)))).all()
        changed = False
        for pid, current in rows:
            have = [r for r in (current or "").split(",") if r]
            if reasons[pid] in have:
                continue
            order = ["control_failures", "outlier"]
            new = ",".join(sorted({*have, reasons[pid]}, key=lambda r: order.index(r) if r in order else 9))
            conn.execute(update(part).where(part.c.id == pid).values(flagged=True, flag_reasons=new))
            changed = True
        if changed:
            self._leaderboard = None

    def _flag_on_write(self, conn, votes: list[Vote]) -> None:
        if any(not v.is_control for v in votes):
            self._votes_arrived.set()
        failed = {v.participant_id for v in votes if v.is_control and v.control_passed is False}
        if not failed:
            return
        vt = Vote.__table__
        counts = conn.execute(select(vt.c.participant_id, func.count())
                              .where(vt.c.participant_id.in_(list(failed)), vt.c.is_control.is_(True),
                                     vt.c.control_passed.is_(False))
                              .group_by(vt.c.participant_id)).all()
        self._flag(conn, {p: "control_failures" for p, n in counts if n >= self.settings.control_fail_flag})

    def _outlier_scan(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Vote.participant_id, Vote.model_a, Vote.model_b, Vote.winner)
                                .where(Vote.is_control.is_(False)).order_by(Vote.created_at)).all()
        code = {"model_a": 0, "model_b": 1, "tie": 2}
        return outlier_test([(p, a, b, code[w]) for p, a, b, w in rows], self.settings.outlier_alpha)

    def check_outliers(self) -> None:
        """The sequential outlier test over every rated vote; rejected participants are flagged."""
        outliers = self._outlier_scan()
        if outliers:
            with self.engine.begin() as conn:
                self._flag(conn, {p: "outlier" for p in outliers})

    def _outlier_loop(self) -> None:
        import logging

        while True:
            self._votes_arrived.wait()
            time.sleep(self.settings.outlier_check_seconds)   # one scan per burst of votes
            self._votes_arrived.clear()
            try:
                self.check_outliers()
            except Exception:  # noqa: BLE001 - a failed scan is retried with the next votes
                logging.getLogger("latxa.arena").exception("outlier test failed")

    def flagged(self) -> list[dict]:
        """The flagged participants, for the admin page (reads only: flags are set as votes are written)."""
        with self.sf() as s:
            ctrl: dict[str, list[int]] = {}
            for p, passed in s.execute(select(Vote.participant_id, Vote.control_passed).where(Vote.is_control.is_(True))):
                ctrl.setdefault(p, [0, 0])
                ctrl[p][1] += 1
                ctrl[p][0] += 0 if passed else 1
            people = s.execute(select(Participant).where(Participant.flagged.is_(True))
                               .order_by(Participant.created_at)).scalars().all()
        outliers = self._outlier_scan() if self.protocol.outlier_test and people else {}
        return [{"participant_id": p.id, "username": p.username,
                 "reasons": p.flag_reasons.split(",") if p.flag_reasons else [],
                 "control_failures": ctrl.get(p.id, [0, 0])[0], "control_total": ctrl.get(p.id, [0, 0])[1],
                 "outlier_p": outliers.get(p.id)} for p in people]


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
