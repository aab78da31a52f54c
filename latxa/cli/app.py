"""`latxa`: one entry point for the whole stack.

Each verb group lives in its own module under ``latxa/cli/commands`` and exposes
``register(app)``; modules import their layer lazily so ``latxa --help`` stays fast
and a user who only serves the arena needs no training dependencies.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import typer

from latxa.cli import commands
from latxa.errors import LatxaError

app = typer.Typer(
    name="latxa",
    help=(
        "Latxa-Instruct MLOps: prepare Basque instruction data, train variants with Ray Train + DeepSpeed "
        "(locally or on SLURM), evaluate with lm-eval, track in MLflow, orchestrate with Kubeflow Pipelines, "
        "and run the human-evaluation arena.\n\nVariant codes are exp_B_CIJ: backbone B "
        "(0 Llama-3.1-8B, 1 Latxa-3.1-8B, 2 Llama-3.1-8B-Instruct) and flags for Basque corpus, "
        "Basque instructions, English instructions. Example: latxa variants show exp_2_101"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    if not os.environ.get("RAY_ADDRESS"):
        # A Ray cluster this process starts is local to this machine: keep its traffic on loopback
        # (Ray otherwise advertises the host's network address). Jobs joining a real cluster set RAY_ADDRESS.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        app(args=argv, standalone_mode=False)
    except LatxaError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        sys.exit(err.exit_code)
    except SystemExit:
        raise
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except Exception as err:
        # Usage errors (unknown command, bad option) arrive here in non-standalone mode. Typer
        # vendors its own click, so match the ClickException interface rather than a class.
        if callable(getattr(err, "show", None)) and isinstance(getattr(err, "exit_code", None), int):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
