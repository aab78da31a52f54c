"""KFP v2 lightweight components of the study pipeline that belong to the pipelines layer.

Data preparation and training are the data and training layers' own components
(``components/kfp/data_prep.py``, ``components/kfp/train.py``); evaluation calls the evaluation layer's
functions (``evaluate_model`` below, because ``components/kfp/eval.py`` cannot be told the experiment); the
SLURM pipelines train through the SLURM bridge with ``slurm_train_model`` below. Each body imports the project lazily and calls
``pipelines.steps_impl``, so the same component runs in the project's container image on a cluster and
in kfp.local's SubprocessRunner(use_venv=False) here. ``install_kfp_package=False``: the image (and the
local venv) already has kfp; nothing is pip-installed at run time. The image is the pipeline parameter
``image``, set on every task with ``set_container_image``.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

# Default container image of the components (built from k8s/images/; override with --image).
DEFAULT_IMAGE = "ghcr.io/latxa-mlops/components:0.1.0"

_component = dict(base_image=DEFAULT_IMAGE, install_kfp_package=False)


@dsl.component(**_component)
def check_tracking(experiment: str, tracking_uri: str) -> str:
    """Fail fast, before any work, when the MLflow tracking store is unreachable; create the study's experiment."""
    from pipelines import steps_impl

    return steps_impl.check_tracking(experiment, tracking_uri)


@dsl.component(**_component)
def start_sweep(variants: list, experiment: str, tracking_uri: str, kfp_run_id: str, kfp_task: str) -> str:
    """Fail fast like check_tracking, then open the sweep's parent MLflow run (tag latxa.sweep)."""
    from pipelines import steps_impl

    return steps_impl.start_sweep(variants, experiment, tracking_uri, kfp_run_id, kfp_task)


@dsl.component(**_component)
def sweep_run_of(experiment: str, tracking_uri: str, kfp_run_id: str) -> str:
    """The id of this KFP run's sweep parent MLflow run (found by its kfp.run_id tag). Used inside the ParallelFor
    instead of passing start-sweep's output in: kfp.local replaces every task output that enters a loop with the
    loop item (kfp 2.17, task_spec_utils.create_parameter_loop_iteration_task_spec)."""
    from pipelines import steps_impl

    return steps_impl.sweep_run_of(experiment, tracking_uri, kfp_run_id)


@dsl.component(**_component)
def slurm_train_model(variant: str, profile: str, cluster: str, config_path: str, base_model: str, max_steps: int,
                      experiment: str, tracking_uri: str, sweep_run_id: str, kfp_run_id: str, kfp_task: str,
                      prepare_task: str, data: Input[Dataset], model: Output[Model], metrics: Output[Metrics]) -> str:
    """Training through the SLURM bridge: submit, wait while reporting status, fail the step if the job fails."""
    from pipelines import steps_impl

    res = steps_impl.train_slurm(variant, profile, cluster, config_path, base_model, max_steps, experiment,
                                 tracking_uri, sweep_run_id, kfp_run_id, kfp_task, prepare_task, data.path, model.path)
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    model.metadata.update({"variant": variant, "mlflow_run_id": res["run_id"], "slurm_job_id": res["job_id"]})
    return res["run_id"]


@dsl.component(**_component)
def evaluate_model(variant: str, suite: str, limit: int, experiment: str, mlflow_run_id: str, tracking_uri: str,
                   kfp_run_id: str, kfp_task: str, model: Input[Model], metrics: Output[Metrics],
                   results: Output[Artifact]) -> str:
    """lm-eval through the evaluation layer (`run_eval`, `aggregate`, `log_evaluation`), logged as a nested run of
    the variant's run in the pipeline's experiment, tagged with this KFP task. Same body
    (`components.eval.mlflow_log.evaluate_and_log`) and outputs as components/kfp/eval.py's `evaluate`; this
    wrapper adds the KFP provenance tags and always logs."""
    from pipelines import steps_impl

    values, eval_run_id, results_json = steps_impl.evaluate(model.path, suite, limit, results.path, variant,
                                                            mlflow_run_id, tracking_uri, experiment, kfp_run_id,
                                                            kfp_task)
    for key, value in values.items():
        metrics.log_metric(key, value)
    results.metadata.update({"suite": suite, "model": variant, "mlflow_run_id": eval_run_id,
                             "results_json": results_json, "limit": limit})
    return results_json


@dsl.component(**_component)
def register_model(variant: str, mlflow_run_id: str, tracking_uri: str, kfp_run_id: str, kfp_task: str,
                   prepare_task: str, train_task: str, eval_task: str, pipeline: str, model: Input[Model],
                   train_metrics: Input[Metrics], scores: Input[Metrics], results: Input[Artifact]) -> str:
    """Put the evaluation's means on the variant run, make sure the model is registered as latxa-<code>,
    and tag run, evaluation run and model version with their KFP tasks. Returns '<name>/<version>'."""
    from pipelines import steps_impl

    values = {k: float(v) for art in (train_metrics, scores) for k, v in art.metadata.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tasks = {"prepare": prepare_task, "train": train_task, "eval": eval_task, "register": kfp_task}
    return steps_impl.register(variant, model.path, mlflow_run_id, tracking_uri, kfp_run_id, tasks, values,
                               eval_run_id=str(results.metadata.get("mlflow_run_id", "")), pipeline=pipeline)
