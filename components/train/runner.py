"""The driver: plan -> MLflow run -> Ray Train ``TorchTrainer`` -> export -> registered model.

``train(job)`` is what `latxa train`, the KFP component and the SLURM job script call. Layout of ``out``::

    out/run.json                       the job, the MLflow run id, the status (what --resume reads)
    out/ray/<variant>/step-00000020/   Ray Train's persisted checkpoints (the last K are kept)
    out/model/                         the exported Hugging Face folder (safetensors, tokenizer, chat template)

Resume: Ray Train V2 restores its checkpoint manager from ``out/ray/<variant>`` when the same run name and
storage path are reused, and ``ray.train.get_checkpoint()`` hands every worker the latest complete checkpoint.
The MLflow run id comes from ``out/run.json``, so a resumed run keeps logging into the same MLflow run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from latxa.components.train.plan import MODEL_DIR, RUN_FILE, TrainJob, TrainPlan, plan_training, read_run_file
from latxa.errors import LatxaError


class TrainingFailed(LatxaError):
    """Training started but a worker failed; the message names the cause."""

    exit_code = 1


class StoppedForRequeue(LatxaError):
    """Training checkpointed on a stop request (SIGUSR1 before the time limit) and stopped; requeue to resume.

    Its exit status is the job script's contract (:data:`latxa.components.train.checkpointing.REQUEUE_EXIT_CODE`)."""

    exit_code = 75


@dataclass
class TrainResult:
    variant: str
    out_dir: str
    model_dir: str
    checkpoint_dir: str
    mlflow_run_id: str | None
    tracking_uri: str | None
    registered_model: str | None
    model_version: str | None
    metrics: dict
    resumed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _write_run_file(out_dir: Path, data: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / RUN_FILE)


def start_ray(num_cpus: int | None = None) -> bool:
    """Connect to RAY_ADDRESS if set, else start a small local Ray; returns True if this call started it."""
    from latxa.ray_local import start_ray as start

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    return start(num_cpus=num_cpus, log_to_driver=True)


def run_trainer(plan: TrainPlan):
    """Run the plan on Ray Train; returns Ray's ``Result`` (metrics and the latest checkpoint)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from latxa.components.train.loop import train_loop_per_worker

    gpu = plan.backend == "gpu"
    threads = str(plan.cpus_per_worker)  # the worker's reserved CPUs, no more (oversubscription slows gloo/NCCL)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONHASHSEED": str(plan.seed)}
    if not gpu:
        env["DS_ACCELERATOR"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    import ray

    # The real process-group timeout (NCCL_TIMEOUT is read by neither NCCL nor torch): Ray's default is 1800 s.
    torch_config = TorchConfig(backend="nccl" if gpu else "gloo", **({"timeout_s": int(plan.pg_timeout_s)}
                                                                     if plan.pg_timeout_s else {}))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=plan.to_dict(),
        torch_config=torch_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.world_size, use_gpu=gpu,
            resources_per_worker={"CPU": plan.cpus_per_worker, **({"GPU": plan.gpus_per_worker} if gpu else {})}),
        run_config=ray.train.RunConfig(
            name=plan.run_name, storage_path=str(plan.ray_dir),
            # keep the last `keep_checkpoints` scheduled saves (epoch/final outrank time-based and requested ones);
            # Ray always keeps the latest checkpoint besides, which is what a resume starts from
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=plan.keep_checkpoints,
                                                         checkpoint_score_attribute="keep_score",
                                                         checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=0),
            worker_runtime_env={"env_vars": env},
        ),
    )
    return trainer.fit()


def train(job: TrainJob, progress: bool = True) -> TrainResult:
    """Validate, train, export and register one variant. Raises LatxaError subclasses on bad input."""
    from latxa.components import tracking
    from latxa.components.train.mlflow_run import open_run, register_export

    plan = plan_training(job)                      # every input check happens here, before any worker
    out_dir = Path(plan.out_dir)
    previous = read_run_file(out_dir) or {}
    resumed = bool(previous) and job.resume
    uri = None
    run_id = None
    if job.track:
        uri = tracking.check_reachable(job.tracking_uri)
        run_id = open_run(plan, job, uri, previous.get("mlflow_run_id") if resumed else None)
    plan.tracking_uri, plan.mlflow_run_id = uri, run_id
    resumes = previous.get("resumes", -1) + 1 if previous else 0
    _write_run_file(out_dir, {"variant": plan.variant, "status": "running", "mlflow_run_id": run_id,
                              "tracking_uri": uri, "started": time.time(), "plan": plan.to_dict(),
                              "resumes": resumes})
    from latxa.components.train.checkpointing import clear_request, install_stop_handler
    from latxa.components.train.shared_data import ensure_arrow

    clear_request(plan.control_dir)         # a request answered by the previous attempt's checkpoint
    import threading

    if threading.current_thread() is threading.main_thread():
        install_stop_handler(plan.control_dir)
    for folder in (plan.data_dir, *plan.heldout.values()):
        try:
            ensure_arrow(folder)            # one memory-mapped copy for every rank, built by this one process
        except OSError as err:              # a read-only data area: each rank reads the shards itself, as before
            print(f"[train] no shared memory-mapped copy of {folder} ({err.strerror or err}); ranks read the shards",
                  flush=True)
    if progress:
        print(f"[train] {plan.variant}: {plan.total_steps} steps x {plan.global_batch} rows of {plan.seq_len} tokens "
              f"on {plan.world_size} {plan.backend} worker(s), ZeRO stage {plan.deepspeed_stage}, from {plan.model_name}"
              + (f"@{plan.model_revision}" if plan.model_revision and plan.model_revision != "main" else "")
              + (f"; {plan.padded_rows_per_epoch} row(s) repeated to fill each epoch's last batch"
                 if plan.padded_rows_per_epoch else ""), flush=True)
    started_ray = start_ray(num_cpus=None if os.environ.get("RAY_ADDRESS") else max(plan.world_size, 1))
    try:
        try:
            from latxa.components.train.cluster import check_resources

            check_resources(plan)
            result = run_trainer(plan)
        except LatxaError:
            if job.track and run_id:
                from latxa.components.train.mlflow_run import end_run

                end_run(uri, run_id, "FAILED")
            raise
        except Exception as err:
            if job.track and run_id:
                from latxa.components.train.mlflow_run import end_run

                end_run(uri, run_id, "FAILED")
            raise TrainingFailed(f"Training {plan.variant} failed: {_root_cause(err)}") from err
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    if result.checkpoint is None:
        raise TrainingFailed(f"Training {plan.variant} ended without a checkpoint under {plan.ray_dir}.")
    ckpt_dir = Path(result.checkpoint.path)
    metrics = dict(result.metrics or {})
    common = {"variant": plan.variant, "mlflow_run_id": run_id, "tracking_uri": uri, "plan": plan.to_dict(),
              "checkpoint": str(ckpt_dir), "metrics": metrics, "resumes": resumes}
    if metrics.get("stopped_for_requeue"):
        from latxa.components.train.checkpointing import clear_request

        clear_request(plan.control_dir)
        _write_run_file(out_dir, {**common, "status": "stopped", "stopped": time.time()})
        if job.track and run_id:
            from latxa.components.train.mlflow_run import end_run

            end_run(uri, run_id, "KILLED")
        raise StoppedForRequeue(f"Training {plan.variant} checkpointed at step {metrics.get('step')}/"
                                f"{plan.total_steps} on a stop request and stopped; requeue the job to resume.")
    if not job.export:
        _write_run_file(out_dir, {**common, "status": "trained", "finished": time.time()})
        if job.track and run_id:
            from latxa.components.train.mlflow_run import end_run

            end_run(uri, run_id, "FINISHED")
        return TrainResult(variant=plan.variant, out_dir=str(out_dir), model_dir="", checkpoint_dir=str(ckpt_dir),
                           mlflow_run_id=run_id, tracking_uri=uri, registered_model=None, model_version=None,
                           metrics=metrics, resumed=resumed)
    from latxa.components.train.export import export_checkpoint

    model_out = export_checkpoint(ckpt_dir, out_dir / MODEL_DIR, base_model=plan.model_dir, dtype=plan.export_dtype,
                                  max_shard_size=plan.export_max_shard_size)
    name = version = None
    if job.track and run_id:
        name, version = register_export(plan, job, uri, run_id, model_out, metrics)
    _write_run_file(out_dir, {**common, "status": "finished", "finished": time.time(), "model": str(model_out),
                              "registered_model": name, "model_version": version})
    return TrainResult(variant=plan.variant, out_dir=str(out_dir), model_dir=str(model_out),
                       checkpoint_dir=str(ckpt_dir), mlflow_run_id=run_id, tracking_uri=uri,
                       registered_model=name, model_version=version, metrics=metrics, resumed=resumed)


def _root_cause(err: BaseException) -> str:
    """The innermost error's message, on one line (Ray wraps worker errors several times)."""
    seen = err
    for attr in ("__cause__", "__context__"):
        while getattr(seen, attr, None) is not None:
            seen = getattr(seen, attr)
    text = str(seen).strip().splitlines()
    last = [t for t in text if t.strip()]
    return f"{type(seen).__name__}: {last[-1].strip() if last else ''}"
