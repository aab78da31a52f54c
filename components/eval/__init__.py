"""Evaluation: the study's benchmark registry, an lm-eval runner (local HF folder or OpenAI-compatible URL),
the offline eu-mini suite, aggregation to the paper's tables, plots and MLflow logging.

Modules import lm-eval, torch and MLflow lazily, so ``components.eval.registry`` and
``components.eval.aggregate`` stay light (aggregation needs only the standard library).
"""

from components.eval.errors import EvalError

__all__ = ["EvalError"]
