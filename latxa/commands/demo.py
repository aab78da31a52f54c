"""`latxa demo`: the main job on the embedded default (what `make demo` runs)."""

from __future__ import annotations

import typer

from latxa.commands._common import example


def register(app: typer.Typer) -> None:
    @app.command(
        "demo",
        help="Run the main job on the embedded default: build the tiny offline model and run the study on the "
        "shipped Basque sample." + example("latxa demo"),
    )
    def demo() -> None:
        from components.tiny_model import ensure_tiny_model
        from latxa.paths import tiny_model_dir

        path = ensure_tiny_model(tiny_model_dir())
        typer.echo(f"tiny model ready at {path}")
