"""The study's KFP v2 pipelines.

- ``study_pipeline``: one variant: check MLflow (fail fast) -> prepare data -> train (local Ray Train)
  -> evaluate -> register. ``study_pipeline_slurm``: the same with training through the SLURM bridge.
- ``sweep_pipeline`` / ``sweep_pipeline_slurm``: the same over many variants with ``dsl.ParallelFor``,
  under one MLflow sweep run (the whole 8B grid is ``--variants trained``).

Every pipeline ends with ``compare-variants``: the comparison table (``Markdown``), table and plot (``HTML``) and
the eval means per variant (``Metrics``), shown in the KFP run view. Parameters are documented in the docstrings
(their descriptions in the IR); optional ones are ``Optional[...] = None`` ("not set", never '' or 0).

Steps pass KFP artifacts: ``Dataset`` (packed data) -> ``Model`` (exported HF folder) -> ``Metrics``
(training summary, evaluation scores) and the evaluation's results ``Artifact``. Every step that touches
MLflow receives the KFP run id and its task name (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``,
``dsl.PIPELINE_TASK_NAME_PLACEHOLDER``) and records them as tags (``kfp.run_id``, ``kfp.task``,
``kfp.task.<step>``) on the variant's run, its evaluation run and its registered model version.
"""

from typing import Optional

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


def _set(**kwargs) -> dict:
    """The keyword arguments that are set: an optional pipeline parameter that is not given stays unset down to the
    component (whose default is None), instead of travelling as a '' or 0 that a step reads as a value."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _slurm_dag(variant, *, profile, config_path, data_config, base_model, tokenizer, max_steps, eval_suite,
               eval_limit, experiment, tracking_uri, image, cluster, first, sweep_run_id):
    """The per-variant chain as SLURM jobs on ``cluster``: prepare -> train -> export -> evaluate -> register, each a
    job on the cluster, passing slurm:// references (the data and the model stay on the cluster's filesystem)."""
    prep = steps.slurm_prepare_data(variant=variant, cluster=cluster, profile=profile, kfp_run_id=RUN_ID, kfp_task=TASK,
                                    **_set(data_config=data_config, tokenizer=tokenizer)
                                    ).set_display_name("slurm-prepare").after(first)
    train = steps.slurm_train_model(variant=variant, profile=profile, cluster=cluster, experiment=experiment,
                                    kfp_run_id=RUN_ID, kfp_task=TASK, prepare_task=prep.name,
                                    data=prep.outputs["dataset"],
                                    **_set(config_path=config_path, base_model=base_model, max_steps=max_steps,
                                           tracking_uri=tracking_uri, sweep_run_id=sweep_run_id)
                                    ).set_display_name("slurm-train")
    export = steps.slurm_export_model(trained=train.outputs["model"], cluster=cluster, profile=profile,
                                      kfp_run_id=RUN_ID, kfp_task=TASK).set_display_name("slurm-export")
    ev = steps.slurm_evaluate_model(model=export.outputs["exported"], cluster=cluster, profile=profile,
                                    suite=eval_suite, kfp_run_id=RUN_ID, kfp_task=TASK,
                                    **_set(limit=eval_limit, tracking_uri=tracking_uri)
                                    ).set_display_name("slurm-evaluate")
    reg = steps.slurm_register_model(variant=variant, model=export.outputs["exported"], results=ev.outputs["results"],
                                     cluster=cluster, profile=profile, kfp_run_id=RUN_ID, kfp_task=TASK,
                                     prepare_task=prep.name, train_task=train.name, export_task=export.name,
                                     eval_task=ev.name, **_set(tracking_uri=tracking_uri)
                                     ).set_display_name("slurm-register")
    for task in (prep, train, export, ev, reg):
        _configure(task, image, ssh=True)     # every SLURM step submits a job: the SSH Secret
    return reg


def _variant_dag(variant, *, profile, config_path, data_config, base_model, tokenizer, seq_len, max_steps,
                 eval_suite, eval_limit, experiment, tracking_uri, image, cluster, first, sweep_run_id, pipeline):
    """The per-variant chain after ``first`` (the tracking check); returns the register task."""
    if cluster is not None:
        return _slurm_dag(variant, profile=profile, config_path=config_path, data_config=data_config,
                          base_model=base_model, tokenizer=tokenizer, max_steps=max_steps, eval_suite=eval_suite,
                          eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image,
                          cluster=cluster, first=first, sweep_run_id=sweep_run_id)
    prep = steps.prepare_data(variant=variant, profile=profile,
                              **_set(config=data_config, tokenizer_path=tokenizer, seq_len=seq_len)
                              ).set_display_name("prepare-data").after(first)
    # Ray Train on this machine or pod.
    train = steps.train_variant(dataset=prep.outputs["dataset"], variant=variant, profile=profile,
                                experiment=experiment, **_set(model_path=base_model, max_steps=max_steps,
                                                              tracking_uri=tracking_uri, parent_run_id=sweep_run_id)
                                ).set_display_name("train")
    run_id = train.outputs["Output"]
    # Evaluation: the evaluation layer's runner, aggregation and MLflow logging (a nested run of the variant's run).
    ev = steps.evaluate_model(variant=variant, suite=eval_suite, experiment=experiment, mlflow_run_id=run_id,
                              kfp_run_id=RUN_ID, kfp_task=TASK, model=train.outputs["model"],
                              **_set(limit=eval_limit, tracking_uri=tracking_uri)).set_display_name("evaluate")
    reg = steps.register_model(variant=variant, mlflow_run_id=run_id, kfp_run_id=RUN_ID,
                               kfp_task=TASK, prepare_task=prep.name, train_task=train.name, eval_task=ev.name,
                               pipeline=pipeline, model=train.outputs["model"],
                               train_metrics=train.outputs["metrics"], scores=ev.outputs["metrics"],
                               results=ev.outputs["results"], **_set(tracking_uri=tracking_uri)
                               ).set_display_name("register")
    for task in (prep, train, ev, reg):
        _configure(task, image)
    return reg


def _configure(task, image, ssh: bool = False):
    task.set_container_image(image)
    task.set_caching_options(False)  # steps write MLflow state: never reuse a cached result silently
    return _on_cluster(task, ssh=ssh)


def _check(experiment, tracking_uri, image):
    check = steps.check_tracking(experiment=experiment, **_set(tracking_uri=tracking_uri))
    return _configure(check.set_display_name("check-mlflow"), image)


def _report(experiment, tracking_uri, image, **inputs):
    """The run's outputs in the KFP dashboard: the comparison table (Markdown), table + plot (HTML) and the eval
    means per variant (Metrics); for a sweep also kept on its MLflow run."""
    rep = steps.compare_variants(experiment=experiment, kfp_run_id=RUN_ID, **_set(tracking_uri=tracking_uri, **inputs))
    return _configure(rep.set_display_name("compare-variants"), image)


# The parameters every pipeline shares, documented once: KFP reads each pipeline's docstring ``Args:`` into the
# parameters' descriptions in the compiled IR (kfp 2.17: component_factory.extract_component_interface).
_ARGS = {
    "variant": "Variant code exp_B_CIJ: backbone B (0 Llama 3.1 8B, 1 Latxa 3.1 8B, 2 Llama 3.1 8B Instruct), "
               "then 1/0 for the Basque corpus C, Basque instructions I and English instructions J, e.g. exp_2_101 "
               "(`latxa variants list`).",
    "variants": "JSON list of variant codes (exp_B_CIJ), each trained and evaluated in parallel under one sweep "
                "run, e.g. [\"exp_2_101\", \"exp_2_100\"]; the whole 8B grid is the 17 codes of `latxa variants "
                "list --trained`.",
    "profile": "Study profile (components/configs/study.yaml): local (tiny model, CPU), leonardo-8b or "
               "leonardo-70b (the paper's settings on Leonardo's GPUs).",
    "cluster": "SLURM cluster profile of the bridge (slurm/profiles/): leonardo, or local for the single-node "
               "test cluster.",
    "config_path": "Training config YAML on the SLURM login node. Leave empty for the shipped study config.",
    "data_config": "Data-source YAML: a path in the image, or inline YAML text. Leave empty for the shipped "
                   "Basque sample (data/).",
    "base_model": "Base model to fine-tune: a folder, or an HF name in the offline cache where training runs. "
                  "Leave empty for the default: the tiny model on the local profile; through SLURM, the variant's "
                  "backbone (e.g. meta-llama/Llama-3.1-8B-Instruct) from the cluster's cache.",
    "tokenizer": "Tokenizer (and chat template) for data preparation: a folder or an HF name in the offline "
                 "cache. Leave empty for the base model's.",
    "seq_len": "Packed row length in tokens. Leave empty for the profile's (8192 in the paper's profiles).",
    "max_steps": "Cap on optimizer steps, for a quick try. Leave empty to train the profile's epochs in full.",
    "eval_suite": "Evaluation suite: eu-mini (shipped, offline, small Basque tasks), paper (the study's 29 "
                  "benchmarks), or eu, en, es (`latxa eval tasks`).",
    "eval_limit": "Items per evaluation task, for a quick try. Leave empty to evaluate every item.",
    "experiment": "MLflow experiment of the study (one per study); variant runs are named by their code.",
    "tracking_uri": "MLflow tracking URI as seen from the pipeline's pods. Leave empty to use MLFLOW_TRACKING_URI "
                    "of the latxa-pipeline-config ConfigMap.",
    "image": "Container image of every step (k8s/images/components.Dockerfile).",
}


def _documented(*names: str):
    """Append an ``Args:`` section with the shared descriptions of ``names`` to the pipeline's docstring."""
    def wrap(func):
        import inspect

        args = "\n".join(f"    {n}: {_ARGS[n]}" for n in names)
        func.__doc__ = f"{inspect.cleandoc(func.__doc__)}\n\nArgs:\n{args}\n"
        return func
    return wrap


_STUDY_ARGS = ("variant", "profile", "data_config", "base_model", "tokenizer", "seq_len", "max_steps", "eval_suite",
               "eval_limit", "experiment", "tracking_uri", "image")
_SLURM_ARGS = ("variant", "profile", "cluster", "config_path", "data_config", "base_model", "tokenizer", "seq_len",
               "max_steps", "eval_suite", "eval_limit", "experiment", "tracking_uri", "image")


@dsl.pipeline(name="latxa-study")
@_documented(*_STUDY_ARGS)
def study_pipeline(variant: str = "exp_2_101", profile: str = "local", data_config: Optional[str] = None,
                   base_model: Optional[str] = None, tokenizer: Optional[str] = None, seq_len: Optional[int] = None,
                   max_steps: Optional[int] = None, eval_suite: str = "eu-mini", eval_limit: Optional[int] = None,
                   experiment: str = DEFAULT_EXPERIMENT, tracking_uri: Optional[str] = None,
                   image: str = steps.IMAGE) -> str:
    """One Latxa-Instruct variant: prepare data -> train (Ray Train) -> evaluate -> register in MLflow.

    Empty optional fields mean "the profile's setting". The run's outputs: the evaluation scores (Metrics) and the
    comparison table and plot (compare-variants)."""
    check = _check(experiment, tracking_uri, image)
    reg = _variant_dag(variant, profile=profile, config_path=None, data_config=data_config, base_model=base_model,
                       tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
                       eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image,
                       cluster=None, first=check, sweep_run_id=None, pipeline="study")
    _report(experiment, tracking_uri, image).after(reg)
    return reg.output


@dsl.pipeline(name="latxa-study-slurm")
@_documented(*_SLURM_ARGS)
def study_pipeline_slurm(variant: str = "exp_2_101", profile: str = "leonardo-8b", cluster: str = "leonardo",
                         config_path: Optional[str] = None, data_config: Optional[str] = None,
                         base_model: Optional[str] = None, tokenizer: Optional[str] = None,
                         seq_len: Optional[int] = None, max_steps: Optional[int] = None, eval_suite: str = "eu-mini",
                         eval_limit: Optional[int] = None, experiment: str = DEFAULT_EXPERIMENT,
                         tracking_uri: Optional[str] = None, image: str = steps.IMAGE) -> str:
    """One variant, trained on a SLURM cluster (CINECA Leonardo) through the bridge, evaluated and registered.

    Empty optional fields mean "the profile's setting". The run's outputs: the evaluation scores (Metrics) and the
    comparison table and plot (compare-variants)."""
    check = _check(experiment, tracking_uri, image)
    reg = _variant_dag(variant, profile=profile, config_path=config_path, data_config=data_config,
                       base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps,
                       eval_suite=eval_suite, eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri,
                       image=image, cluster=cluster, first=check, sweep_run_id=None, pipeline="study")
    _report(experiment, tracking_uri, image).after(reg)
    return reg.output


# ParallelFor's parallelism is fixed at compile time: 1 keeps a 2-core machine sane (each variant's training
# already uses both cores); the cluster pipelines run the whole 17-variant grid at once.
LOCAL_PARALLELISM = 1
CLUSTER_PARALLELISM = 17


def _sweep(variants, parallelism, *, experiment, tracking_uri, image, **variant_options):
    """``variant_options``: the keyword arguments of :func:`_variant_dag` other than the chain's start."""
    parent = steps.start_sweep(variants=variants, experiment=experiment, kfp_run_id=RUN_ID, kfp_task=TASK,
                               **_set(tracking_uri=tracking_uri))
    _configure(parent.set_display_name("mlflow-sweep-run"), image)
    with dsl.ParallelFor(variants, parallelism=parallelism, name="variants") as variant:
        # The parent run id is looked up inside the loop rather than passed in as parent.output: kfp.local
        # (2.17) replaces a task output entering a loop with the loop item.
        lookup = steps.sweep_run_of(experiment=experiment, kfp_run_id=RUN_ID, **_set(tracking_uri=tracking_uri))
        _configure(lookup.set_display_name("sweep-run").after(parent), image)
        reg = _variant_dag(variant, experiment=experiment, tracking_uri=tracking_uri, image=image, first=lookup,
                           sweep_run_id=lookup.output, pipeline="sweep", **variant_options)
    # Fan-in: the comparison waits for every variant (dsl.Collected) and keeps its table on the sweep run.
    _report(experiment, tracking_uri, image, sweep_run_id=parent.output, registered=dsl.Collected(reg.output))


@dsl.pipeline(name="latxa-sweep")
@_documented("variants", *_STUDY_ARGS[1:])
# KFP reads a list parameter's default from the signature: it must be a literal list (never mutated).
def sweep_pipeline(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "local",  # noqa: B006
                   data_config: Optional[str] = None, base_model: Optional[str] = None,
                   tokenizer: Optional[str] = None, seq_len: Optional[int] = None, max_steps: Optional[int] = None,
                   eval_suite: str = "eu-mini", eval_limit: Optional[int] = None, experiment: str = DEFAULT_EXPERIMENT,
                   tracking_uri: Optional[str] = None, image: str = steps.IMAGE):
    """Many variants (ParallelFor) under one MLflow sweep run; local Ray training; a comparison table at the end.

    Empty optional fields mean "the profile's setting". The run's outputs: each variant's evaluation scores (Metrics)
    and the comparison table and plot of all variants (compare-variants)."""
    _sweep(variants, LOCAL_PARALLELISM, profile=profile, config_path=None, data_config=data_config,
           base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
           eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image, cluster=None)


@dsl.pipeline(name="latxa-sweep-slurm")
@_documented("variants", *_SLURM_ARGS[1:])
def sweep_pipeline_slurm(variants: list = ["exp_2_101", "exp_2_100"], profile: str = "leonardo-8b",  # noqa: B006
                         cluster: str = "leonardo", config_path: Optional[str] = None,
                         data_config: Optional[str] = None, base_model: Optional[str] = None,
                         tokenizer: Optional[str] = None, seq_len: Optional[int] = None,
                         max_steps: Optional[int] = None, eval_suite: str = "eu-mini",
                         eval_limit: Optional[int] = None, experiment: str = DEFAULT_EXPERIMENT,
                         tracking_uri: Optional[str] = None, image: str = steps.IMAGE):
    """The 8B grid (ParallelFor) trained on SLURM through the bridge, evaluated, registered and compared.

    Empty optional fields mean "the profile's setting". The run's outputs: each variant's evaluation scores (Metrics)
    and the comparison table and plot of all variants (compare-variants)."""
    _sweep(variants, CLUSTER_PARALLELISM, profile=profile, config_path=config_path, data_config=data_config,
           base_model=base_model, tokenizer=tokenizer, seq_len=seq_len, max_steps=max_steps, eval_suite=eval_suite,
           eval_limit=eval_limit, experiment=experiment, tracking_uri=tracking_uri, image=image, cluster=cluster)


PIPELINES = {
    "study": study_pipeline,
    "study-slurm": study_pipeline_slurm,
    "sweep": sweep_pipeline,
    "sweep-slurm": sweep_pipeline_slurm,
}
