"""Arena protocols as data: ``protocols/<name>.yaml`` says how battles, votes, registration and generation work.

Two ship: ``ebaluatoia-2025`` (the study as it ran) and ``latxa`` (ours, the default). The server reads the
protocol named by ``arena.protocol`` (``--protocol`` on ``latxa serve`` / ``latxa arena serve``); the API applies
it and publishes it at ``/api/config``, and the UI renders what it reads there.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from latxa.errors import LatxaError
from latxa.yamlfile import load_yaml_file

PROTOCOLS = Path(__file__).with_name("protocols")
DEFAULT_PROTOCOL = "latxa"


class ProtocolError(LatxaError):
    """An unknown or malformed arena protocol."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Choice(_Strict):
    code: str
    label: str


class Registration(_Strict):
    email: Literal["required", "optional"]
    email_pattern: str
    email_max_length: int = Field(ge=3)
    username_pattern: str
    password_min_length: int = Field(ge=1)
    password_max_length: int = Field(ge=1)
    min_age: Optional[int] = None
    basque_levels: list[Choice]
    basque_level_help: str = ""
    education_levels: list[Choice]
    education_help: str = ""


class Consent(_Strict):
    version: str
    licence: str
    title: str
    text: str


class ArenaProtocol(_Strict):
    name: str
    title: str
    description: str
    labels: dict[Literal["a", "b"], str]
    new_battle: str = ""          # the new-battle button ("" = the UI's own text)
    placeholder: str = ""         # the message box's placeholder
    questions: dict[Literal["content", "language", "overall"], str]
    choices: dict[Literal["model_a", "tie", "model_b"], str]
    overall_rule: Literal["reference", "differ"]
    reveal: bool
    public_leaderboard: bool
    sampling: Literal["uniform", "adaptive"]
    allow_sampling_override: bool
    control_battles: bool
    outlier_test: bool
    after_vote: str = ""
    vote_sent: str = ""
    settings: dict[str, Any] = {}
    generation: dict[str, Any]
    registration: Registration
    consent: Consent
    differences: list[str] = []

    # -- the winner rule
    def overall_asked(self, content: str, language: str) -> bool:
        if content == language:
            return False
        if self.overall_rule == "reference":
            return "tie" not in (content, language)
        return True

    def winner(self, content: str, language: str, overall: str | None) -> tuple[str, str | None]:
        """(winner, the overall answer as stored). Raises ValueError("overall_required") when it is missing.

        reference: overall only when content and language disagree and neither is a tie; else content if they
        agree, otherwise the one that is not a tie (an overall sent when not asked is ignored, as the
        reference UI hid and cleared it). differ: overall whenever they differ.
        """
        if not self.overall_asked(content, language):
            if content == language:
                return content, None
            return (content if content != "tie" else language), None
        if overall is None:
            raise ValueError("overall_required")
        return overall, overall

    def public(self) -> dict:
        """What /api/config publishes (everything the UI needs; nothing about models)."""
        reg = self.registration
        return {
            "name": self.name, "title": self.title, "description": self.description, "labels": self.labels,
            "new_battle": self.new_battle, "placeholder": self.placeholder,
            "questions": self.questions, "choices": self.choices, "overall_rule": self.overall_rule,
            "reveal": self.reveal, "public_leaderboard": self.public_leaderboard, "after_vote": self.after_vote,
            "vote_sent": self.vote_sent,
            "registration": {"email": reg.email, "email_max_length": reg.email_max_length,
                             "username_pattern": reg.username_pattern,
                             "password_min_length": reg.password_min_length,
                             "password_max_length": reg.password_max_length, "min_age": reg.min_age,
                             "basque_levels": [c.model_dump() for c in reg.basque_levels],
                             "basque_level_help": reg.basque_level_help,
                             "education_levels": [c.model_dump() for c in reg.education_levels],
                             "education_help": reg.education_help},
        }

    def check_registration(self, *, username: str, password: str, email: str | None, basque_level: str,
                           education: str) -> tuple[str, str] | None:
        """None when the fields pass, else (field, sentence)."""
        reg = self.registration
        if not re.fullmatch(reg.username_pattern, username):
            return "username", "The username does not have the allowed form."
        if not reg.password_min_length <= len(password) <= reg.password_max_length:
            return "password", (f"The password needs {reg.password_min_length} to {reg.password_max_length} "
                                "characters.")
        if email is None or email == "":
            if reg.email == "required":
                return "email", "An e-mail address is required."
        elif len(email) > reg.email_max_length or not re.fullmatch(reg.email_pattern, email):
            return "email", "The e-mail address is not valid."
        if basque_level not in {c.code for c in reg.basque_levels}:
            return "basque_level", "basque_level must be one of " + ", ".join(c.code for c in reg.basque_levels) + "."
        if education not in {c.code for c in reg.education_levels}:
            return "education", "education must be one of " + ", ".join(c.code for c in reg.education_levels) + "."
        return None


def protocol_names() -> list[str]:
    return sorted(p.stem for p in PROTOCOLS.glob("*.yaml"))


@lru_cache(maxsize=8)
def load_protocol(name: str | None = None) -> ArenaProtocol:
    name = name or DEFAULT_PROTOCOL
    path = PROTOCOLS / f"{name}.yaml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name) or not path.is_file():
        raise ProtocolError(f"unknown arena protocol {name!r}: choose one of {', '.join(protocol_names())}.")
    raw = load_yaml_file(path, ProtocolError, "Arena protocol")
    try:
        return ArenaProtocol.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise ProtocolError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}.") from None


def effective_settings(settings, protocol: ArenaProtocol):
    """The arena settings with the protocol's defaults for every field the configuration did not set."""
    from latxa.serving.registry import ArenaSettings

    data = settings.model_dump()
    for key, value in protocol.settings.items():
        if key not in settings.model_fields_set:
            data[key] = value
    if data.get("sampling") is None:
        data["sampling"] = protocol.sampling
    if not protocol.control_battles and data.get("control_rate"):
        raise ProtocolError(f"the {protocol.name} protocol has no control battles; set arena.control_rate to 0 "
                            "or use the latxa protocol.")
    return ArenaSettings.model_validate(data)
