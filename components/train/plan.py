"""A training job, validated before any worker starts.

:func:`plan_training` turns what a user asked for (:class:`TrainJob`) into what the workers run
(:class:`TrainPlan`, plain JSON-able data). Every check that can fail on bad input happens here, in the
driver, in well under a second, with one readable sentence: unknown variant or profile, missing or
malformed dataset, data packed for another variant or sequence length, a model folder that is not a
Hugging Face causal LM, a batch that the worker count does not divide, a GPU profile on a machine
without GPUs, an output folder that already holds a run (without ``--resume``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from latxa.errors import LatxaError

RUN_FILE = "run.json"          # out/run.json: the job, the MLflow run id, status (what --resume reads)
RAY_DIR = "ray"                # out/ray/<run name>/checkpoint_*: Ray Train's persisted checkpoints
MODEL_DIR = "model"            # out/model: the exported Hugging Face folder
CONTROL_DIR = "control"        # out/control/: requests to a running job (a stop-and-requeue request file)


class TrainConfigError(LatxaError, ValueError):
    """A training job that cannot run as asked (one readable sentence)."""


@dataclass
class TrainJob:
    """What a user asks for (the CLI flags of `latxa train`)."""

    variant: str
    data_dir: Path
    out_dir: Path
    model_dir: Path | None = None          # default: the tiny offline model (cpu profiles), the backbone (gpu ones)
    model: str | None = None               # a folder or a Hugging Face name (org/name[@revision]), resolved offline
    revision: str | None = None            # branch, tag or commit of a hub name (e.g. exp_2_101)
    profile: str | None = "local"
    config_path: Path | None = None
    resume: bool = False
    tracking_uri: str | None = None        # default: latxa.components.tracking.resolve_tracking_uri()
    experiment: str | None = None          # default: latxa.components.tracking.DEFAULT_EXPERIMENT
    parent_run_id: str | None = None       # sweep run that groups variants
    register: bool = True                  # register the exported model in the MLflow Model Registry
    track: bool = True                     # False: no MLflow at all (benchmarks)
    # Overrides of the resolved config (CLI flags); None keeps the config's value.
    num_workers: int | None = None
    deepspeed_stage: int | None = None
    fsdp: str | None = None                # none | full_shard | hybrid_shard
    global_batch_size: int | None = None
    micro_batch_size: int | None = None
    max_steps: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int | None = None
    log_every: int | None = None
    lr: float | None = None
    seed: int | None = None
    saves_per_epoch: int | None = None
    checkpoint_minutes: float | None = None
    evals_per_epoch: int | None = None
    heldout: Path | None = None            # a folder of prepared held-out sets (one sub-folder each), or one set
    smoke: bool = False                    # the study config's smoke overrides (a few steps, short rows)
    backend: str | None = None             # "cpu" runs a GPU profile on CPU workers (the local rehearsal)
    pg_timeout_s: int | None = None        # torch.distributed process-group timeout (Ray's default is 1800 s)
    export: bool = True                    # False: train and checkpoint only (export and register are own steps)
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainPlan:
    """What the workers run: resolved and checked, JSON-able (it is Ray's ``train_loop_config``)."""

    variant: str
    data_dir: str
    out_dir: str
    model_dir: str
    run_name: str
    profile: str | None
    backend: str                  # cpu | gpu
    world_size: int
    gpus_per_worker: float
    cpus_per_worker: int
    deepspeed_stage: int
    offload_optimizer: bool
    seed: int
    seq_len: int
    num_rows: int
    micro_batch_size: int
    grad_accum: int
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    padded_rows_per_epoch: int
    shuffle: bool
    precision: str
    gradient_checkpointing: bool
    neftune_alpha: float
    max_grad_norm: float
    log_every: int
    checkpoint_every: int         # 0: no step-based checkpoints (saves per epoch, time-based and final ones only)
    keep_checkpoints: int
    lr: float
    scheduler: str
    warmup_ratio: float
    min_lr_ratio: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    data_cache_key: str | None
    trainable_tokens: int
    resolved_config: dict[str, Any]
    git_commit: str = "unknown"           # the code's commit, read once at planning time
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    bench_steps_to_skip: int = 0          # benchmarks: steps excluded from the tokens/s figure (warm-up)
    # Leonardo / production facts (issue "The study's jobs on Leonardo"): defaults keep older plans loadable.
    model_size: str = "8b"
    model_name: str | None = None         # the hub name (or folder) the run started from
    model_revision: str | None = None
    model_commit: str | None = None
    saves_per_epoch: int | None = None
    checkpoint_minutes: float | None = None
    evals_per_epoch: int = 0
    heldout: dict[str, str] = field(default_factory=dict)    # held-out set name -> prepared folder
    control_dir: str | None = None        # where a stop request (SIGUSR1) lands: out/control
    pg_timeout_s: int | None = None
    smoke: bool = False
    fsdp: str = "none"                    # none | full_shard | hybrid_shard (FSDP2 instead of DDP/DeepSpeed)
    fsdp_shard_size: int = 1              # ranks one model copy is sharded over
    prefetch_layers: int = 1
    bucket_mb: int = 50
    attention: str = "auto"
    loss_chunk_tokens: int = 1024
    tf32: bool = True
    fused_adamw: bool = True
    export_dtype: str = "bfloat16"
    export_max_shard_size: str = "5GB"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainPlan":
        return cls(**data)

    @property
    def ray_dir(self) -> Path:
        return Path(self.out_dir) / RAY_DIR

    def params(self) -> dict[str, Any]:
        """Every hyperparameter and run fact, flat, for MLflow params."""
        out = {k: v for k, v in asdict(self).items() if k not in ("resolved_config", "tracking_uri", "mlflow_run_id",
                                                                  "bench_steps_to_skip")}
        out["betas"] = f"{self.betas[0]},{self.betas[1]}"
        return out


def _model_ok(path: Path) -> None:
    if not path.is_dir():
        raise TrainConfigError(f"Model folder {path} does not exist; pass a folder or a Hugging Face name "
                               f"(e.g. meta-llama/Llama-3.1-8B), or build the tiny model with `latxa model tiny --out {path}`.")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise TrainConfigError(f"{path} has no config.json, so it is not a Hugging Face model folder.")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
        raise TrainConfigError(f"{path} has no tokenizer files; the exported model needs the tokenizer and chat template.")


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # torch missing or broken CUDA: no GPU for our purposes
        return 0


def read_run_file(out_dir: Path) -> dict | None:
    path = Path(out_dir) / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def plan_training(job: TrainJob) -> TrainPlan:
    """Validate a job and resolve it into a plan; raise :class:`TrainConfigError` (or another LatxaError)."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse
    from latxa.components.train.data import Schedule, inspect_packed

    resolved = load_config(job.config_path).resolve(job.profile, smoke=job.smoke)
    study, target = resolved.study, resolved.target
    variant = parse(job.variant, size=target.model_size)   # VariantError: unknown variant, one sentence
    if job.backend not in (None, "cpu", "gpu"):
        raise TrainConfigError(f"--backend must be cpu or gpu, not '{job.backend}'.")
    backend = job.backend or target.backend

    world = job.num_workers if job.num_workers is not None else (target.num_workers if backend == target.backend else 1)
    if world < 1:
        raise TrainConfigError(f"--num-workers must be at least 1 (got {world}).")
    stage = job.deepspeed_stage if job.deepspeed_stage is not None else target.deepspeed_stage
    if stage not in (0, 1, 2, 3):
        raise TrainConfigError(f"DeepSpeed ZeRO stage must be 0 (plain DDP), 1, 2 or 3 (got {stage}).")
    fsdp, shard_size = _sharding(job, target, world)
    if fsdp != "none":
        stage = 0
    if backend == "gpu" and not os.environ.get("RAY_ADDRESS"):
        # Joining a Ray cluster (SLURM allocation, KubeRay): its GPUs are checked once connected
        # (latxa.components.train.cluster.check_resources), not this driver host's.
        have = _gpu_count()
        if have == 0:
            raise TrainConfigError(
                f"Profile '{resolved.profile}' trains on GPUs but this machine has none; use --profile local here "
                f"or submit the job to the cluster with `latxa slurm submit`.")

    micro = job.micro_batch_size or study.train.micro_batch_size
    accum = study.train.grad_accum
    if job.global_batch_size is not None:
        per_step = world * micro
        if job.global_batch_size <= 0 or job.global_batch_size % per_step:
            raise TrainConfigError(
                f"Global batch size {job.global_batch_size} is not divisible by world size {world} x micro batch "
                f"{micro} = {per_step}; choose a multiple of {per_step}.")
        accum = job.global_batch_size // per_step
    global_batch = micro * accum * world

    data = inspect_packed(job.data_dir)
    if data.variant and data.variant not in (variant.code, variant.key) and not _same_mixture(job.data_dir, variant):
        raise TrainConfigError(
            f"Dataset {job.data_dir} was prepared for {data.variant}, not {variant.code}; prepare it with "
            f"`latxa data prepare --variant {variant.code}`.")
    if data.seq_len != study.data.seq_len:
        raise TrainConfigError(
            f"Dataset {job.data_dir} is packed to seq_len {data.seq_len} but profile '{resolved.profile}' trains at "
            f"seq_len {study.data.seq_len}; prepare the data with the same profile.")
    if data.num_rows < world:
        raise TrainConfigError(f"Dataset {job.data_dir} has {data.num_rows} rows, fewer than the {world} workers.")

    from latxa.components.hub import ModelNotFound, resolve_model

    model_name = model_revision = model_commit = None
    ref = job.model if job.model is not None else (str(job.model_dir) if job.model_dir is not None else None)
    if ref is None and backend == "cpu":
        from latxa.paths import tiny_model_dir

        model_dir = tiny_model_dir()
        if not (model_dir / "config.json").is_file():
            from latxa.components.tiny_model import ensure_tiny_model

            ensure_tiny_model(model_dir)
        if job.revision:
            raise TrainConfigError("--revision needs --model NAME (a Hugging Face name).")
    else:
        # A folder, or a hub name resolved offline from HF_HOME (default: the variant's backbone).
        try:
            found = resolve_model(ref or variant.backbone_info.hf_name, job.revision)
        except ModelNotFound as err:
            raise TrainConfigError(str(err)) from None
        model_dir = found.path
        model_name, model_revision, model_commit = found.name, found.revision, found.commit
    _model_ok(model_dir)
    model_cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    vocab = int(model_cfg.get("vocab_size", 0))
    if vocab and data.max_token_id >= vocab:
        raise TrainConfigError(
            f"Dataset {job.data_dir} holds token id {data.max_token_id} but the model {model_dir} has only {vocab} "
            f"embeddings; the data was tokenized with another tokenizer.")

    if backend == "gpu" and (target.gpu_memory_gib or target.host_memory_gib):
        _check_memory_plan(job, profile=resolved.profile, model_dir=model_dir, world=world, micro=micro, accum=accum,
                           fsdp=fsdp)

    out_dir = Path(job.out_dir)
    previous = read_run_file(out_dir)
    has_ray = (out_dir / RAY_DIR).is_dir() and any((out_dir / RAY_DIR).iterdir())
    if (previous or has_ray) and not job.resume:
        raise TrainConfigError(
            f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out.")
    from latxa.components.train.resume_guard import check_resume

    check_resume(out_dir, previous, variant, model_name or str(model_dir))

    train = study.train
    checkpoint_every = job.checkpoint_every or train.checkpoint_every
    sched = Schedule.build(data.num_rows, global_batch, train.epochs, job.max_steps or train.max_steps)
    precision = train.precision if backend == "gpu" else "fp32"
    heldout = _heldout_sets(job.heldout, data.seq_len)
    flat = resolved.flat_params()
    return TrainPlan(
        variant=variant.key, data_dir=str(Path(job.data_dir).resolve()), out_dir=str(out_dir.resolve()),
        model_dir=str(model_dir.resolve()), run_name=variant.run_name, profile=resolved.profile, backend=backend,
        world_size=world, gpus_per_worker=target.gpus_per_worker if backend == "gpu" else 0,
        cpus_per_worker=target.cpus_per_worker if backend == target.backend else 1,
        deepspeed_stage=stage, offload_optimizer=target.offload_optimizer and backend == "gpu",
        seed=job.seed if job.seed is not None else study.seed_for(variant.code), seq_len=data.seq_len,
        num_rows=data.num_rows,
        micro_batch_size=micro, grad_accum=accum, global_batch=global_batch, steps_per_epoch=sched.steps_per_epoch,
        total_steps=sched.total_steps, padded_rows_per_epoch=sched.padded_rows_per_epoch, shuffle=study.data.shuffle,
        precision=precision, gradient_checkpointing=train.gradient_checkpointing, neftune_alpha=train.neftune_alpha,
        max_grad_norm=train.max_grad_norm, log_every=job.log_every or train.log_every,
        checkpoint_every=checkpoint_every or 0, keep_checkpoints=job.keep_checkpoints or train.keep_checkpoints,
        lr=job.lr or study.optim.lr, scheduler=study.optim.scheduler, warmup_ratio=study.optim.warmup_ratio,
        min_lr_ratio=study.optim.min_lr_ratio, betas=tuple(study.optim.betas), eps=study.optim.eps,
        weight_decay=study.optim.weight_decay, data_cache_key=data.cache_key, trainable_tokens=data.trainable_tokens,
        resolved_config={**flat, "profile": resolved.profile}, tracking_uri=job.tracking_uri,
        git_commit=_git_commit(), model_size=variant.size, model_name=model_name or str(model_dir),
        model_revision=model_revision, model_commit=model_commit,
        saves_per_epoch=job.saves_per_epoch or train.saves_per_epoch,
        checkpoint_minutes=job.checkpoint_minutes or train.checkpoint_minutes,
        evals_per_epoch=(job.evals_per_epoch if job.evals_per_epoch is not None else train.evals_per_epoch) if heldout else 0,
        heldout=heldout, control_dir=str(out_dir.resolve() / CONTROL_DIR), pg_timeout_s=job.pg_timeout_s,
        smoke=job.smoke,
        fsdp=fsdp, fsdp_shard_size=shard_size, prefetch_layers=target.prefetch_layers,
        bucket_mb=target.bucket_mb, attention=train.attention, loss_chunk_tokens=train.loss_chunk_tokens,
        tf32=train.tf32, fused_adamw=train.fused_adamw,
        export_dtype=train.export_dtype, export_max_shard_size=train.export_max_shard_size,
    )


def _same_mixture(data_dir: Path, variant) -> bool:
    """A set prepared for another variant with the same sources (a shared prepared set) fits this one too."""
    try:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return sorted(manifest.get("sources") or []) == sorted(variant.sources)


def _heldout_sets(path: Path | None, seq_len: int) -> dict[str, str]:
    """Prepared held-out sets: ``path`` is one prepared folder, or a folder of them (one per set, e.g. aya_eu/)."""
    if path is None:
        return {}
    from latxa.components.train.data import inspect_packed

    path = Path(path)
    if (path / "manifest.json").is_file():
        sets = {path.name: path}
    elif path.is_dir():
        sets = {p.name: p for p in sorted(path.iterdir()) if (p / "manifest.json").is_file()}
    else:
        raise TrainConfigError(f"Held-out folder {path} does not exist; prepare it with `latxa study prepare`.")
    if not sets:   # a data config without held-out sets: nothing to evaluate during training
        print(f"[train] no held-out sets in {path}; no held-out loss during training", flush=True)
        return {}
    for folder in sets.values():
        info = inspect_packed(folder, check_rows=False)
        if info.seq_len != seq_len:
            raise TrainConfigError(f"Held-out set {folder} is packed to seq_len {info.seq_len}, the training data to "
                                   f"{seq_len}; prepare both with the same profile.")
    return {name: str(folder.resolve()) for name, folder in sets.items()}


def _check_memory_plan(job: TrainJob, *, profile: str, model_dir: Path, world: int, micro: int, accum: int,
                       fsdp: str) -> None:
    """Refuse, before any worker starts, a GPU run whose memory plan (``latxa train plan``) does not fit."""
    from latxa.components.train.memory import plan_memory, setup_from_config

    setup = setup_from_config(variant=job.variant, profile=profile, config_path=job.config_path,
                              model=str(model_dir), overrides={"world": world, "micro_batch": micro,
                                                               "grad_accum": accum, "fsdp": fsdp})
    plan_memory(setup)


def _sharding(job: TrainJob, target, world: int) -> tuple[str, int]:
    """FSDP strategy and shard group size: --fsdp wins, --deepspeed-stage N>0 turns the profile's FSDP off."""
    if job.fsdp is not None:
        fsdp = job.fsdp
    elif job.deepspeed_stage:
        fsdp = "none"
    else:
        fsdp = target.fsdp
    if fsdp not in ("none", "full_shard", "hybrid_shard"):
        raise TrainConfigError(f"--fsdp must be none, full_shard or hybrid_shard (got {fsdp}).")
    if fsdp != "none" and job.deepspeed_stage:
        raise TrainConfigError("--fsdp and --deepspeed-stage exclude each other; pass one of them.")
    if fsdp == "none":
        return fsdp, 1
    if fsdp == "full_shard":
        return fsdp, world
    size = min(target.fsdp_shard_size or target.gpus_per_node or world, world)
    if world % size:
        raise TrainConfigError(f"Hybrid sharding needs the worker count ({world}) to be a multiple of the shard group ({size}).")
    return fsdp, size


def _git_commit() -> str:
    from latxa.components.tracking import git_commit

    return git_commit()
