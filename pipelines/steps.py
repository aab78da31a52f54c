"""The KFP v2 components of the study: one set, used by the pipelines in ``study.py`` and by users' own pipelines.

- ``prepare_data``: data preparation for one variant (a packed ``Dataset`` + its ``Metrics``);
- ``train_variant``: Ray Train (FSDP2, DeepSpeed ZeRO or DDP, by profile) on this machine or pod (a ``Model`` + ``Metrics``);
- ``slurm_prepare_data``, ``slurm_train_model``, ``slurm_export_model``, ``slurm_evaluate_model``,
  ``slurm_register_model``: the chain as SLURM jobs on the cluster (Leonardo, or the local test cluster), passing
  ``slurm://`` references to the cluster's files between them (``latxa.slurm.kfp_bridge``);
- ``evaluate_model``: lm-eval on a ``Model`` artifact or a URL, optionally logged to MLflow as a nested run;
- ``register_model``, ``check_tracking``, ``start_sweep``, ``sweep_run_of``: MLflow bookkeeping;
- ``compare_variants``: the run's outputs in the KFP dashboard (comparison table, plot, eval means).

Optional inputs are ``Optional[...] = None``: a pipeline parameter left empty arrives unset, and the bodies read
None as "not set" (the profile's value, the shipped sample, every item).

Each body imports the project lazily and calls a plain function (``steps_impl`` or the layers' own entry
points), so the same component runs in the project's container image on a cluster and under
``kfp.local.SubprocessRunner(use_venv=False)`` here. ``install_kfp_package=False``: the image (and the local
venv) already has kfp; nothing is pip-installed at run time. The base image is :data:`IMAGE`
(``$LATXA_COMPONENT_IMAGE`` when this module is imported); the pipelines override it per task with their
``image`` parameter.
"""

import os
from typing import List, Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

# The components' container image (built from k8s/images/components.Dockerfile).
IMAGE = os.environ.get("LATXA_COMPONENT_IMAGE", "ghcr.io/latxa-mlops/components:0.1.0")

_component = dict(base_image=IMAGE, install_kfp_package=False)


@dsl.component(**_component)
def check_tracking(experiment: str, tracking_uri: Optional[str] = None) -> str:
    """Fail fast, before any work, when the MLflow tracking store is unreachable; create the study's experiment."""
    from latxa.pipelines import steps_impl

    return steps_impl.check_tracking(experiment, tracking_uri)


@dsl.component(**_component)
def prepare_data(
    variant: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    config: Optional[str] = None,
    tokenizer: Optional[Input[Model]] = None,
    tokenizer_path: Optional[str] = None,
    seq_len: Optional[int] = None,
    profile: str = "local",
    on_error: str = "fail",
    use_cache: bool = True,
) -> str:
    """Prepare the packed training data of `variant`; returns the cache key.

    ``config`` is a data-source YAML path, inline YAML text, or None for the shipped sample; the tokenizer is a
    ``Model`` artifact or ``tokenizer_path`` (a folder or an HF name in the offline cache; None = the tiny model);
    ``seq_len`` None = the profile's."""
    from latxa.pipelines import steps_impl

    tok = tokenizer.path if tokenizer is not None else tokenizer_path
    res = steps_impl.prepare(variant, dataset.path, config=config, tokenizer=tok, seq_len=seq_len, profile=profile,
                             on_error=on_error, use_cache=use_cache)
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    dataset.metadata.update(res["metadata"])
    return res["cache_key"]


@dsl.component(**_component)
def train_variant(
    dataset: Input[Dataset],
    variant: str,
    model: Output[Model],
    metrics: Output[Metrics],
    profile: str = "local",
    base_model: Optional[Input[Model]] = None,
    model_path: Optional[str] = None,
    max_steps: Optional[int] = None,
    tracking_uri: Optional[str] = None,
    experiment: Optional[str] = None,
    parent_run_id: Optional[str] = None,
    num_workers: Optional[int] = None,
) -> str:
    """Train `variant` on `dataset` with Ray Train, export it to `model`, log to MLflow; returns the MLflow run id.

    Training state (checkpoints, run.json) lives in ``<model artifact>.train/``, so a retried task resumes from its
    latest checkpoint."""
    from latxa.pipelines import steps_impl

    base = base_model.path if base_model is not None else model_path
    res = steps_impl.train_local(variant, dataset.path, model.path, profile=profile, base_model=base,
                                 max_steps=max_steps, tracking_uri=tracking_uri, experiment=experiment,
                                 parent_run_id=parent_run_id, num_workers=num_workers)
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    model.metadata.update(res["metadata"])
    return res["run_id"]


@dsl.component(**_component)
def start_sweep(variants: list, experiment: str, kfp_run_id: str, kfp_task: str, tracking_uri: Optional[str] = None) -> str:
    """Fail fast like check_tracking, then open the sweep's MLflow run (tag latxa.sweep; its variant runs carry latxa.sweep_run)."""
    from latxa.pipelines import steps_impl

    return steps_impl.start_sweep(variants, experiment, tracking_uri, kfp_run_id, kfp_task)


@dsl.component(**_component)
def sweep_run_of(experiment: str, kfp_run_id: str, tracking_uri: Optional[str] = None) -> str:
    """The id of this KFP run's sweep MLflow run (found by its kfp.run_id tag). Used inside the ParallelFor
    instead of passing start-sweep's output in: kfp.local replaces every task output that enters a loop with the
    loop item (kfp 2.17, task_spec_utils.create_parameter_loop_iteration_task_spec)."""
    from latxa.pipelines import steps_impl

    return steps_impl.sweep_run_of(experiment, tracking_uri, kfp_run_id)


@dsl.component(**_component)
def slurm_prepare_data(variant: str, dataset: Output[Dataset], metrics: Output[Metrics], cluster: str = "leonardo",
                       profile: str = "leonardo-8b", data_config: Optional[str] = None,
                       tokenizer: Optional[str] = None, kfp_run_id: str = "", kfp_task: str = "") -> str:
    """Data preparation as a one-node SLURM job on the cluster (`latxa study prepare`: mixture, held-out sets). The
    Dataset artifact is a reference to the cluster's copy (metadata ``slurm_ref``: slurm://CLUSTER/PATH); re-running
    the step re-attaches to its job. Returns the reference."""
    from latxa.pipelines import steps_impl

    res = steps_impl.slurm_prepare(variant, dataset.path, cluster=cluster, profile=profile, data_config=data_config,
                                   tokenizer=tokenizer, kfp_run_id=kfp_run_id, kfp_task=kfp_task)
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    dataset.metadata.update(res["metadata"])
    return res["ref"]


@dsl.component(**_component)
def slurm_train_model(variant: str, data: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
                      profile: str = "leonardo-8b", cluster: str = "leonardo", config_path: Optional[str] = None,
                      base_model: Optional[str] = None, max_steps: Optional[int] = None, experiment: str = "",
                      tracking_uri: Optional[str] = None, sweep_run_id: Optional[str] = None, kfp_run_id: str = "",
                      kfp_task: str = "", prepare_task: str = "") -> str:
    """Training through the SLURM bridge on the prepared set the data artifact refers to (slurm://): submit (or
    re-attach), wait while reporting status, fail the step with the log tail if the job fails for good (the job
    itself checkpoints and requeues before its time limit). The Model artifact refers to the run on the cluster
    (metadata: slurm_ref, checkpoint, MLflow run, SLURM job); export, evaluation and registration follow as their
    own SLURM steps. Returns the MLflow run id."""
    from latxa.pipelines import steps_impl

    ref = steps_impl.artifact_ref(data.path, dict(data.metadata))
    res = steps_impl.train_slurm(variant, ref or data.path, model.path, profile=profile, cluster=cluster,
                                 config_path=config_path, base_model=base_model, max_steps=max_steps,
                                 experiment=experiment, tracking_uri=tracking_uri, sweep_run_id=sweep_run_id,
                                 kfp_run_id=kfp_run_id, kfp_task=kfp_task, prepare_task=prepare_task,
                                 export=not ref)
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    model.metadata.update({"variant": variant, "variant_key": res["variant_key"], "mlflow_run_id": res["run_id"],
                           "slurm_job_id": res["job_id"], "slurm_ref": res["ref"] if ref else "",
                           "checkpoint": res["checkpoint"]})
    return res["run_id"]


@dsl.component(**_component)
def slurm_export_model(trained: Input[Model], exported: Output[Model], cluster: str = "leonardo",
                       profile: str = "leonardo-8b", kfp_run_id: str = "", kfp_task: str = "") -> str:
    """`latxa train export` of the run the trained artifact refers to, as a SLURM job on the cluster (the model stays
    there: the artifact refers to it). Returns the exported folder's slurm:// reference."""
    from latxa.pipelines import steps_impl

    run_ref = steps_impl.artifact_ref(trained.path, dict(trained.metadata))
    res = steps_impl.slurm_export(run_ref, exported.path, cluster=cluster, profile=profile, kfp_run_id=kfp_run_id,
                                  kfp_task=kfp_task)
    exported.metadata.update({**{k: v for k, v in trained.metadata.items() if k != "slurm_ref"},
                              "slurm_ref": res["ref"], "run_ref": run_ref, "slurm_export_job_id": res["job_id"],
                              "framework": "transformers"})
    return res["ref"]


@dsl.component(**_component)
def slurm_evaluate_model(model: Input[Model], metrics: Output[Metrics], results: Output[Artifact],
                         cluster: str = "leonardo", profile: str = "leonardo-8b", suite: str = "eu-mini",
                         limit: Optional[int] = None, tracking_uri: Optional[str] = None, kfp_run_id: str = "",
                         kfp_task: str = "") -> str:
    """lm-eval of the exported model as a SLURM job on the cluster, logged as a nested MLflow run of the variant's
    run; its scores come back as Metrics. Returns the results' slurm:// reference."""
    from latxa.pipelines import steps_impl

    md = dict(model.metadata)
    res = steps_impl.slurm_evaluate(steps_impl.artifact_ref(model.path, md), str(md.get("run_ref", "")),
                                    str(md.get("variant_key") or md.get("variant", "")), results.path,
                                    cluster=cluster, profile=profile, suite=suite, limit=limit,
                                    tracking_uri=tracking_uri, kfp_run_id=kfp_run_id, kfp_task=kfp_task,
                                    mlflow_run_id=str(md.get("mlflow_run_id", "")))
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    results.metadata.update(res["metadata"])
    return res["metadata"]["slurm_ref"]


@dsl.component(**_component)
def slurm_register_model(variant: str, model: Input[Model], results: Input[Artifact], cluster: str = "leonardo",
                         profile: str = "leonardo-8b", tracking_uri: Optional[str] = None, kfp_run_id: str = "",
                         kfp_task: str = "", prepare_task: str = "", train_task: str = "", export_task: str = "",
                         eval_task: str = "") -> str:
    """`latxa model register` as a SLURM job on the cluster (the model folder is there), then the KFP tasks tagged
    on the variant's run and its model version. Returns '<name>/<version>'."""
    from latxa.pipelines import steps_impl

    md = dict(model.metadata)
    tasks = {"prepare": prepare_task, "train": train_task, "export": export_task, "eval": eval_task,
             "register": kfp_task}
    return steps_impl.slurm_register(str(md.get("run_ref", "")), steps_impl.artifact_ref(model.path, md),
                                     variant=variant, cluster=cluster, profile=profile, tracking_uri=tracking_uri,
                                     kfp_run_id=kfp_run_id, kfp_task=kfp_task,
                                     mlflow_run_id=str(md.get("mlflow_run_id", "")), tasks=tasks,
                                     eval_run_id=str(results.metadata.get("mlflow_run_id", "")))


@dsl.component(**_component)
def evaluate_model(suite: str, metrics: Output[Metrics], results: Output[Artifact],
                   model: Optional[Input[Model]] = None, model_url: str = "", served_model: str = "",
                   variant: str = "", limit: Optional[int] = None, tasks: str = "", device: str = "cpu",
                   experiment: str = "", mlflow_run_id: str = "", tracking_uri: Optional[str] = None,
                   kfp_run_id: str = "", kfp_task: str = "") -> str:
    """lm-eval on a ``Model`` artifact or ``model_url`` (an OpenAI-compatible endpoint or a model folder), aggregated
    as in the paper. With ``variant`` or ``mlflow_run_id`` it is logged to MLflow as a nested run of the variant's
    run, tagged with the KFP task. ``tasks`` is a comma-separated subset of the suite. Returns the results JSON."""
    from latxa.pipelines import steps_impl

    res = steps_impl.evaluate(model.path if model is not None else "", model_url, suite, results.path,
                              served_model=served_model, variant=variant, limit=limit, tasks=tasks, device=device,
                              experiment=experiment, run_id=mlflow_run_id, tracking_uri=tracking_uri,
                              kfp_run_id=kfp_run_id, kfp_task=kfp_task,
                              name=str(model.metadata.get("variant", "")) if model is not None else "")
    for key, value in res["metrics"].items():
        metrics.log_metric(key, value)
    results.metadata.update(res["metadata"])
    return res["results_json"]


@dsl.component(**_component)
def register_model(variant: str, mlflow_run_id: str, kfp_run_id: str, kfp_task: str,
                   prepare_task: str, train_task: str, eval_task: str, pipeline: str, model: Input[Model],
                   train_metrics: Input[Metrics], scores: Input[Metrics], results: Input[Artifact],
                   tracking_uri: Optional[str] = None) -> str:
    """Put the evaluation's means on the variant run, make sure the model is registered as latxa-<code>,
    and tag run, evaluation run and model version with their KFP tasks. Returns '<name>/<version>'."""
    from latxa.pipelines import steps_impl

    values = {k: float(v) for art in (train_metrics, scores) for k, v in art.metadata.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tasks = {"prepare": prepare_task, "train": train_task, "eval": eval_task, "register": kfp_task}
    return steps_impl.register(variant, model.path, mlflow_run_id, tracking_uri=tracking_uri, kfp_run_id=kfp_run_id,
                               tasks=tasks, metrics=values, eval_run_id=str(results.metadata.get("mlflow_run_id", "")),
                               pipeline=pipeline)


@dsl.component(**_component)
def compare_variants(experiment: str, kfp_run_id: str, table: Output[Markdown], page: Output[HTML],
                     scores: Output[Metrics], tracking_uri: Optional[str] = None, sweep_run_id: Optional[str] = None,
                     registered: Optional[List[str]] = None) -> str:
    """The variants of this KFP run side by side, read back from MLflow (what `latxa compare` prints).

    Args:
        experiment: MLflow experiment of the study.
        kfp_run_id: This KFP run's id: only its variant runs are compared.
        table: The comparison table (Markdown), shown in the KFP run view.
        page: The table, the plot and the MLflow link (HTML), shown in the KFP run view.
        scores: Eval means per language and final loss of each variant, as <variant>.<metric>.
        tracking_uri: MLflow tracking URI; empty = MLFLOW_TRACKING_URI.
        sweep_run_id: The sweep's MLflow run, which keeps the table and the plot as artifacts (compare/).
        registered: The register steps' outputs: the step waits for them all and expects as many variants.

    Returns:
        The comparison table (Markdown)."""
    from latxa.pipelines import steps_impl

    res = steps_impl.compare_variants(experiment, kfp_run_id, tracking_uri=tracking_uri, sweep_run_id=sweep_run_id,
                                      expected=len(registered) if registered is not None else None)
    with open(table.path, "w", encoding="utf-8") as fh:
        fh.write(res["markdown"])
    with open(page.path, "w", encoding="utf-8") as fh:
        fh.write(res["html"])
    for key, value in res["metrics"].items():
        scores.log_metric(key, value)
    return res["markdown"]
