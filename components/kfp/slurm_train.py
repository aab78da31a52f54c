"""KFP v2 component: train one variant on a SLURM cluster through the bridge (``slurm.kfp_bridge.train_job``).

Submits the rendered Ray Train job (Leonardo over SSH, or the local test cluster), waits while printing every
state change, resubmits on TIMEOUT / PREEMPTED / NODE_FAIL (training resumes from its latest checkpoint), and
fails the KFP step with the log tail when the job fails. Outputs: ``model_path`` (the exported Hugging Face
folder on the cluster's file system), ``mlflow_run_id`` and ``job_id`` (the last attempt's SLURM job id).

Paths (``data``, ``out``, ``base_model``) are paths on the cluster. Runs in the project's component image or
under ``kfp.local.SubprocessRunner(use_venv=False)`` with the project installed.
"""

import os
from typing import NamedTuple

from kfp import dsl

COMPONENT_IMAGE = os.environ.get("LATXA_COMPONENT_IMAGE", "ghcr.io/latxa-mlops/components:0.1.0")


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def slurm_train(
    variant: str,
    out: str,
    cluster: str = "local",
    study_profile: str = "",
    data: str = "",
    base_model: str = "",
    config: str = "",
    tracking_uri: str = "",
    max_steps: int = 0,
    mlflow_run_id: str = "",
    max_resubmits: int = -1,
    timeout_s: float = 0.0,
    poll_s: float = 5.0,
) -> NamedTuple("SlurmTrainOutputs", [("model_path", str), ("mlflow_run_id", str), ("job_id", str)]):
    """Train `variant` on SLURM cluster profile `cluster`; fail the step unless the job ends COMPLETED."""
    from collections import namedtuple

    from slurm.kfp_bridge import train_job

    env = {"MLFLOW_RUN_ID": mlflow_run_id} if mlflow_run_id else {}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    res = train_job(variant=variant, profile=cluster, study_profile=study_profile or None, data=data or None,
                    out=out, model=base_model or None, config=config or None, tracking_uri=tracking_uri or None,
                    max_steps=max_steps or None, env=env, timeout_s=timeout_s or None,
                    max_resubmits=None if max_resubmits < 0 else max_resubmits, poll_s=poll_s)
    print(f"slurm_train {variant}: {res['state']} as job {res['job_id']} (earlier attempts: {res['attempts'] or 'none'}); "
          f"model at {res['model']}, MLflow run {res['mlflow_run_id'] or '-'}")
    outputs = namedtuple("SlurmTrainOutputs", ["model_path", "mlflow_run_id", "job_id"])
    return outputs(res["model"], res["mlflow_run_id"], res["job_id"])
