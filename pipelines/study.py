"""The study's KFP v2 pipelines.

- ``study_pipeline``: one variant: start MLflow run -> prepare data -> train (local Ray Train) -> evaluate
  -> register. ``study_pipeline_slurm``: the same with training through the SLURM bridge.
- ``sweep_pipeline`` / ``sweep_pipeline_slurm``: the same over many variants with ``dsl.ParallelFor``,
  under a parent MLflow run (the whole 8B grid is ``--variants trained``).

Every step receives the KFP run id and its own task name (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``,
``dsl.PIPELINE_TASK_NAME_PLACEHOLDER``) and writes them to the variant's MLflow run as tags.
"""


from kfp import dsl

from components.tracking import DEFAULT_EXPERIMENT
from components.kfp import data_prep
from pipelines import steps

RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
TASK = dsl.PIPELINE_TASK_NAME_PLACEHOLDER


def _variant_dag(variant, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite, eval_limit,
                 experiment, tracking_uri, image, cluster, pipeline: str, sweep_run_id, parallelism_cpus: str | None):
    """The per-variant chain; returns the register task."""
    start = steps.start_run(variant=variant, profile=profile, config_path=config_path, experiment=experiment,
                            tracking_uri=tracking_uri, kfp_run_id=RUN_ID, kfp_task=TASK, pipeline=pipeline,
                            sweep_run_id=sweep_run_id).set_display_name("mlflow-run")
    run_id = start.output
    # Data preparation is the data layer's component (components/kfp/data_prep.py); it knows nothing of MLflow,
    # so the training step records its cache key and task name on the variant run.
    prep = data_prep.prepare_data(variant=variant, config=data_config, tokenizer_path=tokenizer, seq_len=seq_len,
                                  profile=profile).set_display_name("prepare-data").after(start)
    common = dict(variant=variant, profile=profile, config_path=config_path, base_model=base_model, max_steps=max_steps,
                  mlflow_run_id=run_id, tracking_uri=tracking_uri, kfp_run_id=RUN_ID, kfp_task=TASK,
                  data=prep.outputs["dataset"], data_hash=prep.outputs["Output"], prepare_task=prep.name)
    if cluster is None:
        train = steps.train_model(**common).set_display_name("train")
    else:
        train = steps.slurm_train_model(cluster=cluster, **common).set_display_name("slurm-train")
    ev = steps.evaluate_model(variant=variant, experiment=experiment, suite=eval_suite, limit=eval_limit, mlflow_run_id=run_id, tracking_uri=tracking_uri,
                              kfp_run_id=RUN_ID, kfp_task=TASK, model=train.outputs["model"]).set_display_name("evaluate")
    reg = steps.register_model(variant=variant, mlflow_run_id=run_id, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                               kfp_task=TASK, model=train.outputs["model"], train_metrics=train.outputs["metrics"],
                               scores=ev.outputs["scores"]).set_display_name("register")
    for task in (start, prep, train, ev, reg):
        task.set_container_image(image)
        task.set_caching_options(False)  # runs create MLflow state; never reuse a cached result silently
    if parallelism_cpus:
        train.set_cpu_request(parallelism_cpus)
    return reg


@dsl.pipeline(name="latxa-study", description="One Latxa-Instruct variant: prepare -> train (Ray) -> eval -> register.")
def study_pipeline(variant: str = "exp_2_101", profile: str = "local", config_path: str = "", data_config: str = "", base_model: str = "",
                   tokenizer: str = "", seq_len: int = 0, max_steps: int = 0, eval_suite: str = "eu-mini",
                   eval_limit: float = 0, experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "",
                   image: str = steps.DEFAULT_IMAGE) -> str:
    reg = _variant_dag(variant, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite, eval_limit,
                       experiment, tracking_uri, image, None, "study", "", None)
    return reg.output


@dsl.pipeline(name="latxa-study-slurm", description="One variant, trained on a SLURM cluster through the bridge.")
def study_pipeline_slurm(variant: str = "exp_2_101", profile: str = "leonardo-8b", cluster: str = "leonardo",
                         config_path: str = "", data_config: str = "", base_model: str = "", tokenizer: str = "", seq_len: int = 0,
                         max_steps: int = 0, eval_suite: str = "eu-mini", eval_limit: float = 0,
                         experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "",
                         image: str = steps.DEFAULT_IMAGE) -> str:
    reg = _variant_dag(variant, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite, eval_limit,
                       experiment, tracking_uri, image, cluster, "study", "", None)
    return reg.output


def _sweep(variants, parallelism, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite,
           eval_limit, experiment, tracking_uri, image, cluster):
    parent = steps.start_sweep(variants=variants, experiment=experiment, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                               kfp_task=TASK).set_display_name("mlflow-sweep-run")
    parent.set_container_image(image)
    parent.set_caching_options(False)
    with dsl.ParallelFor(variants, parallelism=parallelism, name="variants") as variant:
        _variant_dag(variant, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite, eval_limit,
                     experiment, tracking_uri, image, cluster, "sweep", parent.output, None)


# ParallelFor's parallelism is fixed at compile time; 1 keeps 2-core machines sane, the cluster YAML uses 17.
LOCAL_PARALLELISM = 1
CLUSTER_PARALLELISM = 17


@dsl.pipeline(name="latxa-sweep", description="Many variants (ParallelFor) under one parent MLflow run; local Ray training.")
def sweep_pipeline(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "local", config_path: str = "", data_config: str = "",
                   base_model: str = "", tokenizer: str = "", seq_len: int = 0, max_steps: int = 0,
                   eval_suite: str = "eu-mini", eval_limit: float = 0, experiment: str = DEFAULT_EXPERIMENT,
                   tracking_uri: str = "", image: str = steps.DEFAULT_IMAGE):
    _sweep(variants, LOCAL_PARALLELISM, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite,
           eval_limit, experiment, tracking_uri, image, None)


@dsl.pipeline(name="latxa-sweep-slurm", description="The 8B grid (ParallelFor) trained on SLURM through the bridge.")
def sweep_pipeline_slurm(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "leonardo-8b",
                         cluster: str = "leonardo", config_path: str = "", data_config: str = "", base_model: str = "", tokenizer: str = "",
                         seq_len: int = 0, max_steps: int = 0, eval_suite: str = "eu-mini", eval_limit: float = 0,
                         experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "", image: str = steps.DEFAULT_IMAGE):
    _sweep(variants, CLUSTER_PARALLELISM, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps, eval_suite,
           eval_limit, experiment, tracking_uri, image, cluster)


PIPELINES = {
    "study": study_pipeline,
    "study-slurm": study_pipeline_slurm,
    "sweep": sweep_pipeline,
    "sweep-slurm": sweep_pipeline_slurm,
}
