"""Export the votes as a Hugging Face dataset (Parquet) in the reference's published schema.

Schema (HiTZ/ebaluatoia): id, username (hashed), user_language, user_education, timestamp, model_a, model_b,
conv_a, conv_b (lists of {role, content}), winner, winner_content, winner_language. Two configs are written:
``<name>`` (every non-control vote) and ``<name>-sanitized`` (flagged participants dropped, e-mail addresses,
URLs and phone numbers masked in the conversations). E-mail addresses of participants are never exported.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

from sqlalchemy import select

from latxa.serving.arena.db import Battle, Participant, Setting, Turn, Vote

EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
URL_RE = re.compile(r"(?:https?://|www\.)\S+")
PHONE_RE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")
COLUMNS = ["id", "username", "user_language", "user_education", "timestamp", "model_a", "model_b", "conv_a",
           "conv_b", "winner", "winner_content", "winner_language"]


def scrub(text: str) -> str:
    text = EMAIL_RE.sub("[EMAIL]", text)
    text = URL_RE.sub("[URL]", text)
    return PHONE_RE.sub("[PHONE]", text)


def export_salt(session, configured: str | None = None) -> str:
    """The salt of the participant-id hashes: configured, or generated once and kept in the database."""
    if configured:
        return configured
    row = session.get(Setting, "export_salt")
    if row is None:
        row = Setting(key="export_salt", value=secrets.token_hex(16))
        session.add(row)
        session.commit()
    return row.value


def hash_id(salt: str, participant_id: str) -> str:
    return hashlib.sha256(f"{salt}:{participant_id}".encode()).hexdigest()[:32]


def export_rows(session, sanitized: bool = False, salt: str | None = None) -> list[dict]:
    salt = export_salt(session, salt)
    q = (select(Vote, Participant, Battle).join(Participant, Participant.id == Vote.participant_id)
         .join(Battle, Battle.id == Vote.battle_id).where(Vote.is_control.is_(False)).order_by(Vote.created_at))
    turns: dict[str, list[Turn]] = {}
    for t in session.execute(select(Turn).order_by(Turn.battle_id, Turn.idx)).scalars():
        turns.setdefault(t.battle_id, []).append(t)
    rows = []
    for v, p, b in session.execute(q).all():
        if sanitized and p.flagged:
            continue
        clean = scrub if sanitized else (lambda s: s)
        conv_a, conv_b = [], []
        for t in turns.get(b.id, []):
            conv_a += [{"role": "user", "content": clean(t.user)}, {"role": "assistant", "content": clean(t.answer_a)}]
            conv_b += [{"role": "user", "content": clean(t.user)}, {"role": "assistant", "content": clean(t.answer_b)}]
        rows.append({"id": b.id, "username": hash_id(salt, p.id), "user_language": p.basque_level,
                     "user_education": p.education, "timestamp": v.created_at.isoformat(timespec="seconds") + "Z",
                     "model_a": v.model_a, "model_b": v.model_b, "conv_a": conv_a, "conv_b": conv_b,
                     "winner": v.winner, "winner_content": v.winner_content, "winner_language": v.winner_language})
    return rows


def write_dataset(rows_full: list[dict], rows_sanitized: list[dict], out: str | Path, name: str) -> dict:
    """Write both configs as Parquet (``<out>/<config>/train-00000-of-00001.parquet``) and a dataset card."""
    import datasets

    out = Path(out)
    features = datasets.Features({
        "id": datasets.Value("string"), "username": datasets.Value("string"),
        "user_language": datasets.Value("string"), "user_education": datasets.Value("string"),
        "timestamp": datasets.Value("string"), "model_a": datasets.Value("string"),
        "model_b": datasets.Value("string"),
        "conv_a": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "conv_b": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "winner": datasets.Value("string"), "winner_content": datasets.Value("string"),
        "winner_language": datasets.Value("string"),
    })
    counts = {}
    for config, rows in ((name, rows_full), (f"{name}-sanitized", rows_sanitized)):
        folder = out / config
        folder.mkdir(parents=True, exist_ok=True)
        ds = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=features)
        ds.to_parquet(str(folder / "train-00000-of-00001.parquet"))
        counts[config] = len(rows)
    card = ["---", "license: cc0-1.0", "language: [eu]", "configs:"]
    for config in counts:
        card += [f"- config_name: {config}", "  data_files:", "  - split: train", f"    path: {config}/*.parquet"]
    card += ["---", "", "# Latxa arena votes", "",
             "Pairwise human preferences from the Latxa arena in the published Ebaluatoia schema. `username` is a "
             "salted hash of the participant id; e-mail addresses are never exported. The `-sanitized` config drops "
             "participants flagged by control battles or the outlier test and masks e-mail addresses, URLs and phone "
             "numbers in the conversations.", ""]
    card += [f"- `{c}`: {n} votes" for c, n in counts.items()]
    (out / "README.md").write_text("\n".join(card) + "\n", encoding="utf-8")
    return counts
