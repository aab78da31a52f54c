"""``python -m latxa``: the same as the ``latxa`` command."""

from latxa.cli import main

main()
