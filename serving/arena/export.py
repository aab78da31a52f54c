"""Export the votes in the published dataset's exact format (HiTZ/ebaluatoia; see latxa.components.arena.dataset).

Two configs: ``<name>`` (every non-control vote) and ``<name>-sanitized`` (flagged participants dropped, e-mail
addresses, URLs and phone numbers masked in the conversations). Field values as published: the conversation's
UUID, a pseudonymised username (salted, signed 64-bit), the CEFR group and education codes, a naive ISO timestamp
with microseconds in ``export_timezone`` (the study's: the server's local time), the arena's model names (or each
model's ``export_name``), and both conversations with the system turn first, the system prompt spelt with the
vote's date as the reference wrote it when saving. E-mail addresses of participants are never exported.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from pathlib import Path

from sqlalchemy import select

from latxa.components.arena.dataset import EDUCATION_EXPORT, LEVEL_EXPORT, pseudonym, write_published
from latxa.serving.arena.db import Battle, Participant, Setting, Turn, Vote
from latxa.serving.prompts import render

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL_RE = re.compile(r"(?:https?://|www\.)\S+")
PHONE_RE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")
CARD = ("Pairwise human preferences from the Latxa arena in the published Ebaluatoia format. `username` is a salted "
        "pseudonym of the participant; e-mail addresses are never exported. The `-sanitized` config drops "
        "participants flagged by control battles or the outlier test and masks e-mail addresses, URLs and phone "
        "numbers in the conversations.")


def scrub(text: str) -> str:
    text = EMAIL_RE.sub("[EMAIL]", text)
    text = URL_RE.sub("[URL]", text)
    return PHONE_RE.sub("[PHONE]", text)


def export_salt(session, configured: str | None = None) -> str:
    """The salt of the participant pseudonyms: configured, or generated once and kept in the database."""
    if configured:
        return configured
    row = session.get(Setting, "export_salt")
    if row is None:
        row = Setting(key="export_salt", value=secrets.token_hex(16))
        session.add(row)
        session.commit()
    return row.value


def conversation_id(battle_id: str) -> str:
    """Battles are UUID4s; ids of older battles (``b_<hex>``) map to a stable UUID."""
    try:
        return str(uuid.UUID(battle_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"latxa-arena:{battle_id}"))


def local_timestamp(t: dt.datetime, zone: str) -> str:
    """A stored (naive UTC) time as the published timestamps: naive local ISO 8601 (``datetime.isoformat``)."""
    from zoneinfo import ZoneInfo

    return t.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat()


def _system_turn(settings_json: str, at: dt.datetime) -> list[dict]:
    try:
        prompt = json.loads(settings_json or "{}").get("system_prompt", "default")
    except (ValueError, AttributeError):
        prompt = "default"
    text = render(prompt, at.replace(tzinfo=dt.timezone.utc).timestamp())
    return [{"role": "system", "content": text}] if text else []


def export_rows(session, sanitized: bool = False, salt: str | None = None, *, timezone: str = "UTC",
                export_names: dict[str, str] | None = None, drop_flagged: bool = False) -> list[dict]:
    """The non-control votes as published rows; ``sanitized``: flagged participants dropped and contact details
    masked; ``drop_flagged`` alone drops them without masking (what the ratings and the report use)."""
    salt = export_salt(session, salt)
    names = export_names or {}
    q = (select(Vote, Participant, Battle).join(Participant, Participant.id == Vote.participant_id)
         .join(Battle, Battle.id == Vote.battle_id).where(Vote.is_control.is_(False)).order_by(Vote.created_at))
    turns: dict[str, list[Turn]] = {}
    for t in session.execute(select(Turn).order_by(Turn.battle_id, Turn.idx)).scalars():
        turns.setdefault(t.battle_id, []).append(t)
    rows = []
    for v, p, b in session.execute(q).all():
        if (sanitized or drop_flagged) and p.flagged:
            continue
        clean = scrub if sanitized else (lambda s: s)
        conv_a, conv_b = _system_turn(b.settings_a, v.created_at), _system_turn(b.settings_b, v.created_at)
        for t in turns.get(b.id, []):
            conv_a += [{"role": "user", "content": clean(t.user)}, {"role": "assistant", "content": clean(t.answer_a)}]
            conv_b += [{"role": "user", "content": clean(t.user)}, {"role": "assistant", "content": clean(t.answer_b)}]
        rows.append({"id": conversation_id(b.id), "username": pseudonym(salt, p.id),
                     "user_language": LEVEL_EXPORT.get(p.basque_level, p.basque_level),
                     "user_education": EDUCATION_EXPORT.get(p.education, p.education),
                     "timestamp": local_timestamp(v.created_at, timezone),
                     "model_a": names.get(v.model_a, v.model_a), "model_b": names.get(v.model_b, v.model_b),
                     "conv_a": conv_a, "conv_b": conv_b,
                     "winner": v.winner, "winner_content": v.winner_content, "winner_language": v.winner_language})
    return rows


def write_dataset(rows_full: list[dict], rows_sanitized: list[dict], out: str | Path, name: str) -> dict:
    """Both configs as the published files (``data/<name>.jsonl.gz``, ``data/<name>.sanitized.jsonl.gz``) + card."""
    return write_published(out, name, rows_full, rows_sanitized, "# Latxa arena votes\n\n" + CARD)
