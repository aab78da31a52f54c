"""Reflex configuration for the arena UI.

Run from this folder (``cd arena_ui && reflex run``) or through ``latxa arena ui`` / ``make arena``.
Settings come from the environment so one build serves every deployment:

- ``LATXA_ARENA_API_URL``: base URL of the arena API (HTTP), e.g. ``http://127.0.0.1:8000``.
- ``REFLEX_API_URL``: where browsers reach this app's backend (websocket), set by the launcher.
- ``REFLEX_STATE_MANAGER_MODE=redis`` + ``REFLEX_REDIS_URL``: shared state for several backend workers.
"""

import reflex as rx

config = rx.Config(
    app_name="latxa_arena",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.sitemap.SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="grass", radius="medium"))],
)
