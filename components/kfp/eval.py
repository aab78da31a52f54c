"""KFP v2 component: evaluate a model with lm-eval and (optionally) log it to MLflow.

Inputs: ``model`` as an ``Input[Model]`` artifact (an exported Hugging Face folder), or, when no artifact
is wired, ``model_url`` (an OpenAI-compatible endpoint URL, or a model folder path); ``suite``, ``limit`` and
optionally ``tasks`` (comma-separated subset of the suite), ``experiment`` for the MLflow run.
Outputs: ``metrics`` (``Metrics``: per-task scores, language means and their task counts, in percent,
under ``components.tracking``'s names) and ``results`` (an ``Artifact`` folder holding lm-eval's own
``<name>/results_<time>.json`` and per-sample logs). With ``variant`` or ``mlflow_parent_run_id`` the
evaluation is also logged to MLflow as a nested run. Returns the lm-eval results JSON path.

Runs under ``kfp.local.SubprocessRunner(use_venv=False)`` with the project installed in the current
environment; ``install_kfp_package=False`` because the component image already has kfp.
"""

import os
from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

COMPONENT_IMAGE = os.environ.get("LATXA_COMPONENT_IMAGE", "ghcr.io/latxa-mlops/components:0.1.0")


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    suite: str,
    metrics: Output[Metrics],
    results: Output[Artifact],
    model: Optional[Input[Model]] = None,
    model_url: str = "",
    served_model: str = "",
    name: str = "",
    limit: int = 0,
    tasks: str = "",
    device: str = "cpu",
    variant: str = "",
    mlflow_parent_run_id: str = "",
    tracking_uri: str = "",
    experiment: str = "",
) -> str:
    """lm-eval on a model artifact or URL; Metrics + the results folder; optional nested MLflow run."""
    import os

    from components import tracking
    from components.eval.errors import EvalError
    from components.eval.mlflow_log import evaluate_and_log

    if model is not None and model_url:
        raise EvalError("give either the model artifact or model_url, not both.")
    target = model.path if model is not None else model_url
    if not target:
        raise EvalError("no model: wire a Model artifact or set model_url.")
    run_name = name or (str(model.metadata.get("variant", "")) if model is not None else "") or None
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] or None
    step = evaluate_and_log(target, suite, results.path, limit=limit or None, name=run_name, tasks=task_list,
                            served_model=served_model or None, device=device, log=bool(variant or mlflow_parent_run_id),
                            variant=variant or None, parent_run_id=mlflow_parent_run_id or None,
                            tracking_uri=tracking_uri or None, experiment=experiment or tracking.DEFAULT_EXPERIMENT)
    res = step.run
    for key, value in step.metrics.items():
        metrics.log_metric(key, value)
    results.metadata.update({"suite": suite, "model": res.spec.name, "lm_type": res.spec.lm_type,
                             "results_json": os.path.relpath(res.results_path, results.path),
                             "tasks": ",".join(res.tasks), "limit": limit})
    if step.mlflow_run_id:
        results.metadata["mlflow_run_id"] = step.mlflow_run_id
        print(f"logged to MLflow run {step.mlflow_run_id} ({tracking.resolve_tracking_uri(tracking_uri or None)})")
    print(f"evaluated {res.spec.name} on {suite}: {step.languages}")
    return str(res.results_path)
