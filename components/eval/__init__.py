"""Evaluation: the study's benchmark registry, an lm-eval runner (local HF folder or OpenAI-compatible URL),
the offline eu-mini suite, aggregation to the paper's tables, plots and MLflow logging.

Modules import lm-eval, torch and MLflow lazily, so ``latxa.components.eval.registry`` and
``latxa.components.eval.aggregate`` stay light (aggregation needs only the standard library).
"""

from latxa.components.eval.errors import EvalError

__all__ = ["EvalError"]
