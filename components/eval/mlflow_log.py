"""Log an evaluation to MLflow as a nested run of the variant's run (``latxa.components.tracking`` conventions).

Metrics use ``latxa.components.tracking``'s names: ``eval.<suite>.<task>`` per task (percent),
``eval.<suite>.mean_<lang>`` per language, plus ``eval.<suite>.n_tasks_<lang>`` (tasks the mean covers)
and ``eval.<suite>.category_<category>``. Artifacts under ``eval/``: lm-eval's results JSON,
the aggregate JSON, the markdown tables and the PNG plots.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from latxa.components import tracking
from latxa.components.eval.errors import EvalError

if TYPE_CHECKING:
    from latxa.components.eval.runner import EvalRun


def metrics_of(model_table: dict, suite: str) -> dict[str, float]:
    """Flat MLflow metrics of one model's aggregate entry."""
    prefix = f"{tracking.METRIC_EVAL_PREFIX}.{suite}"
    out: dict[str, float] = {}
    for task, score in model_table["tasks"].items():
        out[tracking.eval_task_metric(suite, task)] = float(score)
    for lang, value in model_table["languages"].items():
        if value is not None:
            out[tracking.eval_mean_metric(suite, lang)] = float(value)
        out[f"{prefix}.n_tasks_{lang}"] = float(model_table["coverage"][lang]["tasks"])
    for cat, value in model_table["categories"].items():
        if value is not None:
            out[f"{prefix}.category_{cat}"] = float(value)
    return out


def variant_run_id(client, experiment_id: str, variant: str) -> str:
    """The variant's top-level run (run name = variant code); created, with the variant tags, if absent."""
    from mlflow.entities import ViewType

    tags = tracking.variant_tags(variant)  # validates the code
    runs = client.search_runs([experiment_id], filter_string=f"tags.{tracking.TAG_VARIANT} = '{tags[tracking.TAG_VARIANT]}'",
                              run_view_type=ViewType.ACTIVE_ONLY, order_by=["attributes.start_time DESC"], max_results=200)
    for run in runs:
        if "mlflow.parentRunId" not in run.data.tags and run.info.run_name == tags[tracking.TAG_VARIANT]:
            return run.info.run_id
    run = client.create_run(experiment_id, run_name=tags[tracking.TAG_VARIANT],
                            tags={**tags, tracking.TAG_GIT_COMMIT: tracking.git_commit()})
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def log_evaluation(results_root: str | Path, model_name: str, *, suite: str, variant: str | None = None,
                   tracking_uri: str | None = None, experiment: str = tracking.DEFAULT_EXPERIMENT,
                   parent_run_id: str | None = None, params: dict | None = None, extra_tags: dict | None = None) -> str:
    """Aggregate ``results_root/model_name`` and log it; returns the evaluation run's id."""
    from latxa.components.eval.aggregate import aggregate
    from latxa.components.eval.plots import plot_all
    from latxa.components.eval.tables import to_json, to_markdown
    from mlflow import MlflowClient

    results_root = Path(results_root)
    model_dir = results_root / model_name
    if not model_dir.is_dir():
        raise EvalError(f"{model_dir}: no results folder for model '{model_name}'.")
    with tempfile.TemporaryDirectory() as tmp:
        only = Path(tmp) / "in"
        only.mkdir()
        (only / model_name).symlink_to(model_dir.resolve(), target_is_directory=True)
        agg = aggregate([only], suite=suite)
    table = agg["models"][model_name]

    uri = tracking.check_reachable(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = tracking.ensure_experiment(experiment, uri)
    parent = parent_run_id or (variant_run_id(client, exp_id, variant) if variant else None)
    tags = {tracking.TAG_STAGE: "eval", "eval.suite": suite, "eval.model": model_name,
            tracking.TAG_GIT_COMMIT: tracking.git_commit(), **(extra_tags or {})}
    if variant:
        tags.update(tracking.variant_tags(variant))
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp_id, run_name=f"eval-{suite}-{model_name}", tags=tags)
    run_id = run.info.run_id
    try:
        all_params = {"eval.suite": suite, "eval.model": model_name, **{k: str(v) for k, v in (params or {}).items()}}
        for k, v in all_params.items():
            client.log_param(run_id, k, str(v)[:500])
        import time

        now = int(time.time() * 1000)
        from mlflow.entities import Metric

        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics_of(table, suite).items()])
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "aggregate.json").write_text(to_json(agg), encoding="utf-8")
            (tmp / "tables.md").write_text(to_markdown(agg), encoding="utf-8")
            plot_all(agg, tmp)
            for p in sorted(tmp.iterdir()):
                client.log_artifact(run_id, str(p), artifact_path="eval")
        for p in sorted(model_dir.glob("results_*.json")):
            client.log_artifact(run_id, str(p), artifact_path="eval/lm_eval")
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


@dataclass
class EvalStep:
    """What an evaluation step produced: the run, its flat metrics, its language means, the MLflow run id ('' if
    not logged)."""

    run: "EvalRun"
    metrics: dict[str, float]
    languages: dict
    mlflow_run_id: str = ""


def evaluate_and_log(target: str, suite: str, out: str | Path, *, limit: int | None = None, name: str | None = None,
                     tasks: list[str] | None = None, served_model: str | None = None, device: str = "cpu",
                     log: bool = True, variant: str | None = None, parent_run_id: str | None = None,
                     tracking_uri: str | None = None, experiment: str = tracking.DEFAULT_EXPERIMENT,
                     extra_tags: dict | None = None, run_options: dict | None = None) -> EvalStep:
    """lm-eval on ``target`` into ``out``, aggregated, and (with ``log``) logged as a nested MLflow run: the one
    body behind the pipelines' evaluate step (``latxa.pipelines.steps.evaluate_model``).
    ``run_options`` go to :func:`latxa.components.eval.runner.run_eval` as they are (``datasets``, ``batch_size``,
    ``backend``, ``revision``, ``kind``, ``resume``, ...)."""
    from latxa.components.eval.aggregate import aggregate
    from latxa.components.eval.runner import run_eval

    res = run_eval(target, suite, out, limit=limit, name=name, tasks=tasks, served_model=served_model, device=device,
                   **(run_options or {}))
    table = aggregate([out], suite=suite)["models"][res.spec.name]
    step = EvalStep(res, metrics_of(table, suite), table["languages"])
    if log:
        step.mlflow_run_id = log_evaluation(out, res.spec.name, suite=suite, variant=variant, tracking_uri=tracking_uri,
                                            experiment=experiment, parent_run_id=parent_run_id,
                                            params={"eval.limit": limit or 0, "eval.lm_type": res.spec.lm_type,
                                                    "eval.kind": res.spec.kind, "eval.chat": res.spec.chat,
                                                    "eval.model_args": res.spec.args_string()},
                                            extra_tags=extra_tags)
    return step
