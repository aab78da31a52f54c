"""Named system prompts with today's date: ``default`` (ours, Basque) and ``ebaluatoia-2025`` (the study's).

The study's prompt is English, with the date as ``time.strftime("%A %B %e, %Y", time.gmtime())`` (UTC, the day
space-padded: "Monday March  3, 2025"), computed per request; ours is a Basque translation with a Basque date.
"""

from __future__ import annotations

import time
from typing import Callable

BASQUE = (
    "Latxa zara, HiTZ Hizkuntza Teknologiako Zentroak sortutako adimen artifizialeko laguntzaile adeitsua. "
    "Erabiltzaileak hainbat txandatako elkarrizketa izango du zurekin: hasierako galderak eta haiei lotutako "
    "jarraipen-galderak. Zure helburua erantzun zehatz, egoki eta argigarriak ematea da. Elkarrizketa osoa "
    "euskara batuan izango da: erabiltzaileak euskaraz idatziko du, eta zuk euskara jasoan erantzun behar duzu. "
    "Gaiak askotarikoak izan daitezke: jakintza orokorra, zientzia, teknologia, aisia, programazioa, "
    "matematika eta beste. Gaur {date} da."
)
STUDY = (
    "You are a helpful Artificial Intelligence assistant called Latxa, created and developed by HiTZ, the Basque "
    "Center for Language Technology research center. The user will engage in a multi-round conversation with "
    "you, asking initial questions and following up with additional related questions. Your goal is to provide "
    "thorough, relevant and insightful responses to help the user with their queries. Every conversation will be "
    "conducted in standard Basque, this is, the first question from the user will be in Basque, and you should "
    "respond in formal Basque as well. Conversations will cover a wide range of topics, including but not limited "
    "to general knowledge, science, technology, entertainment, coding, mathematics, and more. Today is {date}."
)
_MONTHS_EU = ["urtarrilaren", "otsailaren", "martxoaren", "apirilaren", "maiatzaren", "ekainaren", "uztailaren",
              "abuztuaren", "irailaren", "urriaren", "azaroaren", "abenduaren"]
_DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December"]


def today_eu(now: float | None = None) -> str:
    """Today's date in Basque, e.g. '2026ko azaroaren 28a'."""
    t = time.gmtime(now)
    return f"{t.tm_year}ko {_MONTHS_EU[t.tm_mon - 1]} {t.tm_mday}a"


def today_en(now: float | None = None) -> str:
    """The study's date: ``%A %B %e, %Y`` in UTC, spelt without the C library's locale ('Monday March  3, 2025')."""
    t = time.gmtime(now)
    return f"{_DAYS_EN[t.tm_wday]} {_MONTHS_EN[t.tm_mon - 1]} {t.tm_mday:2d}, {t.tm_year}"


PROMPTS: dict[str, tuple[str, Callable[[float | None], str]]] = {
    "default": (BASQUE, today_eu),
    "ebaluatoia-2025": (STUDY, today_en),
}


def render(prompt: str | None, now: float | None = None) -> str | None:
    """The system prompt text for a setting: a name above, None (no prompt) or a literal text ({date}: Basque)."""
    if prompt is None:
        return None
    text, date = PROMPTS.get(prompt, (prompt, today_eu))
    return text.replace("{date}", date(now))
