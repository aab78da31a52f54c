"""The study's KFP v2 pipelines.

- ``study_pipeline``: one variant: check MLflow (fail fast) -> prepare data -> train (local Ray Train)
  -> evaluate -> register. ``study_pipeline_slurm``: the same with training through the SLURM bridge.
- ``sweep_pipeline`` / ``sweep_pipeline_slurm``: the same over many variants with ``dsl.ParallelFor``,
  under a parent MLflow run (the whole 8B grid is ``--variants trained``).

Steps pass KFP artifacts: ``Dataset`` (packed data) -> ``Model`` (exported HF folder) -> ``Metrics``
(training summary, evaluation scores) and the evaluation's results ``Artifact``. Every step that touches
MLflow receives the KFP run id and its task name (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``,
``dsl.PIPELINE_TASK_NAME_PLACEHOLDER``) and records them as tags (``kfp.run_id``, ``kfp.task``,
``kfp.task.<step>``) on the variant's run, its evaluation run and its registered model version.
"""

from kfp import dsl, kubernetes

from latxa.components.tracking import DEFAULT_EXPERIMENT
from latxa.pipelines import steps

RUN_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
TASK = dsl.PIPELINE_TASK_NAME_PLACEHOLDER

# Kubernetes wiring of the steps' pods (k8s/base/kfp/: the same names). The SLURM bridge reads the SSH key and
# known_hosts from ~/.ssh, and the components image sets HOME=/tmp. kfp.local ignores these settings.
SSH_SECRET = "latxa-slurm-ssh"
SSH_MOUNT = "/tmp/.ssh"
CONFIG_MAP = "latxa-pipeline-config"
CONFIG_ENV = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE": "HF_HUB_OFFLINE"}


def _on_cluster(task, ssh: bool = False):
    """Image-independent pod settings: the pipeline config map as environment (optional, so a cluster without
    it still runs with the pipeline's parameters) and, for SLURM submission, the SSH Secret as a volume."""
    kubernetes.use_config_map_as_env(task, config_map_name=CONFIG_MAP, config_map_key_to_env=CONFIG_ENV, optional=True)
    if ssh:
        kubernetes.use_secret_as_volume(task, secret_name=SSH_SECRET, mount_path=SSH_MOUNT)
    return task


def _slurm_dag(variant, *, profile, config_path, data_config, base_model, tokenizer, max_steps, eval_suite,
               eval_limit, experiment, tracking_uri, image, cluster, first, sweep_run_id):
    """The per-variant chain as SLURM jobs on ``cluster``: prepare -> train -> export -> evaluate -> register, each a
    job on the cluster, passing slurm:// references (the data and the model stay on the cluster's filesystem)."""
    prep = steps.slurm_prepare_data(variant=variant, cluster=cluster, profile=profile, data_config=data_config,
                                    tokenizer=tokenizer, kfp_run_id=RUN_ID,
                                    kfp_task=TASK).set_display_name("slurm-prepare").after(first)
    train = steps.slurm_train_model(variant=variant, profile=profile, cluster=cluster, config_path=config_path,
                                    base_model=base_model, max_steps=max_steps, experiment=experiment,
                                    tracking_uri=tracking_uri, sweep_run_id=sweep_run_id, kfp_run_id=RUN_ID,
                                    kfp_task=TASK, prepare_task=prep.name,
                                    data=prep.outputs["dataset"]).set_display_name("slurm-train")
    export = steps.slurm_export_model(trained=train.outputs["model"], cluster=cluster, profile=profile,
                                      kfp_run_id=RUN_ID, kfp_task=TASK).set_display_name("slurm-export")
    ev = steps.slurm_evaluate_model(model=export.outputs["exported"], cluster=cluster, profile=profile,
                                    suite=eval_suite, limit=eval_limit, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                                    kfp_task=TASK).set_display_name("slurm-evaluate")
    reg = steps.slurm_register_model(variant=variant, model=export.outputs["exported"], results=ev.outputs["results"],
                                     cluster=cluster, profile=profile, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                                     kfp_task=TASK, prepare_task=prep.name, train_task=train.name,
                                     export_task=export.name, eval_task=ev.name).set_display_name("slurm-register")
    for task in (prep, train, export, ev, reg):
        task.set_container_image(image)
        task.set_caching_options(False)
        _on_cluster(task, ssh=True)
    return reg


def _variant_dag(variant, *, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps,
                 eval_suite, eval_limit, experiment, tracking_uri, image, cluster, first, sweep_run_id):
    """The per-variant chain after ``first`` (the tracking check); returns the register task."""
    if cluster is not None:
        return _slurm_dag(variant, profile=profile, config_path=config_path, data_config=data_config,
                          base_model=base_model, tokenizer=tokenizer, max_steps=max_steps, eval_suite=eval_suite,
                          eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image,
                          cluster=cluster, first=first, sweep_run_id=sweep_run_id)
    prep = steps.prepare_data(variant=variant, config=data_config, tokenizer_path=tokenizer, seq_len=seq_len,
                              profile=profile).set_display_name("prepare-data").after(first)
    # Ray Train on this machine or pod.
    train = steps.train_variant(dataset=prep.outputs["dataset"], variant=variant, profile=profile,
                                model_path=base_model, max_steps=max_steps, tracking_uri=tracking_uri,
                                experiment=experiment, parent_run_id=sweep_run_id).set_display_name("train")
    run_id = train.outputs["Output"]
    # Evaluation: the evaluation layer's runner, aggregation and MLflow logging (a nested run of the variant's run).
    ev = steps.evaluate_model(variant=variant, suite=eval_suite, limit=eval_limit, experiment=experiment,
                              mlflow_run_id=run_id, tracking_uri=tracking_uri, kfp_run_id=RUN_ID, kfp_task=TASK,
                              model=train.outputs["model"]).set_display_name("evaluate")
    reg = steps.register_model(variant=variant, mlflow_run_id=run_id, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                               kfp_task=TASK, prepare_task=prep.name, train_task=train.name, eval_task=ev.name,
                               pipeline="study" if isinstance(sweep_run_id, str) else "sweep",
                               model=train.outputs["model"],
                               train_metrics=train.outputs["metrics"], scores=ev.outputs["metrics"],
                               results=ev.outputs["results"]).set_display_name("register")
    for task in (prep, train, ev, reg):
        task.set_container_image(image)
        task.set_caching_options(False)  # steps write MLflow state: never reuse a cached result silently
        _on_cluster(task)
    return reg


def _check(experiment, tracking_uri, image):
    check = steps.check_tracking(experiment=experiment, tracking_uri=tracking_uri).set_display_name("check-mlflow")
    check.set_container_image(image)
    check.set_caching_options(False)
    return _on_cluster(check)


@dsl.pipeline(name="latxa-study", description="One Latxa-Instruct variant: prepare -> train (Ray) -> eval -> register.")
def study_pipeline(variant: str = "exp_2_101", profile: str = "local", data_config: str = "",
                   base_model: str = "", tokenizer: str = "", seq_len: int = 0, max_steps: int = 0,
                   eval_suite: str = "eu-mini", eval_limit: int = 0, experiment: str = DEFAULT_EXPERIMENT,
                   tracking_uri: str = "", image: str = steps.IMAGE) -> str:
    check = _check(experiment, tracking_uri, image)
    reg = _variant_dag(variant, profile=profile, config_path="", data_config=data_config, base_model=base_model,
                       tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
                       eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image,
                       cluster=None, first=check, sweep_run_id="")
    return reg.output


@dsl.pipeline(name="latxa-study-slurm", description="One variant, trained on a SLURM cluster through the bridge.")
def study_pipeline_slurm(variant: str = "exp_2_101", profile: str = "leonardo-8b", cluster: str = "leonardo",
                         config_path: str = "", data_config: str = "", base_model: str = "", tokenizer: str = "",
                         seq_len: int = 0, max_steps: int = 0, eval_suite: str = "eu-mini", eval_limit: int = 0,
                         experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "",
                         image: str = steps.IMAGE) -> str:
    check = _check(experiment, tracking_uri, image)
    reg = _variant_dag(variant, profile=profile, config_path=config_path, data_config=data_config,
                       base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps,
                       eval_suite=eval_suite, eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri,
                       image=image, cluster=cluster, first=check, sweep_run_id="")
    return reg.output


# ParallelFor's parallelism is fixed at compile time: 1 keeps a 2-core machine sane (each variant's training
# already uses both cores); the cluster pipelines run the whole 17-variant grid at once.
LOCAL_PARALLELISM = 1
CLUSTER_PARALLELISM = 17


def _sweep(variants, parallelism, *, experiment, tracking_uri, image, **variant_options):
    """``variant_options``: the keyword arguments of :func:`_variant_dag` other than the chain's start."""
    parent = steps.start_sweep(variants=variants, experiment=experiment, tracking_uri=tracking_uri, kfp_run_id=RUN_ID,
                               kfp_task=TASK).set_display_name("mlflow-sweep-run")
    parent.set_container_image(image)
    parent.set_caching_options(False)
    _on_cluster(parent)
    with dsl.ParallelFor(variants, parallelism=parallelism, name="variants") as variant:
        # The parent run id is looked up inside the loop rather than passed in as parent.output: kfp.local
        # (2.17) replaces a task output entering a loop with the loop item.
        lookup = steps.sweep_run_of(experiment=experiment, tracking_uri=tracking_uri,
                                    kfp_run_id=RUN_ID).set_display_name("sweep-run").after(parent)
        lookup.set_container_image(image)
        lookup.set_caching_options(False)
        _on_cluster(lookup)
        _variant_dag(variant, experiment=experiment, tracking_uri=tracking_uri, image=image, first=lookup,
                     sweep_run_id=lookup.output, **variant_options)


@dsl.pipeline(name="latxa-sweep", description="Many variants (ParallelFor) under one parent MLflow run; local Ray training.")
# KFP reads a list parameter's default from the signature: it must be a literal list (never mutated).
def sweep_pipeline(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "local",  # noqa: B006
                   data_config: str = "", base_model: str = "", tokenizer: str = "", seq_len: int = 0,
                   max_steps: int = 0, eval_suite: str = "eu-mini", eval_limit: int = 0,
                   experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "", image: str = steps.IMAGE):
    _sweep(variants, LOCAL_PARALLELISM, profile=profile, config_path="", data_config=data_config,
           base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
           eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image, cluster=None)


@dsl.pipeline(name="latxa-sweep-slurm", description="The 8B grid (ParallelFor) trained on SLURM through the bridge.")
def sweep_pipeline_slurm(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "leonardo-8b",  # noqa: B006
                         cluster: str = "leonardo", config_path: str = "", data_config: str = "", base_model: str = "",
                         tokenizer: str = "", seq_len: int = 0, max_steps: int = 0, eval_suite: str = "eu-mini",
                         eval_limit: int = 0, experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str = "",
                         image: str = steps.IMAGE):
    _sweep(variants, CLUSTER_PARALLELISM, profile=profile, config_path=config_path, data_config=data_config,
           base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
           eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image, cluster=cluster)


PIPELINES = {
    "study": study_pipeline,
    "study-slurm": study_pipeline_slurm,
    "sweep": sweep_pipeline,
    "sweep-slurm": sweep_pipeline_slurm,
}
