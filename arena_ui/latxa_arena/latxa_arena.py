"""The Reflex app: routes and page titles. Run with ``reflex run`` from ``arena_ui/`` (or ``make arena``)."""

import reflex as rx
from latxa_arena import pages
from latxa_arena.state import ArenaState, LeaderboardState, MineState

app = rx.App()
app.add_page(pages.battle_page, route="/", title="Ebaluatoia", on_load=ArenaState.load_battle)
app.add_page(pages.login_page, route="/login", title="Ebaluatoia · Sartu", on_load=ArenaState.load_auth)
app.add_page(pages.leaderboard_page, route="/leaderboard", title="Ebaluatoia · Sailkapena",
             on_load=LeaderboardState.load_leaderboard)
app.add_page(pages.mine_page, route="/mine", title="Ebaluatoia · Nire ekarpena", on_load=MineState.load_mine)
app.add_page(pages.about_page, route="/about", title="Ebaluatoia · Honi buruz", on_load=ArenaState.load_public)
