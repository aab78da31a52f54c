"""KFP v2 lightweight components of the study pipeline.

Each body imports the project lazily and calls `pipelines.steps_impl`, so the same component runs
in the project's container image on a cluster and in kfp.local's SubprocessRunner(use_venv=False)
here. ``install_kfp_package=False``: the image (and the local venv) already has kfp, and nothing is
pip-installed at run time. The image is a pipeline parameter (`image`), set per task.
"""


from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

# Default container image for the components (built from k8s/images/; override at compile/submit time).
DEFAULT_IMAGE = "ghcr.io/latxa-mlops/latxa-python:0.1.0"

_component = dict(base_image=DEFAULT_IMAGE, install_kfp_package=False)


@dsl.component(**_component)
def start_run(variant: str, profile: str, config_path: str, experiment: str, tracking_uri: str,
              kfp_run_id: str, kfp_task: str, pipeline: str, sweep_run_id: str) -> str:
    """Create the variant's MLflow run (fails fast when the tracking store is unreachable)."""
    from pipelines import steps_impl

    return steps_impl.start_run(variant, profile, config_path, experiment, tracking_uri, kfp_run_id, kfp_task,
                                pipeline, sweep_run_id)


@dsl.component(**_component)
def train_model(variant: str, profile: str, config_path: str, base_model: str, max_steps: int,
                mlflow_run_id: str, tracking_uri: str, kfp_run_id: str, kfp_task: str, data_hash: str, prepare_task: str,
                data: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    """Fine-tune on local Ray Train (`latxa train`), logging into the variant's MLflow run; export an HF folder."""
    from pathlib import Path

    from pipelines import steps_impl

    steps_impl.tag_step(mlflow_run_id, tracking_uri, "prepare", kfp_run_id, prepare_task, {"data_hash": data_hash})
    steps_impl.tag_step(mlflow_run_id, tracking_uri, "train", kfp_run_id, kfp_task)
    cfg = steps_impl.study_config_file(config_path, profile, max_steps, Path(model.path).parent / "config")
    steps_impl.train_local(variant, profile, cfg, base_model, data.path, model.path, mlflow_run_id, tracking_uri)
    for key, value in steps_impl.train_summary(mlflow_run_id, tracking_uri).items():
        metrics.log_metric(key, value)
    model.metadata["variant"] = variant
    model.metadata["mlflow_run_id"] = mlflow_run_id


@dsl.component(**_component)
def slurm_train_model(variant: str, profile: str, config_path: str, base_model: str, max_steps: int,
                      cluster: str, mlflow_run_id: str, tracking_uri: str, kfp_run_id: str, kfp_task: str,
                      data_hash: str, prepare_task: str,
                      data: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    """Train through the SLURM bridge (submit, wait with status, fail on a failed job)."""
    from pathlib import Path

    from pipelines import steps_impl

    steps_impl.tag_step(mlflow_run_id, tracking_uri, "prepare", kfp_run_id, prepare_task, {"data_hash": data_hash})
    steps_impl.tag_step(mlflow_run_id, tracking_uri, "train", kfp_run_id, kfp_task, {"latxa.slurm_cluster": cluster})
    cfg = steps_impl.study_config_file(config_path, profile, max_steps, Path(model.path).parent / "config")
    job = steps_impl.train_slurm(variant, profile, cfg, base_model, data.path, model.path, cluster,
                                 mlflow_run_id, tracking_uri)
    steps_impl.tag_step(mlflow_run_id, tracking_uri, "train", kfp_run_id, kfp_task, {"slurm.job_id": job})
    for key, value in steps_impl.train_summary(mlflow_run_id, tracking_uri).items():
        metrics.log_metric(key, value)
    model.metadata["variant"] = variant
    model.metadata["slurm_job_id"] = job


@dsl.component(**_component)
def evaluate_model(variant: str, suite: str, limit: float, experiment: str, mlflow_run_id: str, tracking_uri: str,
                   kfp_run_id: str, kfp_task: str, model: Input[Model], results: Output[Artifact], scores: Output[Metrics]):
    """lm-eval on the exported model (`latxa eval run`); per-task scores and language means, logged as a nested run."""
    from pipelines import steps_impl

    steps_impl.tag_step(mlflow_run_id, tracking_uri, "eval", kfp_run_id, kfp_task)
    for key, value in steps_impl.evaluate(model.path, suite, limit, results.path, variant, mlflow_run_id, tracking_uri,
                                          experiment, kfp_run_id, kfp_task).items():
        scores.log_metric(key, value)


@dsl.component(**_component)
def register_model(variant: str, mlflow_run_id: str, tracking_uri: str, kfp_run_id: str, kfp_task: str,
                   model: Input[Model], train_metrics: Input[Metrics], scores: Input[Metrics]) -> str:
    """Log the summary metrics to the variant run, register the model as latxa-<code>, tag it with the KFP task."""
    import json
    from pathlib import Path

    from pipelines import steps_impl

    values = {}
    for art in (train_metrics, scores):
        values.update({k: float(v) for k, v in art.metadata.items() if isinstance(v, (int, float))})
        path = Path(art.path)
        if path.is_file() and not values:
            values.update(json.loads(path.read_text() or "{}"))
    return steps_impl.register(variant, model.path, mlflow_run_id, tracking_uri, kfp_run_id, kfp_task, values)


@dsl.component(**_component)
def start_sweep(variants: list, experiment: str, tracking_uri: str, kfp_run_id: str, kfp_task: str) -> str:
    """The sweep's parent MLflow run (tag latxa.sweep); variant runs nest under it."""
    from pipelines import steps_impl

    return steps_impl.start_sweep(variants, experiment, tracking_uri, kfp_run_id, kfp_task)
