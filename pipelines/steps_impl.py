"""What each KFP step does, as plain functions (the components in `steps.py` only call these).

The steps call the layers' Python entry points (data: `latxa.components.data.prepare`; training:
`latxa.components.train.runner.train`; evaluation: `latxa.components.eval.mlflow_log.evaluate_and_log`; SLURM
training: `latxa.slurm.kfp_bridge.train_job`) and talk to MLflow through `latxa.components.tracking`'s
conventions: training creates the variant's run, and every step tags it with its KFP task.
"""

from __future__ import annotations

import os
from pathlib import Path

from latxa.components import tracking
from latxa.errors import LatxaError


class StepError(LatxaError):
    """A pipeline step could not do its work (one sentence; the step's log has the details)."""


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------------------------------------
def check_tracking(experiment: str, tracking_uri: str | None) -> str:
    uri = tracking.check_reachable(tracking_uri or None)
    exp_id = tracking.ensure_experiment(experiment, uri)
    print(f"MLflow {uri}: experiment '{experiment}' (id {exp_id})", flush=True)
    return uri


def _train_tags(kfp_run_id: str, kfp_task: str, prepare_task: str, pipeline: str) -> dict[str, str]:
    tags = {**tracking.kfp_tags(kfp_run_id, kfp_task, "train"), tracking.TAG_PIPELINE: pipeline}
    if prepare_task:
        tags[tracking.TAG_KFP_TASK_PREFIX + "prepare"] = prepare_task
    return tags


def _move_export(model_dir: str, artifact_path: str) -> None:
    """Put the exported HF folder at the Model artifact's path (a rename: no copy of the weights)."""
    import shutil

    dst = Path(artifact_path)
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(model_dir, dst)
    os.symlink(dst, model_dir, target_is_directory=True)


def prepare(variant: str, out: str, *, config: str | None, tokenizer: str | None, seq_len: int | None, profile: str,
            on_error: str, use_cache: bool) -> dict:
    """Data preparation into ``out``. ``config`` is a YAML path, inline YAML text or None (the shipped sample)."""
    import json
    import tempfile

    from latxa.components.data import prepare as prepare_data

    cfg_path = None
    if config and config.strip():
        if os.path.isfile(config):
            cfg_path = config
        else:  # inline YAML text
            fd, cfg_path = tempfile.mkstemp(suffix=".yaml", prefix="latxa-data-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(config)
    res = prepare_data(variant, out, config=cfg_path, tokenizer=tokenizer or None, seq_len=seq_len or None,
                       profile=profile, on_error=on_error, use_cache=use_cache, progress=False)
    stats = res.stats
    metrics = {key: float(stats[key]) for key in ("read", "written", "skipped", "examples", "tokens",
                                                  "trainable_tokens", "rows", "pad_tokens", "packing_efficiency",
                                                  "split_documents")}
    metrics["cache_hit"] = float(res.cache_hit)
    metrics.update({f"tokens.{name}": float(n) for name, n in stats["tokens_per_source"].items()})
    metadata = {"variant": variant, "cache_key": res.cache_key, "seq_len": stats["seq_len"], "num_rows": stats["rows"],
                "sources": json.dumps(sorted(stats["tokens_per_source"]))}
    print(f"prepared {variant}: {stats['rows']} rows, cache key {res.cache_key}, cache hit {res.cache_hit}", flush=True)
    return {"metrics": metrics, "metadata": metadata, "cache_key": res.cache_key}


def train_local(variant: str, data: str, model_out: str, *, profile: str, base_model: str | None,
                max_steps: int | None, tracking_uri: str | None, experiment: str | None, parent_run_id: str | None,
                num_workers: int | None) -> dict:
    """Ray Train on this machine or pod; the export lands at ``model_out``, training state in ``<model_out>.train``
    (a retried task resumes from its latest checkpoint)."""
    import shutil

    from latxa.components.train.plan import TrainJob
    from latxa.components.train.runner import train

    job = TrainJob(variant=variant, data_dir=Path(data), out_dir=Path(model_out + ".train"),
                   model_dir=Path(base_model) if base_model else None, profile=profile or None, resume=True,
                   tracking_uri=tracking_uri or None, experiment=experiment or None,
                   parent_run_id=parent_run_id or None, max_steps=max_steps or None, num_workers=num_workers or None)
    res = train(job, progress=True)
    dst = Path(model_out)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(res.model_dir, dst)
    metrics = {k: float(v) for k, v in res.metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    metadata = {"variant": variant, "mlflow_run_id": res.mlflow_run_id or "",
                "registered_model": res.registered_model or "", "model_version": res.model_version or "",
                "framework": "transformers"}
    print(f"trained {variant}: model at {dst}, MLflow run {res.mlflow_run_id}", flush=True)
    return {"metrics": metrics, "metadata": metadata, "run_id": res.mlflow_run_id or ""}


# ---------------------------------------------------------------------------------------------
def evaluate(model: str, model_url: str, suite: str, out: str, *, served_model: str, variant: str, limit: int,
             tasks: str, device: str, experiment: str, run_id: str, tracking_uri: str, kfp_run_id: str,
             kfp_task: str, name: str) -> dict:
    """lm-eval on the model folder (or URL), aggregated by the evaluation layer and, with a variant or a parent
    run, logged as a nested run of the variant run, tagged with this KFP task."""
    from latxa.components.eval.mlflow_log import evaluate_and_log

    if model and model_url:
        raise StepError("give either the model artifact or model_url, not both.")
    target = model or model_url
    if not target:
        raise StepError("no model: wire a Model artifact or set model_url.")
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] or None
    step = evaluate_and_log(target, suite, out, limit=limit or None, name=variant or name or None, tasks=task_list,
                            served_model=served_model or None, device=device, log=bool(variant or run_id),
                            variant=variant or None, parent_run_id=run_id or None, tracking_uri=uri,
                            experiment=experiment or tracking.DEFAULT_EXPERIMENT,
                            extra_tags=tracking.kfp_tags(kfp_run_id, kfp_task, "eval"))
    res = step.run
    metadata = {"suite": suite, "model": res.spec.name, "lm_type": res.spec.lm_type, "limit": limit,
                "results_json": os.path.relpath(res.results_path, out), "tasks": ",".join(res.tasks)}
    if step.mlflow_run_id:
        metadata["mlflow_run_id"] = step.mlflow_run_id
    logged = f"; MLflow run {step.mlflow_run_id} ({uri})" if step.mlflow_run_id else ""
    print(f"evaluated {res.spec.name} on {suite}: {step.languages}{logged}", flush=True)
    return {"metrics": step.metrics, "metadata": metadata, "results_json": str(res.results_path)}


# ---------------------------------------------------------------------------------------------
def register(variant: str, model_path: str, run_id: str, *, tracking_uri: str, kfp_run_id: str,
             tasks: dict[str, str], metrics: dict[str, float], eval_run_id: str = "", pipeline: str = "study") -> str:
    """Summary metrics onto the variant run; the model registered (once per run) and every piece tagged with its
    KFP task (``tasks``: step -> KFP task name). Training normally registered the model already; this step
    registers it only if it did not."""
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    if not run_id:
        raise StepError(f"training of {variant} returned no MLflow run id, so there is nothing to register.")
    client = _client(uri)
    run_tags = client.get_run(run_id).data.tags
    task_tags = {tracking.TAG_KFP_RUN: kfp_run_id, tracking.TAG_PIPELINE: pipeline,
                 **{tracking.TAG_KFP_TASK_PREFIX + step: name for step, name in tasks.items() if name}}
    if not run_tags.get(tracking.TAG_KFP_TASK) and tasks.get("train"):
        task_tags[tracking.TAG_KFP_TASK] = tasks["train"]  # the variant run is the training run
    logger = tracking.BufferedRunLogger(run_id, uri)
    logger.log_metrics(metrics)
    logger.set_tags(task_tags)
    left = logger.close()
    if left:
        raise StepError(f"the tracking server at {uri} is unreachable; {left} records are buffered locally, "
                        "run `latxa mlflow sync` when it is back.")
    if eval_run_id:
        client.set_tag(eval_run_id, tracking.TAG_KFP_RUN, kfp_run_id)
        if tasks.get("eval"):
            client.set_tag(eval_run_id, tracking.TAG_KFP_TASK, tasks["eval"])
    name = tracking.registered_model_name(variant)
    mine = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.run_id == run_id]
    if mine:
        version = mine[0]
    else:
        model_dir = Path(model_path)
        if not (model_dir / "config.json").is_file():
            raise StepError(f"{model_dir} is not an exported Hugging Face model folder (no config.json).")
        if "model" not in {f.path for f in client.list_artifacts(run_id)}:
            client.log_artifacts(run_id, str(model_dir), "model")
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, tags=tracking.variant_tags(variant))
        run = client.get_run(run_id)
        version = client.create_model_version(name, f"{run.info.artifact_uri.rstrip('/')}/model", run_id=run_id,
                                              tags=tracking.variant_tags(variant))
    run_tags = client.get_run(run_id).data.tags
    version_tags = {tracking.TAG_KFP_RUN: kfp_run_id, tracking.TAG_KFP_TASK: run_tags.get(tracking.TAG_KFP_TASK, ""),
                    tracking.TAG_KFP_TASK_PREFIX + "register": tasks.get("register", "")}
    for key, value in version_tags.items():
        if value:
            client.set_model_version_tag(name, version.version, key, value)
    print(f"{name} version {version.version} (MLflow run {run_id}) tagged with KFP run {kfp_run_id}", flush=True)
    return f"{name}/{version.version}"


def start_sweep(variants: list, experiment: str, tracking_uri: str | None, kfp_run_id: str, kfp_task: str) -> str:
    from latxa.components.registry import parse

    codes = [parse(str(code)).code for code in variants]
    uri = check_tracking(experiment, tracking_uri)
    exp_id = tracking.ensure_experiment(experiment, uri)
    run = _client(uri).create_run(exp_id, run_name=f"sweep-{kfp_run_id[:8] or 'local'}", tags={
        tracking.TAG_SWEEP: ",".join(codes), tracking.TAG_STAGE: "sweep", tracking.TAG_PIPELINE: "sweep",
        **tracking.kfp_tags(kfp_run_id, kfp_task, "sweep"), tracking.TAG_GIT_COMMIT: tracking.git_commit(),
    })
    _client(uri).set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def sweep_run_of(experiment: str, tracking_uri: str | None, kfp_run_id: str) -> str:
    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`{tracking.TAG_STAGE}` = 'sweep' and tags.`{tracking.TAG_KFP_RUN}` = '{kfp_run_id}'"),
        order_by=["attributes.start_time DESC"], max_results=1) if exp else []
    if not found:
        raise StepError(f"no sweep run tagged {tracking.TAG_KFP_RUN}={kfp_run_id} in experiment '{experiment}' at {uri}.")
    return found[0].info.run_id


def _write_ref(path: str, ref: str, **extra) -> None:
    """The artifact's content on the KFP side: a small JSON reference to the files on the cluster."""
    import json

    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps({"slurm_ref": ref, **extra}, indent=2, default=str) + "\n", encoding="utf-8")


def artifact_ref(path: str, metadata: dict) -> str:
    """The ``slurm://`` reference an upstream SLURM step left in its artifact (metadata, else its JSON content)."""
    import json

    ref = str(metadata.get("slurm_ref") or "")
    if not ref and Path(path).is_file():
        try:
            ref = json.loads(Path(path).read_text(encoding="utf-8")).get("slurm_ref", "")
        except (OSError, ValueError):
            ref = ""
    return ref


def slurm_prepare(variant: str, dataset_path: str, *, cluster: str, profile: str, data_config: str, tokenizer: str,
                  kfp_run_id: str, kfp_task: str) -> dict:
    """`latxa study prepare` as a one-node job on the cluster; the Dataset artifact is a reference to it."""
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.kfp_bridge import prepare_step

    try:
        res = prepare_step(variant=variant, cluster=cluster, study_profile=profile or None,
                           data_config=data_config or None, tokenizer=tokenizer or None, kfp_run_id=kfp_run_id,
                           kfp_task=kfp_task, poll_s=1.0)
    except SlurmError as err:
        raise StepError(f"SLURM data preparation of {variant} failed: {err}") from err
    train = res["summary"]["train"]
    _write_ref(dataset_path, res["ref"], job_id=res["job_id"], summary=res["summary"])
    metadata = {"variant": variant, "slurm_ref": res["ref"], "slurm_job_id": res["job_id"],
                "cache_key": train["cache_key"], "num_rows": train["rows"],
                "heldout": ",".join(sorted(res["summary"]["heldout"]))}
    metrics = {"rows": float(train["rows"]), "tokens": float(train["tokens"]), "cache_hit": float(train["cache_hit"])}
    print(f"prepared {variant} on {cluster}: {res['ref']} (job {res['job_id']})", flush=True)
    return {"metadata": metadata, "metrics": metrics, "ref": res["ref"]}


def train_slurm(variant: str, data: str, model_out: str, *, profile: str, cluster: str, config_path: str,
                base_model: str, max_steps: int, experiment: str, tracking_uri: str, sweep_run_id: str,
                kfp_run_id: str, kfp_task: str, prepare_task: str, export: bool = True) -> dict:
    """Train through the SLURM bridge (``latxa.slurm.kfp_bridge.train_job``: submit or re-attach, wait while
    reporting, fail with the log tail); the job runs `latxa train` in the allocation.

    ``data`` is the prepare step's ``slurm://`` reference (or, for older pipelines, a folder the cluster sees).
    With ``export=False`` the Model artifact is a reference to the run on the cluster (export, evaluation and
    registration are their own SLURM steps); otherwise the exported folder is moved to the artifact (a cluster
    that shares this filesystem). The tracking URI must be reachable from the compute nodes.
    """
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.kfp_bridge import train_job

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    from_ref = str(data).startswith("slurm://")
    out_dir = None if from_ref else str(Path(model_out).parent / "train")
    train_args = [f"--experiment={experiment or tracking.DEFAULT_EXPERIMENT}"] + ([f"--parent-run-id={sweep_run_id}"] if sweep_run_id else [])
    try:
        res = train_job(variant=variant, profile=cluster, study_profile=profile or None, data=data, out=out_dir,
                        model=base_model or None, config=config_path or None, tracking_uri=uri,
                        max_steps=max_steps or None, env={"MLFLOW_TRACKING_URI": uri}, train_args=train_args,
                        poll_s=1.0, max_poll_s=30.0, export=export,
                        key=f"{kfp_run_id}/{kfp_task}/{variant}/train" if kfp_run_id else None, kfp_run_id=kfp_run_id)
    except SlurmError as err:
        raise StepError(f"SLURM training of {variant} failed: {err}") from err
    job_id, info = res["job_id"], res["run"]
    run_id = info.get("mlflow_run_id") or ""
    if run_id:
        logger = tracking.BufferedRunLogger(run_id, uri)
        logger.set_tags({**_train_tags(kfp_run_id, kfp_task, prepare_task, "sweep" if sweep_run_id else "study"),
                         tracking.TAG_SLURM_JOB: job_id})
        logger.close()
    metrics = {k: float(v) for k, v in (info.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if export and info.get("model") and Path(info["model"]).is_dir():
        _move_export(info["model"], model_out)
    elif not export:
        _write_ref(model_out, res["ref"], checkpoint=res["checkpoint"], job_id=job_id, mlflow_run_id=run_id)
    return {"run_id": run_id, "metrics": metrics, "job_id": job_id, "ref": res["ref"], "checkpoint": res["checkpoint"],
            "variant_key": info.get("variant") or variant}


def slurm_export(run_ref: str, model_path: str, *, cluster: str, profile: str, kfp_run_id: str, kfp_task: str) -> dict:
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.kfp_bridge import export_step

    try:
        res = export_step(run_ref=run_ref, cluster=cluster, study_profile=profile or None, kfp_run_id=kfp_run_id,
                          kfp_task=kfp_task, poll_s=1.0)
    except SlurmError as err:
        raise StepError(f"SLURM export of {run_ref} failed: {err}") from err
    _write_ref(model_path, res["ref"], job_id=res["job_id"], export=res["export"])
    return res


def slurm_evaluate(model_ref: str, run_ref: str, variant_key: str, results_path: str, *, cluster: str, profile: str,
                   suite: str, limit: int, tracking_uri: str, kfp_run_id: str, kfp_task: str,
                   mlflow_run_id: str) -> dict:
    """Evaluation as a SLURM job; its scores come back from the MLflow evaluation run the job logged."""
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.kfp_bridge import eval_step

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    try:
        res = eval_step(model_ref=model_ref, run_ref=run_ref, variant_key=variant_key, cluster=cluster,
                        study_profile=profile or None, suite=suite, limit=limit, tracking_uri=uri,
                        kfp_run_id=kfp_run_id, kfp_task=kfp_task, poll_s=1.0)
    except SlurmError as err:
        raise StepError(f"SLURM evaluation of {variant_key} failed: {err}") from err
    client = _client(uri)
    exp_id = client.get_run(mlflow_run_id).info.experiment_id
    runs = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{mlflow_run_id}'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    evals = [r for r in runs if r.data.tags.get(tracking.TAG_STAGE) == "eval"]
    if not evals:
        raise StepError(f"The evaluation job {res['job_id']} logged no evaluation run under MLflow run {mlflow_run_id}.")
    ev = evals[0]
    metrics = {k: float(v) for k, v in ev.data.metrics.items()}
    for key, value in {**tracking.kfp_tags(kfp_run_id, kfp_task, "eval"), tracking.TAG_SLURM_JOB: res["job_id"]}.items():
        client.set_tag(ev.info.run_id, key, value)
    _write_ref(results_path, res["results_ref"], job_id=res["job_id"], mlflow_run_id=ev.info.run_id, metrics=metrics)
    return {"metrics": metrics, "metadata": {"slurm_ref": res["results_ref"], "mlflow_run_id": ev.info.run_id,
                                             "slurm_job_id": res["job_id"]}}


def slurm_register(run_ref: str, model_ref: str, *, variant: str, cluster: str, profile: str, tracking_uri: str,
                   kfp_run_id: str, kfp_task: str, mlflow_run_id: str, tasks: dict[str, str],
                   eval_run_id: str = "") -> str:
    """`latxa model register` as a SLURM job; then the KFP tasks are tagged on the run and the model version."""
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.kfp_bridge import register_step

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    try:
        res = register_step(run_ref=run_ref, model_ref=model_ref, cluster=cluster, study_profile=profile or None,
                            tracking_uri=uri, kfp_run_id=kfp_run_id, kfp_task=kfp_task, poll_s=1.0)
    except SlurmError as err:
        raise StepError(f"SLURM registration of {variant} failed: {err}") from err
    name, version = res["registered_model"], res["model_version"]
    if not name or not version:
        raise StepError(f"The registration job {res['job_id']} did not record a model version in run.json.")
    client = _client(uri)
    tags = {tracking.TAG_KFP_RUN: kfp_run_id, **{tracking.TAG_KFP_TASK_PREFIX + s: n for s, n in tasks.items() if n}}
    for key, value in tags.items():
        if value:
            client.set_tag(mlflow_run_id, key, value)
            client.set_model_version_tag(name, version, key, value)
    client.set_model_version_tag(name, version, tracking.TAG_MODEL_PATH, model_ref)
    if eval_run_id:
        client.set_tag(eval_run_id, tracking.TAG_KFP_RUN, kfp_run_id)
    print(f"{name} version {version} (MLflow run {mlflow_run_id}) registered on {cluster}", flush=True)
    return f"{name}/{version}"


# ---------------------------------------------------------------------------------------------
def compare_variants(experiment: str, kfp_run_id: str, *, tracking_uri: str | None, sweep_run_id: str | None,
                     expected: int | None) -> dict:
    """The comparison of this KFP run's variants: Markdown table, HTML page (table + plot + MLflow link), KFP
    metrics; the table, plot and rows as artifacts of the sweep's MLflow run; the study view refreshed."""
    import base64
    import html
    import tempfile

    from latxa.pipelines import compare

    uri = tracking.resolve_tracking_uri(tracking_uri or None)
    rows = compare.collect(experiment, uri, kfp_run_id=kfp_run_id or None)
    if expected is not None and len(rows) != expected:
        found = ", ".join(r["variant"] for r in rows) or "none"
        raise StepError(f"{expected} variants were registered in KFP run {kfp_run_id} but MLflow experiment "
                        f"'{experiment}' at {uri} has {len(rows)} of them ({found}).")
    tracking.refresh_study_view(experiment, uri)
    exp = _client(uri).get_experiment_by_name(experiment)
    link = tracking.experiment_url(uri, exp.experiment_id) if exp else None
    charts = tracking.experiment_url(uri, exp.experiment_id, charts=True) if exp else None
    title = f"Latxa-Instruct: {len(rows)} variant(s) of KFP run {kfp_run_id} (MLflow experiment '{experiment}')"
    markdown = f"## {title}\n\n{compare.to_markdown(rows)}"
    if link:
        markdown += f"\nMLflow: [runs table]({link}) · [loss curves and score charts]({charts})\n"
    with tempfile.TemporaryDirectory() as tmp:
        png = compare.plot(rows, Path(tmp) / "compare.png")
        image = base64.b64encode(png.read_bytes()).decode("ascii")
        if sweep_run_id:
            (Path(tmp) / "compare.md").write_text(markdown, encoding="utf-8")
            (Path(tmp) / "compare.json").write_text(compare.to_json(rows), encoding="utf-8")
            _client(uri).log_artifacts(sweep_run_id, tmp, artifact_path="compare")
    header, cells = compare.header_and_cells(rows)
    table = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    links = (f'<p>MLflow: <a href="{html.escape(link)}" target="_blank">runs table</a> · '
             f'<a href="{html.escape(charts)}" target="_blank">loss curves and score charts</a></p>') if link else ""
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
            "td:nth-child(-n+2){text-align:left}</style></head><body>"
            f"<h2>{html.escape(title)}</h2><table><tr>{table}</tr>{body}</table>"
            f"<p><img alt='evaluation means and final loss per variant' src='data:image/png;base64,{image}'></p>"
            f"{links}</body></html>")
    metrics: dict[str, float] = {}
    for row in rows:
        for lang, value in row["means"].items():
            if value is not None:
                metrics[f"{row['variant']}.mean_{lang}"] = float(value)
        if row["final_loss"] is not None:
            metrics[f"{row['variant']}.final_loss"] = float(row["final_loss"])
    print(markdown, flush=True)
    return {"markdown": markdown, "html": page, "metrics": metrics, "rows": rows}
