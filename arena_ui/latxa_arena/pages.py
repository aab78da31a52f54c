"""Pages of the arena: log in / register, battle (+ vote and reveal), leaderboard, my contribution, about."""

from __future__ import annotations

import reflex as rx
from latxa_arena.i18n import CATALOGUE, LANG_NAMES, LANGS
from latxa_arena.state import ArenaState, LeaderboardState, MineState

DIMENSIONS = ("overall", "content", "language")
MESSAGE_KEYS = ("auth.need_fields", "auth.need_consent", "vote.incomplete", "battle.api_down", "vote.too_early",
                "auth.username_taken", "auth.bad_login", "battle.busy", "battle.closed", "common.rate_limited",
                "auth.need_email")


def t(key: str) -> rx.Var:
    """The catalogue string for ``key`` in the participant's language (switches in the browser)."""
    eu, es, en = CATALOGUE[key]
    return rx.match(ArenaState.lang, ("es", es), ("en", en), eu)


def message(var: rx.Var) -> rx.Var:
    """A state message that is either a catalogue key (translated) or a server sentence (shown as is)."""
    return rx.match(var, *[(k, t(k)) for k in MESSAGE_KEYS], var)


def choice_label(prefix: str, code: rx.Var) -> rx.Var:
    """Label of a server-defined option (Basque level, education): the protocol's own label where it brings its
    texts (the study's Basque form), else the catalogue's, else the code itself."""
    keys = [k for k in CATALOGUE if k.startswith(prefix + ".")]
    labels = ArenaState.level_labels if prefix == "level" else ArenaState.education_labels
    return rx.cond(ArenaState.proto_texts, labels[code], rx.match(code, *[(k.split(".", 1)[1], t(k)) for k in keys], code))


def proto_text(var: rx.Var, key: str) -> rx.Var:
    """A text the protocol defines (the study's exact Basque wording) or, for ours, the catalogue's translation."""
    return rx.cond(ArenaState.proto_texts, var, t(key))


# ---------------------------------------------------------------- layout
def lang_switch() -> rx.Component:
    return rx.hstack(
        *[rx.button(code.upper(), size="1", id=f"lang-{code}", title=LANG_NAMES[code],
                    variant=rx.cond(ArenaState.lang == code, "solid", "soft"),
                    on_click=ArenaState.set_lang(code)) for code in LANGS],
        spacing="1", aria_label="language",
    )


def navbar() -> rx.Component:
    return rx.hstack(
        rx.link(rx.heading("Ebaluatoia", size="5", as_="div"), href="/", underline="none"),
        rx.link(t("nav.battle"), href="/", id="nav-battle"),
        rx.link(t("nav.leaderboard"), href="/leaderboard", id="nav-leaderboard"),
        rx.link(t("nav.mine"), href="/mine", id="nav-mine"),
        rx.link(t("nav.about"), href="/about", id="nav-about"),
        rx.spacer(),
        rx.cond(
            ArenaState.logged_in,
            rx.hstack(rx.text(t("nav.signed_in_as"), " ", rx.text.strong(ArenaState.username), size="2"),
                      rx.button(t("nav.logout"), size="1", variant="outline", on_click=ArenaState.logout, id="logout"),
                      align="center"),
            rx.link(t("nav.login"), href="/login", id="nav-login"),
        ),
        lang_switch(),
        align="center", spacing="4", width="100%", padding_y="0.75em", wrap="wrap",
        border_bottom="1px solid var(--gray-a5)",
    )


def layout(*children: rx.Component) -> rx.Component:
    return rx.container(navbar(), rx.vstack(*children, spacing="4", width="100%", padding_y="1em"),
                        size="4", lang=ArenaState.lang)


def error_box(var: rx.Var, box_id: str) -> rx.Component:
    return rx.cond(var != "", rx.callout(message(var), icon="triangle_alert", color_scheme="red", id=box_id, width="100%"))


# ---------------------------------------------------------------- log in / register
def field(label_key: str, control: rx.Component) -> rx.Component:
    return rx.vstack(rx.text(t(label_key), size="2", weight="medium"), control, spacing="1", width="100%")


def login_page() -> rx.Component:
    s = ArenaState
    register_fields = rx.vstack(
        rx.vstack(rx.text(rx.cond(s.email_required, t("auth.email_required"), t("auth.email")), size="2",
                          weight="medium"),
                  rx.input(value=s.form_email, on_change=s.set_form_email, type="email", id="email", width="100%",
                           required=s.email_required),
                  spacing="1", width="100%"),
        field("auth.basque_level", rx.select.root(
            rx.select.trigger(id="basque-level", width="100%"),
            rx.select.content(rx.foreach(s.basque_levels, lambda c: rx.select.item(choice_label("level", c), value=c))),
            value=s.form_level, on_change=s.set_form_level)),
        rx.cond(s.level_help != "", rx.text(s.level_help, size="1", color_scheme="gray", white_space="pre-wrap",
                                            id="level-help")),
        field("auth.education", rx.select.root(
            rx.select.trigger(id="education", width="100%"),
            rx.select.content(rx.foreach(s.education_levels, lambda c: rx.select.item(choice_label("edu", c), value=c))),
            value=s.form_education, on_change=s.set_form_education)),
        rx.cond(s.education_help != "", rx.text(s.education_help, size="1", color_scheme="gray", id="education-help")),
        rx.callout(rx.vstack(rx.cond(s.consent_title != "", rx.text.strong(s.consent_title)), rx.text(t("auth.consent")),
                             rx.text.strong(s.licence), rx.text(s.consent_text, size="1", white_space="pre-wrap",
                                                                 id="consent-text")),
                   icon="info", size="1", width="100%"),
        rx.checkbox(t("auth.accept"), checked=s.form_consent, on_change=s.set_form_consent, id="consent"),
        rx.checkbox(s.age_text, checked=s.form_adult, on_change=s.set_form_adult, id="adult"),
        spacing="3", width="100%",
    )
    return layout(rx.center(
        rx.card(rx.vstack(
            rx.heading(rx.cond(s.register_mode, t("auth.register_title"), t("auth.login_title")), size="6"),
            rx.text(t("app.tagline"), color_scheme="gray"),
            field("auth.username", rx.input(value=s.form_username, on_change=s.set_form_username, id="username",
                                            auto_complete="username", width="100%")),
            field("auth.password", rx.input(value=s.form_password, on_change=s.set_form_password, id="password",
                                            type="password", width="100%")),
            rx.cond(s.register_mode, register_fields),
            error_box(s.auth_error, "auth-error"),
            rx.button(rx.cond(s.register_mode, t("auth.submit_register"), t("auth.submit_login")),
                      on_click=s.submit_auth, loading=s.auth_busy, id="auth-submit", width="100%"),
            rx.link(rx.cond(s.register_mode, t("auth.to_login"), t("auth.to_register")), on_click=s.toggle_mode,
                    id="auth-toggle", href="#"),
            spacing="3", width="100%",
        ), max_width="32em", width="100%", id="auth-card"),
        width="100%"))


# ---------------------------------------------------------------- battle
def bubble(text: rx.Var, user: bool) -> rx.Component:
    return rx.box(rx.text(text, white_space="pre-wrap", size="2"), padding="0.6em 0.8em", border_radius="0.6em",
                  background=rx.cond(user, "var(--accent-a3)", "var(--gray-a2)"),
                  align_self=rx.cond(user, "flex-end", "flex-start"), max_width="100%")


def panel(side: str) -> rx.Component:
    s = ArenaState
    live = s.live_a if side == "a" else s.live_b
    status = s.status_a if side == "a" else s.status_b
    err = s.error_a if side == "a" else s.error_b
    name = s.model_a_name if side == "a" else s.model_b_name
    return rx.card(rx.vstack(
        rx.hstack(rx.heading(proto_text(s.label_a if side == "a" else s.label_b, f"battle.model_{side}"), size="4",
                             id=f"label-{side}"),
                  rx.cond(status == "streaming", rx.spinner(size="2")),
                  rx.cond(s.voted & s.reveal, rx.badge(name, size="2", color_scheme="green", id=f"reveal-{side}")),
                  align="center"),
        rx.foreach(s.turns, lambda turn: rx.vstack(bubble(turn["user"], True), bubble(turn[side], False),
                                                    spacing="2", width="100%", class_name="turn")),
        rx.cond(s.live_user != "", rx.vstack(
            bubble(s.live_user, True),
            rx.box(rx.text(rx.cond(live == "", t("battle.waiting"), live), white_space="pre-wrap", size="2"),
                   padding="0.6em 0.8em", border_radius="0.6em", background="var(--gray-a2)",
                   id=f"live-{side}"),
            spacing="2", width="100%")),
        rx.cond(status == "error", rx.callout(t("battle.panel_error"), icon="triangle_alert", color_scheme="red",
                                              size="1", id=f"error-{side}", title=err)),
        rx.cond(status == "timeout", rx.callout(t("battle.panel_timeout"), icon="clock", color_scheme="orange",
                                                size="1", id=f"timeout-{side}")),
        spacing="3", width="100%", align="stretch",
    ), id=f"panel-{side}", width="100%", data_status=status)


def vote_row(question_key: str, question: rx.Var, value: rx.Var, setter, row_id: str) -> rx.Component:
    s = ArenaState
    options = (("model_a", "vote.a", s.choice_a), ("tie", "vote.tie", s.choice_tie), ("model_b", "vote.b", s.choice_b))
    return rx.vstack(
        rx.text(proto_text(question, question_key), weight="medium"),
        rx.hstack(*[rx.button(proto_text(label, key), id=f"{row_id}-{code}", on_click=setter(code),
                              variant=rx.cond(value == code, "solid", "outline"),
                              aria_pressed=rx.cond(value == code, "true", "false")) for code, key, label in options],
                  spacing="2", wrap="wrap"),
        spacing="2", id=row_id,
    )


def vote_panel() -> rx.Component:
    s = ArenaState
    return rx.card(rx.vstack(
        rx.heading(t("vote.title"), size="4"),
        rx.text(t("vote.wait"), size="1", color_scheme="gray"),
        vote_row("vote.content", s.q_content, s.v_content, s.set_v_content, "vote-content"),
        vote_row("vote.language", s.q_language, s.v_language, s.set_v_language, "vote-language"),
        rx.cond(s.need_overall, vote_row("vote.overall", s.q_overall, s.v_overall, s.set_v_overall, "vote-overall")),
        rx.cond(s.vote_error != "", rx.callout(
            rx.hstack(rx.text(message(s.vote_error)), rx.cond(s.vote_wait_s > 0, rx.text.strong(s.vote_wait_s, " s")),
                      spacing="1"),
            icon="triangle_alert", color_scheme="orange", id="vote-error", width="100%")),
        rx.button(t("vote.submit"), on_click=s.submit_vote, disabled=~s.vote_ready, loading=s.vote_busy,
                  id="vote-submit", size="3"),
        spacing="3", width="100%",
    ), id="vote-panel", width="100%")


def reveal_panel() -> rx.Component:
    s = ArenaState
    return rx.callout(rx.vstack(
        rx.text(t("vote.reveal"), weight="bold"),
        rx.text(t("battle.model_a"), ": ", rx.text.strong(s.model_a_name)),
        rx.text(t("battle.model_b"), ": ", rx.text.strong(s.model_b_name)),
        rx.text(t("battle.after_vote")),
    ), icon="party_popper", color_scheme="green", id="reveal", width="100%")


def sent_panel() -> rx.Component:
    """After the vote under a protocol that never reveals the models (the study's): its message, no names."""
    return rx.callout(rx.text(ArenaState.after_vote_text), icon="check", color_scheme="green", id="vote-sent",
                      width="100%")


def battle_page() -> rx.Component:
    s = ArenaState
    return layout(
        rx.heading(t("battle.title"), size="6", id="page-title"),
        rx.text(t("battle.intro"), color_scheme="gray"),
        error_box(s.battle_error, "battle-error"),
        rx.grid(panel("a"), panel("b"), columns=rx.breakpoints(initial="1", sm="2"), spacing="4", width="100%"),
        rx.hstack(
            rx.text_area(value=s.prompt, on_change=s.set_prompt, id="prompt",
                         placeholder=rx.cond(s.placeholder_text != "", s.placeholder_text, t("battle.placeholder")),
                         disabled=s.streaming | s.voted, max_length=s.max_chars, width="100%", rows="3"),
            rx.vstack(
                rx.button(t("battle.send"), on_click=s.send, id="send", loading=s.streaming,
                          disabled=s.voted | (s.prompt == ""), width="100%"),
                rx.button(rx.cond(s.new_battle_label != "", s.new_battle_label, t("battle.new")), on_click=s.new_battle,
                          id="new-battle", variant="outline",
                          disabled=s.streaming, width="100%"),
            ),
            width="100%", align="start",
        ),
        rx.cond(s.voted, rx.cond(s.reveal, reveal_panel(), sent_panel()), rx.cond(s.has_answers, vote_panel())),
    )


# ---------------------------------------------------------------- leaderboard
def dimension_block(dim: str) -> rx.Component:
    rows = LeaderboardState.rows[dim]
    table = rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(t(k)) for k in
                                       ("lb.rank", "lb.model", "lb.rating", "lb.ci", "lb.battles")])),
        rx.table.body(rx.foreach(rows, lambda r: rx.table.row(
            rx.table.cell(r["rank"]), rx.table.row_header_cell(r["model"]), rx.table.cell(r["rating"]),
            rx.table.cell(r["ci"]), rx.table.cell(r["battles"])))),
        variant="surface", size="1", width="100%",
    )
    chart = rx.recharts.bar_chart(
        rx.recharts.bar(rx.recharts.error_bar(data_key="err", width=6, stroke_width=2, stroke="var(--gray-12)"),
                        data_key="rating", fill="var(--accent-9)"),
        rx.recharts.x_axis(data_key="model"),
        rx.recharts.y_axis(domain=["dataMin - 60", "dataMax + 60"], allow_decimals=False),
        rx.recharts.graphing_tooltip(),
        data=LeaderboardState.chart[dim], width="100%", height=220,
    )
    return rx.card(rx.vstack(rx.heading(t(f"dim.{dim}"), size="4"),
                             rx.grid(table, chart, columns=rx.breakpoints(initial="1", md="2"), spacing="4", width="100%",
                                     align="start"),
                             width="100%"), id=f"lb-{dim}", width="100%")


def leaderboard_page() -> rx.Component:
    s = LeaderboardState
    return layout(
        rx.hstack(rx.heading(t("lb.title"), size="6", id="page-title"), rx.spacer(),
                  rx.button(t("lb.refresh"), variant="outline", on_click=s.load_leaderboard, id="lb-refresh"),
                  width="100%"),
        rx.text(t("lb.intro"), color_scheme="gray"),
        rx.text(t("lb.total_votes"), ": ", rx.text.strong(s.votes, id="lb-votes")),
        error_box(s.lb_error, "lb-error"),
        rx.cond(
            s.hidden,
            rx.callout(t("lb.hidden"), icon="eye_off", id="lb-hidden", width="100%"),
            rx.vstack(
                rx.cond(s.votes == 0, rx.text(t("lb.empty"), id="lb-empty")),
                rx.cond(s.shown == 0,
                        rx.callout(rx.vstack(rx.text(t("lb.not_enough"), weight="bold"),
                                             rx.text(t("lb.min_battles"), " ", rx.text.strong(s.min_battles))),
                                   icon="hourglass", color_scheme="orange", id="lb-not-enough", width="100%"),
                        rx.vstack(*[dimension_block(d) for d in DIMENSIONS], width="100%", spacing="4")),
                rx.cond(s.pending.length() > 0, pending_block()),
                width="100%", spacing="4"),
        ),
    )


def pending_block() -> rx.Component:
    """Models still short of the minimum number of battles, and how many more votes each needs."""
    s = LeaderboardState
    return rx.card(rx.vstack(
        rx.heading(t("lb.waiting"), size="4"),
        rx.text(t("lb.min_battles"), " ", rx.text.strong(s.min_battles), size="2"),
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(t(k)) for k in
                                           ("lb.model", "lb.battles", "lb.needs_more")])),
            rx.table.body(rx.foreach(s.pending, lambda p: rx.table.row(
                rx.table.row_header_cell(p["model"]), rx.table.cell(p["battles"]),
                rx.table.cell(p["needed"], class_name="needed")))),
            variant="surface", size="1", width="100%"),
        width="100%"), id="lb-pending", width="100%")


# ---------------------------------------------------------------- my contribution
def mine_page() -> rx.Component:
    s = MineState
    return layout(
        rx.heading(t("mine.title"), size="6", id="page-title"),
        error_box(s.mine_error, "mine-error"),
        rx.grid(
            rx.card(rx.vstack(rx.text(t("mine.votes"), size="2"), rx.heading(s.my_votes, size="8", id="mine-votes"))),
            rx.card(rx.vstack(rx.text(t("mine.rank"), size="2"),
                              rx.hstack(rx.heading("#", s.my_rank, size="8", id="mine-rank"),
                                        rx.text("/ ", s.participants, " ", t("mine.of"), color_scheme="gray"),
                                        align="baseline"))),
            columns="2", spacing="4", width="100%",
        ),
        rx.cond(s.by_day.length() > 0, rx.recharts.bar_chart(
            rx.recharts.bar(data_key="votes", fill="var(--accent-9)"), rx.recharts.x_axis(data_key="date"),
            rx.recharts.y_axis(allow_decimals=False), data=s.by_day, width="100%", height=200)),
        rx.text(t("mine.thanks")),
    )


# ---------------------------------------------------------------- about
def about_page() -> rx.Component:
    s = ArenaState
    return layout(
        rx.heading(t("about.title"), size="6", id="page-title"),
        rx.text(t("about.what")),
        rx.heading(t("about.collected"), size="4"),
        rx.text(t("about.collected_body")),
        rx.heading(t("about.licence"), size="4"),
        rx.text(t("about.licence_body"), " ", rx.text.strong(s.licence, id="about-licence")),
        rx.cond(s.consent_text != "", rx.blockquote(s.consent_text)),
        rx.text(t("about.privacy")),
    )
