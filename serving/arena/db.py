"""Arena storage: SQLAlchemy models, engine set-up and Alembic migrations.

SQLite (WAL, synchronous=FULL) under the state folder is the embedded default; any SQLAlchemy URL
(``postgresql+psycopg://...``) works. A vote is acknowledged only after its transaction commits, and with
synchronous=FULL a committed WAL transaction survives a killed process (and a power loss).

Text that a database cannot store never makes a write fail: PostgreSQL refuses U+0000 in text and UTF-8 has no
lone surrogates. The API refuses both in what people send (422); the free-text columns (:class:`StorableText`)
also clean whatever reaches them another way (model output, imports), so an answered turn is never lost to a
character. Statement parameters are kept out of error messages and logs (``hide_parameters``): they hold
password hashes and e-mail addresses.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from latxa.errors import LatxaError

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("latxa.arena.db")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as every supported database stores it: U+0000 dropped, lone surrogates replaced by U+FFFD."""
    if not UNSTORABLE.search(text):
        return text
    return UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


class StorableText(TypeDecorator):
    """TEXT whose bound values are cleaned by :func:`storable` (same column type: no migration)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ARG002 - the interface SQLAlchemy calls
        return storable(value) if isinstance(value, str) else value


class StorableString(TypeDecorator):
    """VARCHAR(n) whose bound values are cleaned by :func:`storable`."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ARG002 - the interface SQLAlchemy calls
        return storable(value) if isinstance(value, str) else value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(StorableString(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(StorableString(255), nullable=True)
    basque_level: Mapped[str] = mapped_column(String(16))
    education: Mapped[str] = mapped_column(String(32))
    consent_version: Mapped[str] = mapped_column(String(16))
    consent_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_reasons: Mapped[str] = mapped_column(String(255), default="")


class Session(Base):
    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Battle(Base):
    __tablename__ = "battles"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    model_a: Mapped[str] = mapped_column(String(128))
    model_b: Mapped[str] = mapped_column(String(128))
    # generation settings recorded per side (the reference stored A's settings for B)
    settings_a: Mapped[str] = mapped_column(StorableText, default="{}")
    settings_b: Mapped[str] = mapped_column(StorableText, default="{}")
    sampling: Mapped[str] = mapped_column(String(16), default="uniform")
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    control_good: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_answer_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(8), default="open")


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("battle_id", "idx"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    user: Mapped[str] = mapped_column(StorableText)
    answer_a: Mapped[str] = mapped_column(StorableText)
    answer_b: Mapped[str] = mapped_column(StorableText)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Vote(Base):
    __tablename__ = "votes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), unique=True)
    participant_id: Mapped[str] = mapped_column(ForeignKey("participants.id"), index=True)
    model_a: Mapped[str] = mapped_column(String(128))
    model_b: Mapped[str] = mapped_column(String(128))
    winner: Mapped[str] = mapped_column(String(8))
    winner_content: Mapped[str] = mapped_column(String(8))
    winner_language: Mapped[str] = mapped_column(String(8))
    winner_overall: Mapped[str | None] = mapped_column(String(8), nullable=True)
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    control_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reading_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(StorableText)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def default_url() -> str:
    from latxa.paths import state_dir

    path = state_dir() / "arena" / "arena.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    if url.startswith("sqlite"):
        # Room for every worker thread (AnyIO's default limit is 40) so connections are reused, not reopened
        # (each new SQLite connection re-runs the PRAGMAs) when the API is under load.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=48, max_overflow=16, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_size=16, max_overflow=32, pool_pre_ping=True, hide_parameters=True)
    return engine


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic (idempotent). Only `latxa arena migrate` and the server's
    start call this: reading a database never changes its schema."""
    from alembic import command

    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """(the database's Alembic revision or None, the code's head revision)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), head


class SchemaError(LatxaError):
    """The arena database's schema is not the one this code reads (one sentence naming the command to run)."""


def open_db(url: str | None = None, *, migrate_schema: bool = False) -> tuple[Engine, sessionmaker]:
    """An engine and session factory for the arena database. With ``migrate_schema`` (the server's start) the
    schema is brought to head first; otherwise a database at another revision is refused in one sentence."""
    engine = make_engine(url)
    if migrate_schema:
        migrate(engine)
    else:
        current, head = schema_revision(engine)
        if current != head:
            engine.dispose()
            state = f"at revision {current}" if current else "not initialised"
            shown = engine.url.render_as_string(hide_password=True)
            raise SchemaError(f"The arena database {shown} is {state} (this code reads {head}); run "
                              f"`latxa arena migrate --db {shown}` first.")
    return engine, sessionmaker(engine, expire_on_commit=False)


def rated_votes(session) -> list[dict]:
    """The votes that count in the ratings (no control battles, no flagged participants), oldest first, in the
    published schema's fields."""
    from sqlalchemy import select

    rows = session.execute(select(Vote.model_a, Vote.model_b, Vote.winner, Vote.winner_content, Vote.winner_language)
                           .join(Participant, Participant.id == Vote.participant_id)
                           .where(Vote.is_control.is_(False), Participant.flagged.is_(False))
                           .order_by(Vote.created_at)).all()
    return [dict(model_a=a, model_b=b, winner=w, winner_content=c, winner_language=l) for a, b, w, c, l in rows]


def record_turn(session_factory, battle_id: str, idx: int, user: str, answer_a: str, answer_b: str) -> dt.datetime:
    """Store an answered turn, then the battle's answer time, as two writes: the turn is committed on its own, so
    a failing later write (the battle row locked or unreachable for a moment) does not take the turn with it.
    Votes read the answer time from the turns (:func:`answered_at`), so they work either way. Raises only when
    the turn itself cannot be written."""
    from sqlalchemy import update

    now = utcnow()
    with session_factory() as s:
        s.add(Turn(battle_id=battle_id, idx=idx, user=user, answer_a=answer_a, answer_b=answer_b, created_at=now))
        s.commit()
    try:
        with session_factory() as s:
            s.execute(update(Battle).where(Battle.id == battle_id).values(last_answer_at=now))
            s.commit()
    except Exception as err:  # noqa: BLE001 - the turn is stored; this field is a convenience copy
        log.warning("battle %s: the answer time was not updated (%s); the turn is stored", battle_id,
                    type(err).__name__)
    return now


def answered_at_column():
    """A scalar subquery: when the battle's latest turn was answered (None before the first), correlated on
    ``battles.id``, for the vote's reading-time check."""
    from sqlalchemy import func, select

    return (select(func.max(Turn.created_at)).where(Turn.battle_id == Battle.__table__.c.id)
            .correlate(Battle.__table__).scalar_subquery())
