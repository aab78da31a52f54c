"""The arena API's request and response models and fixed texts (the contract is docs/arena-api.md)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

Choice = Literal["model_a", "model_b", "tie"]
APOLOGY = "Barkatu, arazo bat egon da erantzuna sortzean."
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """JSON can carry a lone surrogate escape (\\ud800): not a character, so no encoder or database takes it."""
    if _SURROGATE.search(text):
        raise ValueError("the text holds a lone UTF-16 surrogate, which is not a Unicode character")
    return text


def _storable(text: str) -> str:
    """What every supported database stores: no U+0000 (PostgreSQL refuses it in text) and no lone surrogate."""
    if "\x00" in text:
        raise ValueError("the text holds U+0000 (a NUL character), which cannot be stored")
    return _encodable(text)


def _email(text: str) -> str:
    """One @, something printable on both sides: no control, format (zero-width), separator or surrogate
    characters, which a pattern like [^@\\s] lets through."""
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"the e-mail address holds an invisible or control character (U+{ord(bad):04X})")
    if text == "":   # the protocol decides whether an empty address means none
        return text
    local, at, domain = text.partition("@")
    if not at or not local or not domain or "@" in domain or domain.startswith(".") or domain.endswith("."):
        raise ValueError("an e-mail address is name@domain")
    return text


Encodable = Annotated[str, AfterValidator(_encodable)]
Storable = Annotated[str, AfterValidator(_storable)]
Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    """Field forms and choices are the protocol's (``/api/config`` -> ``protocol.registration``); whatever the
    protocol, every field is text that can be encoded and stored, and consent is JSON true, not "yes" or 1."""

    username: Storable = Field(min_length=1, max_length=64)
    password: Encodable = Field(min_length=1, max_length=256)
    consent: StrictBool
    basque_level: Storable = Field(max_length=32)
    education: Storable = Field(max_length=32)
    email: Optional[Email] = None


class LoginIn(Strict):
    username: Storable = Field(max_length=64)
    password: Encodable = Field(max_length=256)


class TokenOut(BaseModel):
    participant_id: str
    username: str
    token: str


class BattleIn(Strict):
    sampling: Optional[Literal["adaptive", "uniform"]] = None


class MessageIn(Strict):
    content: Storable = Field(min_length=1, max_length=100_000)
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
    models: Optional[dict[str, str]] = None   # only where the protocol reveals the models


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


