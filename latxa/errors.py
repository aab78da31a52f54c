"""The one error type users see: its message is a single readable sentence.

Every layer raises a subclass of :class:`LatxaError` for bad input; the CLI turns it
into ``error: <sentence>`` on stderr and exit status 2, with no traceback. The foundation's
file parsers (``latxa.yamlfile``, ``latxa.jsonl.iter_lines``) take the caller's subclass and
raise it with ``file:line``.
"""


class LatxaError(Exception):
    """Bad input or an unusable environment, explained in one sentence."""

    exit_code = 2
