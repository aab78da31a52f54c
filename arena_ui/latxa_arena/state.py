"""UI state. Every call to the arena goes through :mod:`latxa_arena.api` (HTTP only).

Streaming: ``send`` is a background event. It reads the one SSE stream of a turn, where the deltas of both
models interleave, and flushes text into the two panels a few times per second under the state lock, so the UI
stays responsive while both answers grow. A side that errors (``error`` event) or stalls (idle timeout) is
marked in its own panel; the other side keeps streaming and keeps its text. The state lives on the backend
keyed by the browser's token, so a websocket reconnect picks up the same battle and the text streamed meanwhile.
"""

from __future__ import annotations

import logging
import math
import time

import httpx
import reflex as rx
from latxa_arena.api import ApiError, ArenaClient

log = logging.getLogger("latxa_arena")

FLUSH_EVERY_S = 0.08  # how often streamed text is pushed to the browser
SIDES = ("a", "b")


# Server error codes the participant sees in their own language (catalogue keys); others show the server's sentence.
ERROR_KEYS = {
    "unreachable": "battle.api_down",
    "backend_error": "battle.api_down",
    "rate_limited": "common.rate_limited",
    "username_taken": "auth.username_taken",
    "too_early": "vote.too_early",
    "battle_busy": "battle.busy",
    "battle_closed": "battle.closed",
}


def message_for(err: ApiError, login: bool = False) -> str:
    """A catalogue key for a known error code (the page translates it), else the API's own sentence."""
    if login and err.status == 401:
        return "auth.bad_login"
    return ERROR_KEYS.get(err.code, err.message)


class ArenaState(rx.State):
    """Session, language and the battle in progress."""

    lang: str = rx.LocalStorage("eu", name="latxa_lang", sync=True)
    token: str = rx.LocalStorage("", name="latxa_token", sync=True)
    username: str = rx.LocalStorage("", name="latxa_user", sync=True)

    # server config (/api/config)
    basque_levels: list[str] = []
    education_levels: list[str] = []
    licence: str = ""
    consent_text: str = ""
    consent_version: str = ""
    max_chars: int = 4000
    min_reading_s: float = 0.0
    # the arena protocol (/api/config -> protocol): texts, the overall-question rule, reveal, leaderboard
    proto_name: str = ""
    proto_texts: bool = False          # the protocol's own (Basque) texts instead of the catalogue's
    label_a: str = "A eredua"
    label_b: str = "B eredua"
    new_battle_label: str = ""
    placeholder_text: str = ""
    q_content: str = ""
    q_language: str = ""
    q_overall: str = ""
    choice_a: str = ""
    choice_tie: str = ""
    choice_b: str = ""
    overall_rule: str = "differ"
    reveal: bool = True
    public_leaderboard: bool = True
    after_vote_text: str = ""
    email_required: bool = False
    min_age: int = 18
    level_labels: dict[str, str] = {}
    education_labels: dict[str, str] = {}
    level_help: str = ""
    education_help: str = ""
    consent_title: str = ""

    # auth form
    register_mode: bool = True
    form_username: str = ""
    form_password: str = ""
    form_email: str = ""
    form_level: str = ""
    form_education: str = ""
    form_consent: bool = False
    form_adult: bool = False
    auth_error: str = ""  # a catalogue key or a server sentence
    auth_busy: bool = False

    # battle
    battle_id: str = ""
    turns: list[dict[str, str]] = []  # finished turns: user, a, b
    prompt: str = ""
    streaming: bool = False
    live_user: str = ""
    live_a: str = ""
    live_b: str = ""
    status_a: str = "idle"  # idle | streaming | done | error | timeout
    status_b: str = "idle"
    error_a: str = ""
    error_b: str = ""
    battle_error: str = ""

    # vote
    v_content: str = ""
    v_language: str = ""
    v_overall: str = ""
    voted: bool = False
    vote_error: str = ""
    vote_wait_s: int = 0  # seconds the API asked to wait (too early, rate limited)
    vote_busy: bool = False
    model_a_name: str = ""
    model_b_name: str = ""
    last_answer_at: float = 0.0

    # ----- computed
    @rx.var
    def logged_in(self) -> bool:
        return bool(self.token)

    @rx.var
    def need_overall(self) -> bool:
        """The protocol's rule: "reference" (the study) asks only when content and language disagree and neither
        is a tie; "differ" (ours) whenever they differ."""
        if not (self.v_content and self.v_language) or self.v_content == self.v_language:
            return False
        return self.overall_rule != "reference" or "tie" not in (self.v_content, self.v_language)

    @rx.var
    def age_text(self) -> str:
        from latxa_arena.i18n import CATALOGUE, LANGS

        text = CATALOGUE["auth.age_notice"][LANGS.index(self.lang) if self.lang in LANGS else 0]
        return text.replace("{age}", str(self.min_age))

    @rx.var
    def has_answers(self) -> bool:
        return len(self.turns) > 0 and not self.streaming

    @rx.var
    def vote_ready(self) -> bool:
        if not (self.v_content and self.v_language) or self.voted or self.streaming:
            return False
        return bool(self.v_overall) or not self.need_overall

    # ----- language
    @rx.event
    def set_lang(self, lang: str):
        if lang in ("eu", "es", "en"):
            self.lang = lang

    # ----- config and session
    async def _load_config(self) -> None:
        if self.basque_levels:
            return
        async with ArenaClient() as api:
            cfg = await api.config()
        self.basque_levels = list(cfg.get("basque_levels", []))
        self.education_levels = list(cfg.get("education_levels", []))
        consent = cfg.get("consent") or {}
        self.licence = str(consent.get("licence", ""))
        self.consent_text = str(consent.get("text", ""))
        self.consent_version = str(consent.get("version", ""))
        self.max_chars = int(cfg.get("max_message_chars", 4000))
        self.min_reading_s = float(cfg.get("min_reading_seconds", 0.0))
        proto = cfg.get("protocol") or {}
        self.proto_name = str(proto.get("name", ""))
        self.proto_texts = bool(self.proto_name) and self.proto_name != "latxa"
        labels, questions, choices = proto.get("labels") or {}, proto.get("questions") or {}, proto.get("choices") or {}
        self.label_a, self.label_b = str(labels.get("a", "A eredua")), str(labels.get("b", "B eredua"))
        self.new_battle_label = str(proto.get("new_battle", ""))
        self.placeholder_text = str(proto.get("placeholder", ""))
        self.q_content, self.q_language = str(questions.get("content", "")), str(questions.get("language", ""))
        self.q_overall = str(questions.get("overall", ""))
        self.choice_a, self.choice_tie = str(choices.get("model_a", "")), str(choices.get("tie", ""))
        self.choice_b = str(choices.get("model_b", ""))
        self.overall_rule = str(proto.get("overall_rule", "differ"))
        self.reveal = bool(proto.get("reveal", True))
        self.public_leaderboard = bool(proto.get("public_leaderboard", True))
        self.after_vote_text = str(proto.get("after_vote", ""))
        reg = proto.get("registration") or {}
        self.email_required = reg.get("email") == "required"
        self.min_age = int(reg.get("min_age") or 18)
        self.level_labels = {str(c["code"]): str(c["label"]) for c in reg.get("basque_levels") or []}
        self.education_labels = {str(c["code"]): str(c["label"]) for c in reg.get("education_levels") or []}
        self.level_help = str(reg.get("basque_level_help", ""))
        self.education_help = str(reg.get("education_help", ""))
        self.consent_title = str(consent.get("title", ""))

    @rx.event
    async def load_auth(self):
        try:
            await self._load_config()
        except ApiError as err:
            self.auth_error = message_for(err)
        if self.token:
            return rx.redirect("/")

    @rx.event
    async def load_public(self):
        try:
            await self._load_config()
        except ApiError as err:
            log.warning("config: %s", err)

    @rx.event
    async def load_battle(self):
        if not self.token:
            return rx.redirect("/login")
        try:
            await self._load_config()
        except ApiError as err:
            self.battle_error = message_for(err)

    @rx.event
    def toggle_mode(self):
        self.register_mode = not self.register_mode
        self.auth_error = ""

    @rx.event
    def set_form_username(self, v: str):
        self.form_username = v

    @rx.event
    def set_form_password(self, v: str):
        self.form_password = v

    @rx.event
    def set_form_email(self, v: str):
        self.form_email = v

    @rx.event
    def set_form_level(self, v: str):
        self.form_level = v

    @rx.event
    def set_form_education(self, v: str):
        self.form_education = v

    @rx.event
    def set_form_consent(self, v: bool):
        self.form_consent = bool(v)

    @rx.event
    def set_form_adult(self, v: bool):
        self.form_adult = bool(v)

    @rx.event
    async def submit_auth(self):
        self.auth_error = ""
        if not self.form_username.strip() or not self.form_password:
            self.auth_error = "auth.need_fields"
            return
        if self.register_mode and not (self.form_consent and self.form_adult):
            self.auth_error = "auth.need_consent"
            return
        if self.register_mode and self.email_required and not self.form_email.strip():
            self.auth_error = "auth.need_email"
            return
        self.auth_busy = True
        yield
        try:
            async with ArenaClient() as api:
                if self.register_mode:
                    fields = {"username": self.form_username.strip(), "password": self.form_password,
                              "consent": True, "basque_level": self.form_level or (self.basque_levels or [""])[-1],
                              "education": self.form_education or (self.education_levels or [""])[-1]}
                    if self.form_email.strip():
                        fields["email"] = self.form_email.strip()
                    out = await api.register(**fields)
                else:
                    out = await api.login(self.form_username.strip(), self.form_password)
        except ApiError as err:
            self.auth_error = message_for(err, login=not self.register_mode)
            self.auth_busy = False
            return
        self.token = out["token"]
        self.username = out.get("username", self.form_username)
        self.form_password = ""
        self.auth_busy = False
        self._reset_battle()
        yield rx.redirect("/")

    @rx.event
    async def logout(self):
        if self.token:
            try:
                async with ArenaClient(self.token) as api:
                    await api.logout()
            except ApiError as err:  # the session ends here either way
                log.warning("logout: %s", err)
        self.token = ""
        self.username = ""
        self._reset_battle()
        return rx.redirect("/login")

    # ----- battle
    def _reset_battle(self) -> None:
        self.battle_id = ""
        self.turns = []
        self.prompt = ""
        self.live_user = self.live_a = self.live_b = ""
        self.status_a = self.status_b = "idle"
        self.error_a = self.error_b = ""
        self.battle_error = ""
        self.v_content = self.v_language = self.v_overall = ""
        self.voted = False
        self.vote_error = ""
        self.model_a_name = self.model_b_name = ""

    @rx.event
    def new_battle(self):
        if not self.streaming:
            self._reset_battle()

    @rx.event
    def set_prompt(self, v: str):
        self.prompt = v

    def _auth_lost(self, err: ApiError) -> bool:
        if err.status == 401:
            self.token = ""
            self.username = ""
            return True
        return False

    @rx.event(background=True)
    async def send(self):
        async with self:
            content = self.prompt.strip()
            if not content or self.streaming or self.voted or not self.token:
                return
            self.streaming = True
            self.battle_error = ""
            self.prompt = ""
            self.live_user, self.live_a, self.live_b = content, "", ""
            self.status_a = self.status_b = "streaming"
            self.error_a = self.error_b = ""
            token, battle_id = self.token, self.battle_id
        pending = {"a": "", "b": ""}
        replace: dict[str, str | None] = {"a": None, "b": None}
        status = {"a": "streaming", "b": "streaming"}
        errors = {"a": "", "b": ""}
        battle_error = ""
        lost_auth = False
        started = False

        async def flush() -> None:
            async with self:
                if replace["a"] is not None:
                    self.live_a, replace["a"] = replace["a"], None
                if replace["b"] is not None:
                    self.live_b, replace["b"] = replace["b"], None
                self.live_a += pending["a"]
                self.live_b += pending["b"]
                self.status_a, self.status_b = status["a"], status["b"]
                self.error_a, self.error_b = errors["a"], errors["b"]
            pending["a"] = pending["b"] = ""

        try:
            async with ArenaClient(token) as api:
                if not battle_id:
                    battle = await api.new_battle()
                    battle_id = battle["battle_id"]
                    prefilled = battle.get("turns") or []  # a control battle arrives with a turn filled in
                    async with self:
                        self.battle_id = battle_id
                        self.turns = [{"user": t.get("user", ""), "a": t.get("a", ""), "b": t.get("b", "")} for t in prefilled]
                last = 0.0  # the first text is pushed at once; after that at most every FLUSH_EVERY_S
                async for ev in api.stream_message(battle_id, content):
                    started = True
                    kind, side = ev.get("type"), ev.get("side")
                    if kind == "delta" and side in SIDES:
                        pending[side] += str(ev.get("text", ""))
                    elif kind == "done" and side in SIDES:
                        status[side] = "done"
                    elif kind == "error" and side in SIDES:
                        # The server stores the side's answer as its apology text: show exactly that.
                        status[side] = "error"
                        errors[side] = str(ev.get("message", ""))
                        pending[side] = ""
                        replace[side] = errors[side]
                    elif kind == "end":
                        break
                    else:
                        log.warning("battle %s: unexpected stream event %r", battle_id, ev)
                    if time.monotonic() - last >= FLUSH_EVERY_S:
                        await flush()
                        last = time.monotonic()
        except httpx.TimeoutException:
            for side in SIDES:
                if status[side] == "streaming":
                    status[side] = "timeout"
        except ApiError as err:
            battle_error = message_for(err)
            async with self:
                lost_auth = self._auth_lost(err)
            for side in SIDES:
                if status[side] == "streaming":
                    status[side] = "error"
        for side in SIDES:  # a stream that ended without a verdict for a side: that side did not finish
            if status[side] == "streaming":
                status[side] = "timeout"
        await flush()
        async with self:
            if started:  # the server stored this turn (possibly with an apology text for a failed side)
                self.turns.append({"user": self.live_user, "a": self.live_a, "b": self.live_b})
            elif not battle_error:
                battle_error = "battle.api_down"
            self.live_user = self.live_a = self.live_b = ""
            self.battle_error = battle_error
            self.streaming = False
            self.last_answer_at = time.time()
        if lost_auth:
            yield rx.redirect("/login")

    # ----- vote
    @rx.event
    def set_v_content(self, v: str):
        self.v_content = v

    @rx.event
    def set_v_language(self, v: str):
        self.v_language = v
        if self.v_content == v:
            self.v_overall = ""

    @rx.event
    def set_v_overall(self, v: str):
        self.v_overall = v

    @rx.event
    async def submit_vote(self):
        self.vote_error = ""
        self.vote_wait_s = 0
        if not self.vote_ready or not self.battle_id:
            self.vote_error = "vote.incomplete"
            return
        self.vote_busy = True
        yield
        overall = self.v_overall if self.need_overall else None
        try:
            async with ArenaClient(self.token) as api:
                out = await api.vote(self.battle_id, self.v_content, self.v_language, overall)
        except ApiError as err:
            self.vote_busy = False
            self.vote_error = message_for(err)
            wait = (err.details or {}).get("retry_after_s")
            self.vote_wait_s = max(1, math.ceil(float(wait))) if wait is not None else 0
            if self._auth_lost(err):
                yield rx.redirect("/login")
            return
        models = out.get("models") or {}   # null where the protocol never reveals them
        self.model_a_name = str(models.get("model_a", "")) if self.reveal else ""
        self.model_b_name = str(models.get("model_b", "")) if self.reveal else ""
        self.voted = True
        self.vote_busy = False


class LeaderboardState(ArenaState):
    votes: int = 0
    updated_at: str = ""
    hidden: bool = False           # the protocol publishes no model leaderboard while votes are collected
    min_battles: int = 0
    pending: list[dict[str, str]] = []   # models still short of min_battles: model, battles, needed
    needed_most: int = 0           # the most any model still needs
    shown: int = 0                 # models with enough battles
    rows: dict[str, list[dict[str, str]]] = {"overall": [], "content": [], "language": []}
    chart: dict[str, list[dict]] = {"overall": [], "content": [], "language": []}
    lb_error: str = ""

    @rx.event
    async def load_leaderboard(self):
        self.lb_error = ""
        try:
            async with ArenaClient() as api:
                data = await api.leaderboard()
        except ApiError as err:
            self.lb_error = message_for(err)
            return
        self.votes = int(data.get("votes", 0))
        self.updated_at = str(data.get("updated_at", ""))
        self.hidden = bool(data.get("hidden", False))
        self.min_battles = int(data.get("min_battles") or 0)
        pending = data.get("pending") or []
        self.pending = [{"model": str(p.get("model", "")), "battles": str(p.get("battles", 0)),
                         "needed": str(p.get("needed", 0))} for p in pending]
        self.needed_most = max([int(p.get("needed", 0)) for p in pending], default=0)
        self.shown = len((data.get("ratings") or {}).get("overall") or {})
        rows: dict[str, list[dict[str, str]]] = {}
        chart: dict[str, list[dict]] = {}
        for dim in ("overall", "content", "language"):
            ratings = (data.get("ratings") or {}).get(dim) or {}
            ordered = sorted(ratings.items(), key=lambda kv: (kv[1].get("rank", 0), -kv[1].get("rating", 0)))
            rows[dim] = [{"rank": str(r.get("rank", "")), "model": name, "rating": f"{r.get('rating', 0):.1f}",
                          "ci": f"{r.get('ci_low', 0):.1f} – {r.get('ci_high', 0):.1f}",
                          "battles": str(r.get("battles", 0))} for name, r in ordered]
            chart[dim] = [{"model": name, "rating": round(r.get("rating", 0), 1),
                           "err": [round(r.get("rating", 0) - r.get("ci_low", 0), 1),
                                   round(r.get("ci_high", 0) - r.get("rating", 0), 1)]} for name, r in ordered]
        self.rows = rows
        self.chart = chart


class MineState(ArenaState):
    my_votes: int = 0
    my_battles: int = 0
    my_rank: int = 0
    participants: int = 0
    by_day: list[dict] = []
    mine_error: str = ""

    @rx.event
    async def load_mine(self):
        if not self.token:
            return rx.redirect("/login")
        self.mine_error = ""
        try:
            async with ArenaClient(self.token) as api:
                data = await api.contributions()
        except ApiError as err:
            self.mine_error = message_for(err)
            if self._auth_lost(err):
                return rx.redirect("/login")
            return
        self.my_votes = int(data.get("votes", 0))
        self.my_battles = int(data.get("battles", 0))
        self.my_rank = int(data.get("rank", 0) or 0)
        self.participants = int(data.get("participants", 0))
        self.by_day = list(data.get("by_day", []))


