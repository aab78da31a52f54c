"""KFP v2 component: train + export one variant (wraps ``components.train.runner.train``).

Inputs: ``dataset`` (the packed dataset folder from the data-preparation component), ``variant``, ``profile``,
and the base model either as an ``Input[Model]`` artifact (``base_model``) or as ``model_path`` (a folder; ""
= the tiny offline model on CPU profiles). Outputs: ``model`` (the exported Hugging Face folder), ``metrics``
(final loss, tokens seen, throughput) and, as the component's return value, the MLflow run id.

Training state (checkpoints, run.json) lives in ``<model artifact>.train/`` next to the output, so a retried
task resumes from its latest checkpoint. The base image is :data:`COMPONENT_IMAGE` (``LATXA_COMPONENT_IMAGE``);
``install_kfp_package=False`` because the image already has kfp. Runs under
``kfp.local.SubprocessRunner(use_venv=False)`` with the project installed in the current environment.
"""

import os
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

COMPONENT_IMAGE = os.environ.get("LATXA_COMPONENT_IMAGE", "ghcr.io/latxa-mlops/components:0.1.0")


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_variant(
    dataset: Input[Dataset],
    variant: str,
    model: Output[Model],
    metrics: Output[Metrics],
    profile: str = "local",
    base_model: Optional[Input[Model]] = None,
    model_path: str = "",
    max_steps: int = 0,
    tracking_uri: str = "",
    experiment: str = "",
    parent_run_id: str = "",
    num_workers: int = 0,
) -> str:
    """Train `variant` on `dataset`, export it to `model`, log to MLflow; returns the MLflow run id."""
    import shutil
    from pathlib import Path

    from components.train.plan import TrainJob
    from components.train.runner import train

    base = base_model.path if base_model is not None else (model_path or None)
    work = Path(model.path + ".train")
    job = TrainJob(variant=variant, data_dir=Path(dataset.path), out_dir=work, model_dir=Path(base) if base else None,
                   profile=profile or None, resume=True, tracking_uri=tracking_uri or None,
                   experiment=experiment or None, parent_run_id=parent_run_id or None, max_steps=max_steps or None,
                   num_workers=num_workers or None)
    res = train(job, progress=True)
    dst = Path(model.path)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(res.model_dir, dst)
    for key, value in res.metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            metrics.log_metric(key, float(value))
    model.metadata.update({"variant": variant, "mlflow_run_id": res.mlflow_run_id or "",
                           "registered_model": res.registered_model or "", "model_version": res.model_version or "",
                           "framework": "transformers"})
    print(f"trained {variant}: model at {dst}, MLflow run {res.mlflow_run_id}")
    return res.mlflow_run_id or ""
