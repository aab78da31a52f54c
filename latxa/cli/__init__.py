"""The `latxa` command line: a thin front over every layer. Private to the package: nothing imports it.

The console script is ``latxa = latxa.cli:main``; ``python -m latxa`` runs the same.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from latxa.cli.app import main as run

    run(argv)
