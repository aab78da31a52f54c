"""The arena API's request and response models and fixed texts (the contract is docs/arena-api.md)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

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


