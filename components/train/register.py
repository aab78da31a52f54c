"""Registration as its own step (the chain's register job, `latxa model register`): a trained run's exported model
into the MLflow Model Registry as ``latxa-<key>`` (``latxa-70b-exp_2_101`` for the 70B), with the evaluation's
means copied onto the variant run. What `latxa train` does at its end when export is not split off."""

from __future__ import annotations

import json
import time
from pathlib import Path

from latxa.components import tracking
from latxa.errors import LatxaError


class RegisterError(LatxaError):
    """A run that cannot be registered (one sentence)."""


def register_run(run_dir: str | Path, model_dir: str | Path | None = None, *, tracking_uri: str | None = None,
                 experiment: str | None = None) -> dict:
    """Register ``model_dir`` (default: ``run_dir/model``, else run.json's ``model``) for the run in ``run_dir``."""
    from latxa.components.train.mlflow_run import register_export
    from latxa.components.train.plan import RUN_FILE, TrainJob, TrainPlan, read_run_file

    run_dir = Path(run_dir)
    run = read_run_file(run_dir)
    if run is None:
        raise RegisterError(f"{run_dir} holds no {RUN_FILE}, so it is not a training run folder.")
    if run.get("status") not in ("trained", "finished", "exported", "registered"):
        raise RegisterError(f"The run in {run_dir} is {run.get('status')}, not trained; finish training first.")
    model = Path(model_dir) if model_dir else Path(run.get("model") or run_dir / "model")
    if not (model / "config.json").is_file():
        raise RegisterError(f"{model} is not an exported model folder (no config.json); run `latxa train export` first.")
    run_id = run.get("mlflow_run_id")
    if not run_id:
        raise RegisterError(f"The run in {run_dir} was not tracked in MLflow (no mlflow_run_id in {RUN_FILE}).")
    uri = tracking.check_reachable(tracking_uri or run.get("tracking_uri"))
    plan = TrainPlan.from_dict(run["plan"])
    job = TrainJob(variant=plan.variant, data_dir=Path(plan.data_dir), out_dir=run_dir, register=True,
                   experiment=experiment)
    means = _eval_means(uri, run_id)
    if means:
        logger = tracking.BufferedRunLogger(run_id, uri)
        logger.log_metrics(means, step=int(run.get("metrics", {}).get("step") or 0))
        logger.close()
    name, version = register_export(plan, job, uri, run_id, model, dict(run.get("metrics") or {}))
    run.update({"status": "registered", "model": str(model), "registered_model": name, "model_version": version,
                "registered": time.time()})
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(run, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(run_dir / RUN_FILE)
    return {"registered_model": name, "version": version, "run_id": run_id, "tracking_uri": uri,
            "model": str(model), "eval_metrics": means}


def _eval_means(uri: str, run_id: str) -> dict[str, float]:
    """The evaluation runs nested under the variant run (``latxa eval run --variant``): their means and scores."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_run(run_id).info.experiment_id
    children = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                                  order_by=["attributes.start_time ASC"], max_results=100)
    out: dict[str, float] = {}
    for child in children:
        if child.data.tags.get(tracking.TAG_STAGE) != "eval":
            continue
        out.update({k: v for k, v in child.data.metrics.items() if k.startswith(tracking.METRIC_EVAL_PREFIX + ".")})
    return out
