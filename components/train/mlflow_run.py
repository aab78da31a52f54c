"""MLflow for training, following latxa.components.tracking's conventions.

One run per variant (run name = variant code) in the study experiment, optionally tied to a sweep run (tag
``latxa.sweep_run``: a top-level run, so the MLflow UI lists it, see latxa.components.tracking);
params = every hyperparameter of the plan + git commit + data cache key; artifacts = resolved config, the
DeepSpeed config, the data manifest and stats; per-step metrics are logged by rank 0 during training
(latxa.components.train.loop); at the end the exported model is logged under ``model/`` and registered as
``latxa.components.tracking.registered_model_name(code)`` with the data hash and git commit as version tags.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from latxa.components import tracking


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start_sweep(name: str, uri: str | None = None, experiment: str | None = None, tags: dict | None = None) -> str:
    """A run that groups the variant runs of one sweep; pass its id as ``TrainJob.parent_run_id``."""
    uri = tracking.check_reachable(uri)
    exp = tracking.ensure_experiment(experiment or tracking.DEFAULT_EXPERIMENT, uri)
    run = _client(uri).create_run(exp, run_name=name, tags={tracking.TAG_STAGE: "sweep", tracking.TAG_SWEEP: name,
                                                            **(tags or {})})
    return run.info.run_id


def open_run(plan, job, uri: str, existing_run_id: str | None) -> str:
    """Create the variant's run (or reopen it on resume) and log params, tags and input artifacts."""
    from mlflow.entities import Param, RunTag

    client = _client(uri)
    if existing_run_id:
        try:
            client.update_run(existing_run_id, status="RUNNING")
            client.set_tag(existing_run_id, "latxa.resumed", "true")
            return existing_run_id
        except Exception:  # the store was reset since: start a fresh run rather than fail the resume
            print(f"[train] MLflow run {existing_run_id} not found at {uri}; starting a new run", flush=True)
    exp = tracking.ensure_experiment(job.experiment or tracking.DEFAULT_EXPERIMENT, uri)
    tags = {**tracking.variant_tags(plan.variant), tracking.TAG_STAGE: "train",
            tracking.TAG_DATA_HASH: plan.data_cache_key or "unknown", tracking.TAG_GIT_COMMIT: plan.git_commit,
            tracking.TAG_PROFILE: plan.profile or "none", **job.extra_tags}
    tags.update(tracking.sweep_member_tags(job.parent_run_id))
    slurm = __import__("os").environ.get("SLURM_JOB_ID")
    if slurm:
        tags[tracking.TAG_SLURM_JOB] = slurm
    run = client.create_run(exp, run_name=plan.variant, tags=tags)
    run_id = run.info.run_id
    from latxa.components.registry import parse

    v = parse(plan.variant)
    params = {**plan.params(), "paper_name": v.paper_name, "backbone": v.backbone_info.hf_name}
    items = [Param(k, str(val)[:6000]) for k, val in sorted(params.items())]
    for i in range(0, len(items), 90):
        client.log_batch(run_id, params=items[i:i + 90])
    from latxa.components.train.optim import deepspeed_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "resolved_config.json").write_text(json.dumps(plan.resolved_config, indent=2, default=str))
        (tmp / "train_plan.json").write_text(json.dumps(plan.to_dict(), indent=2, default=str))
        if plan.deepspeed_stage:
            (tmp / "deepspeed_config.json").write_text(json.dumps(deepspeed_config(plan), indent=2))
        for name in ("manifest.json", "stats.json"):
            src = Path(plan.data_dir) / name
            if src.is_file():
                (tmp / f"data_{name}").write_bytes(src.read_bytes())
        client.log_artifacts(run_id, str(tmp), artifact_path="config")
    client.log_batch(run_id, tags=[RunTag("mlflow.note.content",
                                          f"Training of {plan.variant} ({v.paper_name}) on {plan.world_size} worker(s).")])
    return run_id


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    try:
        _client(uri).set_terminated(run_id, status=status)
    except Exception as err:  # never hide the training error behind a tracking error
        print(f"[train] could not mark MLflow run {run_id} {status}: {err}", flush=True)


def register_export(plan, job, uri: str, run_id: str, model_dir: Path, metrics: dict) -> tuple[str | None, str | None]:
    """Log the exported folder and final metrics, register the model version; returns (name, version)."""
    client = _client(uri)
    final = {tracking.METRIC_FINAL_LOSS: metrics.get("loss"), tracking.METRIC_TOKENS_SEEN: metrics.get("tokens_seen"),
             "train_tokens_per_s": metrics.get("tokens_per_s")}
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    step = int(metrics.get("step") or plan.total_steps)
    client.log_batch(run_id, metrics=[Metric(k, float(v), ts, step) for k, v in final.items() if v is not None])
    client.set_tag(run_id, tracking.TAG_MODEL_PATH, str(model_dir))
    name = version = None
    if job.register:
        client.log_artifacts(run_id, str(model_dir), artifact_path="model")
        name = tracking.registered_model_name(plan.variant)
        try:
            client.get_registered_model(name)
        except Exception:
            try:
                client.create_registered_model(name, tags=tracking.variant_tags(plan.variant),
                                               description=f"Latxa-Instruct variant {plan.variant}")
            except Exception:  # created concurrently by another variant job
                client.get_registered_model(name)
        source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/model"
        tags = {**tracking.variant_tags(plan.variant), tracking.TAG_DATA_HASH: plan.data_cache_key or "unknown",
                tracking.TAG_GIT_COMMIT: plan.git_commit, tracking.TAG_MODEL_PATH: str(model_dir),
                tracking.TAG_PROFILE: plan.profile or "none"}
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                         description=f"{plan.variant} trained {step} steps, final loss {metrics.get('loss')}")
        version = str(mv.version)
    client.set_terminated(run_id, status="FINISHED")
    return name, version
