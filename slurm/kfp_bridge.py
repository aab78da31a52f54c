"""What Kubeflow steps call: the study's chain, one step per SLURM job, passing references to the cluster's files.

A Kubeflow pod cannot hand a Leonardo job a path inside the pod, and a 16 GB (or 140 GB) model should not travel
back to the pod. So the SLURM steps pass **references** to the cluster's filesystem between them,
``slurm://<cluster>/<absolute path>``, as their artifacts' metadata (``slurm_ref``) and as the artifact's content
(a small JSON file), and bring back only what is small: the job id, the checkpoint's reference, the metrics, the
MLflow run id, the registered model version.

- :func:`prepare_step`: ``latxa study prepare`` as a one-node job -> the prepared set's reference;
- :func:`train_job`: the Ray Train job (``latxa train --no-export`` on the prepared set and its held-out sets) ->
  the run's reference, its MLflow run and metrics (also what the older single ``slurm-train-model`` step used);
- :func:`export_step`, :func:`eval_step`, :func:`register_step`: one job each, on the cluster.

Every step submits with an idempotency key (KFP run id + task + variant): a step that is re-run (its pod killed,
the KFP run retried) re-attaches to the job already submitted instead of submitting a second one, and ``wait``
rides out dropped SSH connections.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import PurePosixPath
from typing import Mapping

from latxa.slurm.bridge import JobStatus, SlurmBridge
from latxa.slurm.errors import JobFailedError, SlurmError
from latxa.slurm.profiles import ClusterProfile, load_profile
from latxa.slurm.render import RenderedJob, join_path, render_command, render_train

SCHEME = "slurm://"


def make_ref(cluster: str, path: str) -> str:
    """``slurm://<cluster>/<absolute path on the cluster>``."""
    if not path.startswith("/"):
        raise SlurmError(f"A cluster reference needs an absolute path, not '{path}'.")
    return f"{SCHEME}{cluster}{PurePosixPath(path)}"


def parse_ref(ref: str) -> tuple[str, str]:
    """(cluster, path) of a ``slurm://`` reference; one sentence when it is not one."""
    if not isinstance(ref, str) or not ref.startswith(SCHEME) or "/" not in ref[len(SCHEME):]:
        raise SlurmError(f"'{ref}' is not a cluster reference (slurm://CLUSTER/PATH).")
    rest = ref[len(SCHEME):]
    cluster, _, path = rest.partition("/")
    return cluster, "/" + path


def ref_path(ref_or_path: str, cluster: str | None = None) -> str:
    """A step input that is a reference (checked to be on ``cluster``) or, for older callers, a plain path."""
    if not str(ref_or_path).startswith(SCHEME):
        return str(ref_or_path)
    where, path = parse_ref(ref_or_path)
    if cluster and where != cluster:
        raise SlurmError(f"{ref_or_path} is on cluster '{where}', but this step submits to '{cluster}'.")
    return path


def _report(t0: float):
    def show(st: JobStatus) -> None:
        print(f"[slurm] {time.monotonic() - t0:7.1f}s job {st.job_id}: {st.state}", flush=True)
    return show


def _profile(cluster: str, study_profile: str | None, config: str | None = None) -> ClusterProfile:
    return load_profile(cluster).for_study(study_profile or None, config or None)


def _base(bridge: SlurmBridge, prof: ClusterProfile, kind: str, fallback: str, kfp_run_id: str) -> str:
    """This KFP run's folder of ``kind`` on the cluster (expanded there: references are plain absolute paths)."""
    base = getattr(prof.storage, kind) or f"{prof.workdir_path}/{fallback}"
    return join_path(bridge.cluster_path(base), f"kfp-{(kfp_run_id or 'local')[:12]}")


def run_job(bridge: SlurmBridge, job: RenderedJob, *, key: str | None, timeout_s: float | None = None,
            max_resubmits: int | None = None, poll_s: float = 5.0, max_poll_s: float = 60.0,
            stage: dict | None = None) -> JobStatus:
    """Submit (or re-attach to the job already submitted under ``key``) and wait; print the log tail on failure."""
    job_id = bridge.submit(job, key=key, stage=stage)
    print(f"[slurm] {job.name}: job {job_id} on {bridge.transport.describe()} (log {job.log_for(job_id)})", flush=True)
    try:
        return bridge.wait(job_id, timeout=timeout_s, poll=poll_s, max_poll=max_poll_s, resubmit=max_resubmits,
                           on_update=_report(time.monotonic()))
    except JobFailedError as err:
        if err.log_tail:
            print(f"[slurm] last lines of the log:\n{err.log_tail}", file=sys.stderr, flush=True)
        raise


def _read_json(bridge: SlurmBridge, path: str, what: str) -> dict:
    text = bridge.transport.read_text(path)
    if not text:
        raise SlurmError(f"The job completed but {path} is missing, so the {what} cannot be located.")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SlurmError(f"{path} is not valid JSON.") from None


def prepare_step(*, variant: str, cluster: str, study_profile: str | None = None, data_config: str | None = None,
                 tokenizer: str | None = None, smoke: bool = False, kfp_run_id: str = "", kfp_task: str = "",
                 timeout_s: float | None = None, poll_s: float = 5.0) -> dict:
    """``latxa study prepare`` on the cluster (its one-node prep allocation); returns the prepared set's reference."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    prof = _profile(cluster, study_profile)
    v = parse(variant, size=load_config().resolve(prof.study_profile).target.model_size)
    bridge = SlurmBridge(prof)
    out = join_path(_base(bridge, prof, "data", "prepared", kfp_run_id), v.run_name)
    argv = ["latxa", "study", "prepare", "--variant", v.key, "--profile", prof.study_profile, "--out", out,
            "--tokenizer", tokenizer or prof.backbone_model(v), "--quiet"]
    cfg = data_config or prof.data_configs.get(v.size)
    if cfg:
        argv += ["--config", cfg]
    if smoke:
        argv.append("--smoke")
    st = run_job(bridge, render_command(prof, argv, name=f"prep-{v.run_name}", kind="prep"),
                 key=f"{kfp_run_id}/{kfp_task}/{v.key}/prep" if kfp_run_id else None, timeout_s=timeout_s,
                 poll_s=poll_s)
    summary = _read_json(bridge, f"{out}/study-data.json", "prepared data")
    return {"ref": make_ref(cluster, out), "job_id": st.job_id, "summary": summary}


def train_job(*, variant: str, profile: str = "local", study_profile: str | None = None, data: str | None = None,
              out: str | None = None, model: str | None = None, config: str | None = None,
              tracking_uri: str | None = None, max_steps: int | None = None, env: Mapping[str, str] | None = None,
              timeout_s: float | None = None, max_resubmits: int | None = None, poll_s: float = 5.0,
              max_poll_s: float = 60.0, train_args: list[str] | None = None, key: str | None = None,
              export: bool = True, smoke: bool = False, kfp_run_id: str = "") -> dict:
    """Submit one variant's Ray Train job (or re-attach to it by ``key``), wait, return its results.

    ``data`` is a prepared set's reference (``slurm://``, from :func:`prepare_step`: its ``train/`` and
    ``heldout/`` are used), a packed folder on the cluster, or None (prepared inside the job). ``export=False``
    leaves export and registration to their own steps. ``train_args`` are extra ``latxa train`` arguments."""
    prof = _profile(profile, study_profile, config)
    bridge = SlurmBridge(prof)
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    v = parse(variant, size=load_config().resolve(prof.study_profile).target.model_size)
    train_args = list(train_args or [])
    if tracking_uri:
        train_args += ["--tracking-uri", tracking_uri]
    if max_steps:
        train_args += ["--max-steps", str(int(max_steps))]
    if not export:
        train_args.append("--no-export")
    datas = heldouts = None
    plain = None
    if data and str(data).startswith(SCHEME):
        path = ref_path(data, profile)
        datas, heldouts = [f"{path}/train"], [f"{path}/heldout"]
    else:
        plain = data or None
    if out is None:
        out = join_path(_base(bridge, prof, "runs", "runs", kfp_run_id), v.run_name)
    out = ref_path(out, profile)
    job = render_train(prof, [v.key], out=out, data=plain, datas=datas, heldouts=heldouts, model=model or None,
                       train_args=train_args, env=dict(env or {}), config_staged=bool(config),
                       check_study=not study_profile and not smoke, smoke=smoke)
    st = run_job(bridge, job, key=key, timeout_s=timeout_s, max_resubmits=max_resubmits, poll_s=poll_s,
                 max_poll_s=max_poll_s, stage={"study.yaml": config} if config else None)
    run = _read_run_file(bridge, out)
    model_dir = run.get("model") or f"{out}/model"
    rec = bridge.record(st.job_id)
    return {"job_id": st.job_id, "state": st.state, "attempts": st.attempts, "model": model_dir,
            "mlflow_run_id": run.get("mlflow_run_id") or (env or {}).get("MLFLOW_RUN_ID", ""),
            "log": rec.log_for(st.job_id) if rec else None, "run": run, "ref": make_ref(profile, out),
            "checkpoint": make_ref(profile, run["checkpoint"]) if run.get("checkpoint") else ""}


def export_step(*, run_ref: str, cluster: str, study_profile: str | None = None, kfp_run_id: str = "",
                kfp_task: str = "", timeout_s: float | None = None, poll_s: float = 5.0) -> dict:
    """``latxa train export`` of a trained run, on the cluster (the profile's export allocation)."""
    prof = _profile(cluster, study_profile)
    bridge = SlurmBridge(prof)
    run = ref_path(run_ref, cluster)
    name = PurePosixPath(run).name
    out = join_path(_base(bridge, prof, "models", "models", kfp_run_id), name)
    job = render_command(prof, ["latxa", "train", "export", "--run", run, "--out", out], name=f"export-{name}",
                         kind="export")
    st = run_job(bridge, job, key=f"{kfp_run_id}/{kfp_task}/{name}/export" if kfp_run_id else None,
                 timeout_s=timeout_s, poll_s=poll_s)
    info = _read_json(bridge, f"{out}/latxa_export.json", "exported model")
    return {"ref": make_ref(cluster, out), "job_id": st.job_id, "export": info}


def eval_step(*, model_ref: str, run_ref: str, variant_key: str, cluster: str, study_profile: str | None = None,
              suite: str = "eu-mini", limit: int = 0, tracking_uri: str = "", kfp_run_id: str = "",
              kfp_task: str = "", timeout_s: float | None = None, poll_s: float = 5.0) -> dict:
    """``latxa eval run`` of an exported model on the cluster, logged under the variant's MLflow run."""
    prof = _profile(cluster, study_profile)
    bridge = SlurmBridge(prof)
    model, run = ref_path(model_ref, cluster), ref_path(run_ref, cluster)
    device = "cuda" if prof.job_resources("eval").gpus_per_node else "cpu"
    argv = ["latxa", "eval", "run", "--model", model, "--suite", suite, "--out", f"{run}/eval", "--name",
            variant_key, "--variant", variant_key, "--device", device, "--format", "json"]
    if limit:
        argv += ["--limit", str(int(limit))]
    env = {"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else None
    st = run_job(bridge, render_command(prof, argv, name=f"eval-{PurePosixPath(run).name}", kind="eval", env=env),
                 key=f"{kfp_run_id}/{kfp_task}/{variant_key}/eval" if kfp_run_id else None, timeout_s=timeout_s,
                 poll_s=poll_s)
    return {"job_id": st.job_id, "results_ref": make_ref(cluster, f"{run}/eval/{variant_key}")}


def register_step(*, run_ref: str, model_ref: str, cluster: str, study_profile: str | None = None,
                  tracking_uri: str = "", kfp_run_id: str = "", kfp_task: str = "", timeout_s: float | None = None,
                  poll_s: float = 5.0) -> dict:
    """``latxa model register`` on the cluster; returns the registered model and version from the run file."""
    prof = _profile(cluster, study_profile)
    bridge = SlurmBridge(prof)
    run, model = ref_path(run_ref, cluster), ref_path(model_ref, cluster)
    argv = ["latxa", "model", "register", "--run", run, "--model", model]
    env = {"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else None
    st = run_job(bridge, render_command(prof, argv, name=f"register-{PurePosixPath(run).name}", kind="register",
                                        env=env),
                 key=f"{kfp_run_id}/{kfp_task}/{PurePosixPath(run).name}/register" if kfp_run_id else None,
                 timeout_s=timeout_s, poll_s=poll_s)
    info = _read_run_file(bridge, run)
    return {"job_id": st.job_id, "registered_model": info.get("registered_model"),
            "model_version": info.get("model_version"), "mlflow_run_id": info.get("mlflow_run_id")}


def _read_run_file(bridge: SlurmBridge, out: str) -> dict:
    """``out/run.json`` written by ``latxa train`` (the MLflow run id and the exported model folder)."""
    text = bridge.transport.read_text(f"{bridge.cluster_path(out).rstrip('/')}/run.json")
    if not text:
        raise SlurmError(f"The job completed but {out}/run.json is missing, so the trained model cannot be located.")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SlurmError(f"{out}/run.json is not valid JSON.") from None
