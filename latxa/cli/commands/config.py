"""`latxa config show|check`: the typed study configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import emit_json, example


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The study configuration (hyperparameters and target profiles).", no_args_is_help=True)

    @group.command("show", help="Print the resolved configuration as JSON." + example("latxa config show --profile local"))
    def show(
        config: Optional[Path] = typer.Option(None, "--config", help="Study YAML (default: the shipped study.yaml)."),
        profile: Optional[str] = typer.Option(None, "--profile", help="local, leonardo-8b, leonardo-70b, ..."),
    ) -> None:
        from latxa.components.config import load_config

        resolved = load_config(config).resolve(profile)
        emit_json({"profile": resolved.profile, "world_size": resolved.world_size,
                   "global_batch_size": resolved.global_batch_size, **resolved.model_dump(mode="json")})

    @group.command("check", help="Validate a study YAML; errors name the key." + example("latxa config check my-study.yaml"))
    def check(path: Path = typer.Argument(..., help="Study YAML to validate.")) -> None:
        from latxa.components.config import load_config

        cfg = load_config(path)
        for name in cfg.profiles:
            cfg.resolve(name)
        typer.echo(f"{path}: valid ({len(cfg.profiles)} profiles)")

    app.add_typer(group, name="config")
