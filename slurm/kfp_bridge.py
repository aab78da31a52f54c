"""What Kubeflow steps call: submit a training job through the bridge, wait while reporting, return the results.

``train_job`` is the one implementation behind both KFP wrappers: the standalone ``slurm_train`` component
(components/kfp/slurm_train.py) and the study pipelines' ``slurm-train-model`` step
(``latxa.pipelines.steps_impl.train_slurm``). It returns the job id, state, model folder, MLflow run id, resubmissions
and ``latxa train``'s run file, and raises :class:`~latxa.slurm.errors.JobFailedError` (the step fails) when the job
does not complete, after printing the log tail.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Mapping

from latxa.slurm.bridge import JobStatus, SlurmBridge
from latxa.slurm.errors import JobFailedError, SlurmError
from latxa.slurm.profiles import load_profile
from latxa.slurm.render import render_train


def _report(t0: float):
    def show(st: JobStatus) -> None:
        print(f"[slurm] {time.monotonic() - t0:7.1f}s job {st.job_id}: {st.state}", flush=True)
    return show


def train_job(*, variant: str, profile: str = "local", study_profile: str | None = None, data: str | None = None,
              out: str, model: str | None = None, config: str | None = None, tracking_uri: str | None = None,
              max_steps: int | None = None, env: Mapping[str, str] | None = None, timeout_s: float | None = None,
              max_resubmits: int | None = None, poll_s: float = 5.0, max_poll_s: float = 60.0,
              train_args: list[str] | None = None) -> dict:
    """Submit one variant's Ray Train job, wait (resubmitting on TIMEOUT/PREEMPTED/NODE_FAIL), return its results.

    ``train_args`` are extra arguments for ``latxa train`` (e.g. ``--experiment=NAME``)."""
    prof = load_profile(profile).for_study(study_profile or None, config or None)
    train_args = list(train_args or [])
    if tracking_uri:
        train_args += ["--tracking-uri", tracking_uri]
    if max_steps:
        train_args += ["--max-steps", str(int(max_steps))]
    job = render_train(prof, [variant], out=out, data=data or None, model=model or None, train_args=train_args,
                       env=dict(env or {}), config_staged=bool(config), check_study=not study_profile)
    bridge = SlurmBridge(prof)
    job_id = bridge.submit(job, stage={"study.yaml": config} if config else None)
    print(f"[slurm] submitted {job.name} as job {job_id} on {bridge.transport.describe()} (log {job.log_for(job_id)})",
          flush=True)
    try:
        st = bridge.wait(job_id, timeout=timeout_s, poll=poll_s, max_poll=max_poll_s, resubmit=max_resubmits,
                         on_update=_report(time.monotonic()))
    except JobFailedError as err:
        if err.log_tail:
            print(f"[slurm] last lines of the log:\n{err.log_tail}", file=sys.stderr, flush=True)
        raise
    run = _read_run_file(bridge, out)
    model_dir = run.get("model") or f"{out}/model"
    rec = bridge.record(st.job_id)
    return {"job_id": st.job_id, "state": st.state, "attempts": st.attempts, "model": model_dir,
            "mlflow_run_id": run.get("mlflow_run_id") or (env or {}).get("MLFLOW_RUN_ID", ""),
            "log": rec.log_for(st.job_id) if rec else None, "run": run}


def _read_run_file(bridge: SlurmBridge, out: str) -> dict:
    """``out/run.json`` written by ``latxa train`` (the MLflow run id and the exported model folder)."""
    text = bridge.transport.read_text(f"{out.rstrip('/')}/run.json")
    if not text:
        raise SlurmError(f"The job completed but {out}/run.json is missing, so the trained model cannot be located.")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SlurmError(f"{out}/run.json is not valid JSON.") from None
