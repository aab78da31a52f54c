"""The arena API's request and response models and fixed texts (the contract is docs/arena-api.md)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Choice = Literal["model_a", "model_b", "tie"]
APOLOGY = "Barkatu, arazo bat egon da erantzuna sortzean."



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    """Field forms and choices are the protocol's (``/api/config`` -> ``protocol.registration``)."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    consent: bool
    basque_level: str = Field(max_length=32)
    education: str = Field(max_length=32)
    email: Optional[str] = Field(None, max_length=254)


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


