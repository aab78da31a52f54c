"""What each pipeline step does, as plain functions (the KFP components in `steps.py` only call these).

Steps talk to the other layers through their documented CLIs (`latxa data prepare`, `latxa train`,
`latxa eval run`, the SLURM bridge) and to MLflow through `components.tracking`'s conventions:
the pipeline owns one MLflow run per variant (created by `start_run`, handed to the training step
as ``MLFLOW_RUN_ID`` so training logs into the same run), every step tags it with its KFP task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from components import tracking
from latxa.errors import LatxaError


class StepError(LatxaError):
    """A pipeline step could not do its work (one sentence; the step's log has the details)."""


def latxa_exe() -> str:
    exe = Path(sys.executable).with_name("latxa")
    return str(exe) if exe.exists() else "latxa"


def run_cli(args: list[str], env: dict[str, str] | None = None, what: str = "") -> None:
    """Run a `latxa` verb, streaming its output into the step's log; raise StepError on failure."""
    cmd = [latxa_exe(), *args]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise StepError(f"{what or 'latxa ' + args[0]} failed with exit status {proc.returncode} (command: {' '.join(cmd)}).")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------------------------------------
def start_run(variant: str, profile: str, config_path: str, experiment: str, tracking_uri: str,
              kfp_run_id: str, kfp_task: str, pipeline: str = "study", sweep_run_id: str = "") -> str:
    """Create the variant's MLflow run (tags + params), fail fast if the store is unreachable; return its id."""
    from components.config import load_config
    from components.registry import parse

    parse(variant)  # a bad code fails here, before any work
    uri = tracking.check_reachable(tracking_uri or None)
    exp_id = tracking.ensure_experiment(experiment, uri)
    resolved = load_config(config_path or None).resolve(profile or None)
    tags = {
        **tracking.variant_tags(variant),
        **tracking.kfp_tags(kfp_run_id, kfp_task, "start"),
        tracking.TAG_STAGE: "train",
        tracking.TAG_PIPELINE: pipeline,
        tracking.TAG_PROFILE: profile,
        tracking.TAG_GIT_COMMIT: tracking.git_commit(),
        "mlflow.runName": variant,
    }
    if sweep_run_id:
        tags["mlflow.parentRunId"] = sweep_run_id
    client = _client(uri)
    run = client.create_run(exp_id, tags=tags, run_name=variant)
    params = {"variant": variant, **{k: ("" if v is None else v) for k, v in resolved.flat_params().items()}}
    logger = tracking.BufferedRunLogger(run.info.run_id, uri)
    logger.log_params(params)
    logger.close()
    print(f"MLflow run {run.info.run_id} for {variant} in experiment '{experiment}' at {uri}", flush=True)
    return run.info.run_id


def tag_step(run_id: str, tracking_uri: str, step: str, kfp_run_id: str, kfp_task: str, extra: dict | None = None) -> None:
    logger = tracking.BufferedRunLogger(run_id, tracking_uri or None)
    logger.set_tags({**tracking.kfp_tags(kfp_run_id, kfp_task, step), **(extra or {})})
    logger.close()


def study_config_file(config_path: str, profile: str, max_steps: int, out_dir: Path) -> str:
    """The study YAML the training step uses: the given one, with train.max_steps forced in the profile if asked."""
    if not max_steps:
        return config_path
    import yaml

    from components.config import DEFAULT_CONFIG, load_config

    cfg = load_config(config_path or None)
    data = yaml.safe_load(Path(config_path or DEFAULT_CONFIG).read_text(encoding="utf-8"))
    if profile:
        prof = data.setdefault("profiles", {}).setdefault(profile, {})
        prof.setdefault("overrides", {}).setdefault("train", {})["max_steps"] = int(max_steps)
    else:
        data.setdefault("train", {})["max_steps"] = int(max_steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cfg.resolve(profile or None)  # still valid
    return str(path)


# ---------------------------------------------------------------------------------------------
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = obj
    return out


def train_local(variant: str, profile: str, config_path: str, base_model: str, data: str, out: str,
                run_id: str, tracking_uri: str) -> None:
    """`latxa train` on local Ray, logging into the pipeline's MLflow run (MLFLOW_RUN_ID)."""
    args = ["train", "--variant", variant, "--data", data, "--out", out]
    if profile:
        args += ["--profile", profile]
    if base_model:
        args += ["--model", base_model]
    if config_path:
        args += ["--config", config_path]
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    args += ["--tracking-uri", uri]
    run_cli(args, env={"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": uri}, what="training")


def train_summary(run_id: str, tracking_uri: str) -> dict[str, float]:
    """Final loss and tokens seen, from the run's metric history (what training logged)."""
    client = _client(tracking.resolve_tracking_uri(tracking_uri or None))
    run = client.get_run(run_id)
    out: dict[str, float] = {}
    hist = client.get_metric_history(run_id, tracking.METRIC_LOSS)
    if hist:
        last = max(hist, key=lambda m: (m.step, m.timestamp))
        out[tracking.METRIC_FINAL_LOSS] = last.value
        out["first_loss"] = min(hist, key=lambda m: (m.step, m.timestamp)).value
        out["train_steps"] = float(last.step)
    for key in (tracking.METRIC_TOKENS_SEEN, "trainable_tokens_seen", "tokens_seen_total"):
        if key in run.data.metrics:
            out[tracking.METRIC_TOKENS_SEEN] = run.data.metrics[key]
            break
    return out


# ---------------------------------------------------------------------------------------------
def evaluate(model: str, suite: str, limit: float, out: str, variant: str, run_id: str, tracking_uri: str,
             experiment: str, kfp_run_id: str, kfp_task: str) -> dict[str, float]:
    """`latxa eval run` on the exported model, then the evaluation layer's aggregation and MLflow logging
    (a nested run under the variant's run, tagged with this KFP task). Returns the flat metrics."""
    from components.eval.aggregate import aggregate
    from components.eval.mlflow_log import log_evaluation, metrics_of

    name = variant
    args = ["eval", "run", "--model", model, "--suite", suite, "--out", out, "--name", name, "--format", "md"]
    if limit:
        args += ["--limit", str(limit)]
    run_cli(args, what="evaluation")
    agg = aggregate([out], suite=suite)
    if name not in agg.get("models", {}):
        raise StepError(f"evaluation wrote no results for {name} under {out}.")
    metrics = metrics_of(agg["models"][name], suite)
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    eval_run = log_evaluation(out, name, suite=suite, variant=variant, tracking_uri=uri, experiment=experiment,
                              parent_run_id=run_id, extra_tags=tracking.kfp_tags(kfp_run_id, kfp_task, "eval"))
    print(f"evaluation logged as MLflow run {eval_run} (nested under {run_id})", flush=True)
    return metrics


# ---------------------------------------------------------------------------------------------
def register(variant: str, model_path: str, run_id: str, tracking_uri: str, kfp_run_id: str, kfp_task: str,
             metrics: dict[str, float]) -> str:
    """Log the summary metrics, register the exported model (once per run), tag it with the KFP task; end the run."""
    import mlflow

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    client = _client(uri)
    logger = tracking.BufferedRunLogger(run_id, uri)
    logger.log_metrics(metrics)
    logger.set_tags({**tracking.kfp_tags(kfp_run_id, kfp_task, "register"), tracking.TAG_MODEL_PATH: model_path})
    left = logger.close()
    if left:
        raise StepError(f"the tracking server at {uri} is unreachable; {left} records are buffered, run `latxa mlflow sync` when it is back.")
    name = tracking.registered_model_name(variant)
    mine = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.run_id == run_id]
    if mine:
        version = mine[0]
    else:
        model_dir = Path(model_path)
        if not (model_dir / "config.json").is_file():
            raise StepError(f"{model_dir} is not an exported Hugging Face model folder (no config.json).")
        mlflow.set_tracking_uri(uri)
        artifact_path = "model"
        existing = {f.path for f in client.list_artifacts(run_id)}
        if artifact_path not in existing:
            client.log_artifacts(run_id, str(model_dir), artifact_path)
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, tags={tracking.TAG_VARIANT: variant})
        run = client.get_run(run_id)
        version = client.create_model_version(name, f"{run.info.artifact_uri}/{artifact_path}", run_id=run_id,
                                              tags={tracking.TAG_VARIANT: variant})
    for key, value in {**tracking.kfp_tags(kfp_run_id, kfp_task, "register"),
                       tracking.TAG_DATA_HASH: client.get_run(run_id).data.tags.get(tracking.TAG_DATA_HASH, ""),
                       tracking.TAG_GIT_COMMIT: tracking.git_commit()}.items():
        if value:
            client.set_model_version_tag(name, version.version, key, value)
    client.set_terminated(run_id, "FINISHED")
    print(f"registered {name} version {version.version} from run {run_id}", flush=True)
    return f"{name}/{version.version}"


def start_sweep(variants: list, experiment: str, tracking_uri: str, kfp_run_id: str, kfp_task: str) -> str:
    from components.registry import parse

    for code in variants:
        parse(str(code))
    uri = tracking.check_reachable(tracking_uri or None)
    exp_id = tracking.ensure_experiment(experiment, uri)
    name = "sweep-" + (kfp_run_id[:8] if kfp_run_id else "local")
    run = _client(uri).create_run(exp_id, run_name=name, tags={
        tracking.TAG_SWEEP: ",".join(map(str, variants)), tracking.TAG_STAGE: "sweep", tracking.TAG_PIPELINE: "sweep",
        **tracking.kfp_tags(kfp_run_id, kfp_task, "sweep"), tracking.TAG_GIT_COMMIT: tracking.git_commit(),
    })
    return run.info.run_id


def train_slurm(variant: str, profile: str, config_path: str, base_model: str, data: str, out: str, cluster: str,
                run_id: str, tracking_uri: str) -> str:
    """Submit `latxa train` through the SLURM bridge, wait, return the job id (the step fails if the job fails)."""
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    try:
        from slurm import kfp_bridge  # type: ignore[import-not-found]
    except ImportError:
        kfp_bridge = None
    if kfp_bridge is not None and hasattr(kfp_bridge, "train_and_wait"):
        return str(kfp_bridge.train_and_wait(variant=variant, profile=cluster, study_profile=profile, config=config_path,
                                             model=base_model, data=data, out=out, tracking_uri=uri,
                                             env={"MLFLOW_RUN_ID": run_id}))
    args = ["slurm", "submit", "--variant", variant, "--profile", cluster, "--data", data, "--out", out]
    if base_model:
        args += ["--model", base_model]
    print("+ " + " ".join([latxa_exe(), *args]), flush=True)
    proc = subprocess.run([latxa_exe(), *args], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": uri})
    print(proc.stdout, proc.stderr, flush=True)
    if proc.returncode != 0:
        raise StepError(f"SLURM submission failed with exit status {proc.returncode}.")
    import re

    found = re.findall(r"\b(\d+)\b", proc.stdout)
    if not found:
        raise StepError("SLURM submission printed no job id.")
    job = found[-1]
    run_cli(["slurm", "wait", job], what=f"SLURM job {job}")
    return job
