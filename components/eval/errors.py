"""The evaluation layer's error type (one readable sentence, exit status 2 in the CLI)."""

from latxa.errors import LatxaError


class EvalError(LatxaError, ValueError):
    """Bad evaluation input: unknown task or suite, a results file that is not lm-eval JSON, a model that does not load."""
