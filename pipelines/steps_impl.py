"""What each pipeline step does, as plain functions (the KFP components in `steps.py` only call these).

Data preparation and local training are the layers' own KFP components (components/kfp); the steps here call
the other layers' Python entry points (evaluation: `components.eval.mlflow_log.evaluate_and_log`; SLURM
training: `slurm.kfp_bridge.train_job`) and talk to MLflow through `components.tracking`'s conventions: training
creates the variant's run, and every step tags it with its KFP task.
"""

from __future__ import annotations

import os
from pathlib import Path

from components import tracking
from latxa.errors import LatxaError


class StepError(LatxaError):
    """A pipeline step could not do its work (one sentence; the step's log has the details)."""


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------------------------------------
def check_tracking(experiment: str, tracking_uri: str) -> str:
    uri = tracking.check_reachable(tracking_uri or None)
    exp_id = tracking.ensure_experiment(experiment, uri)
    print(f"MLflow {uri}: experiment '{experiment}' (id {exp_id})", flush=True)
    return uri


def _train_tags(kfp_run_id: str, kfp_task: str, prepare_task: str, pipeline: str) -> dict[str, str]:
    tags = {**tracking.kfp_tags(kfp_run_id, kfp_task, "train"), tracking.TAG_PIPELINE: pipeline}
    if prepare_task:
        tags[tracking.TAG_KFP_TASK_PREFIX + "prepare"] = prepare_task
    return tags


def _move_export(model_dir: str, artifact_path: str) -> None:
    """Put the exported HF folder at the Model artifact's path (a rename: no copy of the weights)."""
    import shutil

    dst = Path(artifact_path)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(model_dir, dst)
    os.symlink(dst, model_dir, target_is_directory=True)


def train_summary(run_id: str, tracking_uri: str) -> dict[str, float]:
    """Final loss and tokens seen, from the run's metrics (what training logged)."""
    client = _client(tracking.resolve_tracking_uri(tracking_uri or None))
    metrics = client.get_run(run_id).data.metrics
    return {k: metrics[k] for k in (tracking.METRIC_FINAL_LOSS, tracking.METRIC_TOKENS_SEEN) if k in metrics}


# ---------------------------------------------------------------------------------------------
def evaluate(model: str, suite: str, limit: int, out: str, variant: str, run_id: str, tracking_uri: str,
             experiment: str, kfp_run_id: str, kfp_task: str) -> tuple[dict[str, float], str, str]:
    """lm-eval on the exported model, aggregated and logged by the evaluation layer as a nested run of the variant
    run (same experiment), tagged with this KFP task. Returns (metrics, eval run id, results JSON path)."""
    from components.eval.mlflow_log import evaluate_and_log

    step = evaluate_and_log(model, suite, out, limit=limit or None, name=variant, variant=variant,
                            parent_run_id=run_id or None, tracking_uri=tracking.resolve_tracking_uri(tracking_uri or None),
                            experiment=experiment, extra_tags=tracking.kfp_tags(kfp_run_id, kfp_task, "eval"))
    print(f"evaluated {variant} on {suite}: {step.languages}; MLflow run {step.mlflow_run_id} nested under {run_id}",
          flush=True)
    return step.metrics, step.mlflow_run_id, str(step.run.results_path)


# ---------------------------------------------------------------------------------------------
def register(variant: str, model_path: str, run_id: str, tracking_uri: str, kfp_run_id: str, tasks: dict[str, str],
             metrics: dict[str, float], eval_run_id: str = "", pipeline: str = "study") -> str:
    """Summary metrics onto the variant run; the model registered (once per run) and every piece tagged with its
    KFP task (``tasks``: step -> KFP task name). Training normally registered the model already; this step
    registers it only if it did not."""
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    if not run_id:
        raise StepError(f"training of {variant} returned no MLflow run id, so there is nothing to register.")
    client = _client(uri)
    run_tags = client.get_run(run_id).data.tags
    task_tags = {tracking.TAG_KFP_RUN: kfp_run_id, tracking.TAG_PIPELINE: pipeline,
                 **{tracking.TAG_KFP_TASK_PREFIX + step: name for step, name in tasks.items() if name}}
    if not run_tags.get(tracking.TAG_KFP_TASK) and tasks.get("train"):
        task_tags[tracking.TAG_KFP_TASK] = tasks["train"]  # the variant run is the training run
    logger = tracking.BufferedRunLogger(run_id, uri)
    logger.log_metrics(metrics)
    logger.set_tags(task_tags)
    left = logger.close()
    if left:
        raise StepError(f"the tracking server at {uri} is unreachable; {left} records are buffered locally, "
                        "run `latxa mlflow sync` when it is back.")
    if eval_run_id:
        client.set_tag(eval_run_id, tracking.TAG_KFP_RUN, kfp_run_id)
        if tasks.get("eval"):
            client.set_tag(eval_run_id, tracking.TAG_KFP_TASK, tasks["eval"])
    name = tracking.registered_model_name(variant)
    mine = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.run_id == run_id]
    if mine:
        version = mine[0]
    else:
        model_dir = Path(model_path)
        if not (model_dir / "config.json").is_file():
            raise StepError(f"{model_dir} is not an exported Hugging Face model folder (no config.json).")
        if "model" not in {f.path for f in client.list_artifacts(run_id)}:
            client.log_artifacts(run_id, str(model_dir), "model")
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, tags=tracking.variant_tags(variant))
        run = client.get_run(run_id)
        version = client.create_model_version(name, f"{run.info.artifact_uri.rstrip('/')}/model", run_id=run_id,
                                              tags=tracking.variant_tags(variant))
    run_tags = client.get_run(run_id).data.tags
    version_tags = {tracking.TAG_KFP_RUN: kfp_run_id, tracking.TAG_KFP_TASK: run_tags.get(tracking.TAG_KFP_TASK, ""),
                    tracking.TAG_KFP_TASK_PREFIX + "register": tasks.get("register", "")}
    for key, value in version_tags.items():
        if value:
            client.set_model_version_tag(name, version.version, key, value)
    print(f"{name} version {version.version} (MLflow run {run_id}) tagged with KFP run {kfp_run_id}", flush=True)
    return f"{name}/{version.version}"


def start_sweep(variants: list, experiment: str, tracking_uri: str, kfp_run_id: str, kfp_task: str) -> str:
    from components.registry import parse

    codes = [parse(str(code)).code for code in variants]
    uri = check_tracking(experiment, tracking_uri)
    exp_id = tracking.ensure_experiment(experiment, uri)
    run = _client(uri).create_run(exp_id, run_name=f"sweep-{kfp_run_id[:8] or 'local'}", tags={
        tracking.TAG_SWEEP: ",".join(codes), tracking.TAG_STAGE: "sweep", tracking.TAG_PIPELINE: "sweep",
        **tracking.kfp_tags(kfp_run_id, kfp_task, "sweep"), tracking.TAG_GIT_COMMIT: tracking.git_commit(),
    })
    _client(uri).set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def sweep_run_of(experiment: str, tracking_uri: str, kfp_run_id: str) -> str:
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{tracking.TAG_STAGE}` = 'sweep' and tags.`{tracking.TAG_KFP_RUN}` = '{kfp_run_id}'"),
        order_by=["attributes.start_time DESC"], max_results=1) if exp else []
    if not found:
        raise StepError(f"no sweep run tagged {tracking.TAG_KFP_RUN}={kfp_run_id} in experiment '{experiment}' at {uri}.")
    return found[0].info.run_id


def train_slurm(variant: str, profile: str, cluster: str, config_path: str, base_model: str, max_steps: int,
                experiment: str, tracking_uri: str, sweep_run_id: str, kfp_run_id: str, kfp_task: str,
                prepare_task: str, data: str, model_out: str) -> dict:
    """Train through the SLURM bridge (``slurm.kfp_bridge.train_job``: submit, wait while reporting, resubmit on
    TIMEOUT/PREEMPTED/NODE_FAIL, fail with the log tail); the job runs `latxa train` in the allocation.

    The tracking URI must be reachable from the compute nodes (on Leonardo: through the login node's proxy or
    an MLflow server inside the HPC network). The job's training writes ``<out>/run.json`` with its MLflow run id.
    """
    from slurm.errors import SlurmError
    from slurm.kfp_bridge import train_job

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    out_dir = Path(model_out).parent / "train"
    train_args = [f"--experiment={experiment}"] + ([f"--parent-run-id={sweep_run_id}"] if sweep_run_id else [])
    try:
        res = train_job(variant=variant, profile=cluster, study_profile=profile or None, data=data, out=str(out_dir),
                        model=base_model or None, config=config_path or None, tracking_uri=uri,
                        max_steps=max_steps or None, env={"MLFLOW_TRACKING_URI": uri}, train_args=train_args,
                        poll_s=1.0, max_poll_s=30.0)
    except SlurmError as err:
        raise StepError(f"SLURM training of {variant} failed: {err}") from err
    job_id, info = res["job_id"], res["run"]
    run_id = info.get("mlflow_run_id") or ""
    if run_id:
        logger = tracking.BufferedRunLogger(run_id, uri)
        logger.set_tags({**_train_tags(kfp_run_id, kfp_task, prepare_task, "sweep" if sweep_run_id else "study"),
                         tracking.TAG_SLURM_JOB: job_id})
        logger.close()
    if info.get("model") and Path(info["model"]).is_dir():
        _move_export(info["model"], model_out)
    metrics = {k: float(v) for k, v in (info.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"run_id": run_id, "metrics": metrics, "job_id": job_id}
