"""Typed study configuration (pydantic + YAML).

One file holds the study's hyperparameters and the profiles that adapt them to
a target (``local`` for 2 CPU cores, ``leonardo-8b``/``leonardo-70b``).
Unknown keys and wrong types are errors that name the key. Types are strict (``epochs: true`` or
``seq_len: 8192.0`` are errors, not 1.0 and 8192), numbers finite, and every count bounded, so a value that
would make training allocate terabytes or loop forever is refused here, in one sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from latxa.errors import LatxaError
from latxa.yamlfile import load_yaml_file

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "study.yaml"


class ConfigError(LatxaError, ValueError):
    """A configuration file that cannot be used; the message is one readable sentence."""


# Strict scalars: YAML's true is not the number 1, 8192.0 is not an integer, "yes" is not a boolean. Floats
# accept integers (``epochs: 4``) but never inf or nan.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]
MAX_SEQ_LEN = 131072            # Llama 3.1's context window; longer rows only allocate memory
MAX_COUNT = 2**31 - 1           # upper bound of every other count (batch sizes, steps, nodes, ...)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    seq_len: Int = Field(8192, ge=2, le=MAX_SEQ_LEN)
    train_on: Literal["assistant", "all"] = "assistant"
    shuffle: Bool = True


class TrainConfig(_Strict):
    micro_batch_size: Int = Field(2, gt=0, le=65536)
    grad_accum: Int = Field(1, gt=0, le=65536)
    epochs: Float = Field(4, gt=0, le=10000)
    max_steps: Int | None = Field(None, gt=0, le=MAX_COUNT)
    neftune_alpha: Float = Field(5.0, ge=0)
    gradient_checkpointing: Bool = True
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    max_grad_norm: Float = Field(1.0, gt=0)
    log_every: Int = Field(1, gt=0, le=MAX_COUNT)
    # Checkpoints: the reference's saves per epoch (HF Trainer: every ceil(total_steps / (saves x epochs)) steps),
    # optionally every N steps too, and a time-based one every M minutes of training (a 24 h job never loses more
    # than M minutes); the last `keep_checkpoints` epoch saves are kept, plus always the latest checkpoint.
    saves_per_epoch: Int | None = Field(None, gt=0, le=10000)
    checkpoint_every: Int | None = Field(None, gt=0, le=MAX_COUNT)
    checkpoint_minutes: Float | None = Field(None, gt=0, le=10**6)
    keep_checkpoints: Int = Field(2, gt=0, le=10000)
    # Held-out loss (the reference's eval_loss on AYA and Magpie-Ultra-1K) this many times per epoch; 0 = never.
    evals_per_epoch: Int = Field(0, ge=0, le=10000)
    attention: Literal["auto", "flash_attention_2", "packed_sdpa", "masked_sdpa"] = Field(
        "auto", description="packed rows: auto = FlashAttention-2 varlen on GPU when installed, else per-document SDPA; "
        "masked_sdpa = the 4D block-diagonal mask (reference path)")
    loss_chunk_tokens: Int = Field(1024, ge=0, le=MAX_COUNT,
                                   description="tokens per chunk of the linear cross-entropy; 0 = one chunk")
    tf32: Bool = Field(True, description="TF32 matmuls on GPU for what still runs in fp32 (the reference had tf32: false)")
    fused_adamw: Bool = Field(True, description="torch's fused AdamW on GPU (the reference's adamw_torch_fused)")
    export_dtype: Literal["bfloat16", "float32", "float16"] = "bfloat16"
    export_max_shard_size: str = Field("5GB", description="largest safetensors shard of the export")


class OptimConfig(_Strict):
    lr: Float = Field(1e-5, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: Float = Field(0.33, ge=0, le=1)
    warmup_ratio: Float = Field(0.1, ge=0, lt=1)
    betas: tuple[Float, Float] = (0.9, 0.95)
    eps: Float = Field(1e-8, gt=0)
    weight_decay: Float = Field(0.1, ge=0)


class Profile(_Strict):
    description: str = ""
    backend: Literal["cpu", "gpu"] = "cpu"
    nodes: Int = Field(1, gt=0, le=100000)
    gpus_per_node: Int = Field(0, ge=0, le=1024)
    num_workers: Int = Field(1, gt=0, le=MAX_COUNT)
    gpus_per_worker: Float = Field(0, ge=0, le=1024, description="GPUs Ray reserves per training worker")
    cpus_per_worker: Int = Field(1, gt=0, le=1024, description="CPUs Ray reserves per worker; also its OMP/MKL threads")
    deepspeed_stage: Literal[0, 1, 2, 3] = 0
    offload_optimizer: Bool = False
    model_size: Literal["8b", "70b"] = Field("8b", description="which backbones the profile trains (registry sizes)")
    fsdp: Literal["none", "full_shard", "hybrid_shard"] = Field(
        "none", description="FSDP2 sharding (instead of DDP/DeepSpeed): full_shard over all ranks, or hybrid_shard "
        "inside groups of fsdp_shard_size ranks (a node) replicated across groups")
    fsdp_shard_size: Int | None = Field(None, gt=0, le=MAX_COUNT, description="hybrid_shard group size (default gpus_per_node)")
    prefetch_layers: Int = Field(1, ge=0, le=1024, description="FSDP: decoder layers all-gathered ahead in forward and backward")
    bucket_mb: Int = Field(50, gt=0, le=1_000_000, description="DDP bucket_cap_mb and DeepSpeed reduce/all-gather/prefetch buckets")
    gpu_memory_gib: Float = Field(0, ge=0, description="memory of one GPU, for `latxa train plan` (0: not planned)")
    host_memory_gib: Float = Field(0, ge=0, description="usable host memory of one node, for `latxa train plan`")
    gpu_peak_tflops: Float = Field(312.0, gt=0, description="dense bf16 peak of one GPU (A100: 312, H100 SXM: 989)")
    plan_model: str | None = Field(None, description="model whose shape `latxa train plan` assumes without --model")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("deepspeed_stage", mode="before")
    @classmethod
    def _stage_not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # True == 1 in Python, so the Literal alone would take `true` for stage 1
            raise ValueError("deepspeed_stage is 0, 1, 2 or 3, not a boolean")
        return v

    @model_validator(mode="after")
    def _gpu_consistency(self) -> "Profile":
        if self.backend == "gpu" and self.nodes * self.gpus_per_node != self.num_workers:
            raise ValueError(
                f"num_workers ({self.num_workers}) must equal nodes x gpus_per_node "
                f"({self.nodes} x {self.gpus_per_node}) for a GPU profile"
            )
        if self.backend == "gpu" and self.gpus_per_worker <= 0:
            raise ValueError("gpus_per_worker must be above 0 for a GPU profile")
        if self.fsdp != "none" and self.deepspeed_stage:
            raise ValueError("fsdp and deepspeed_stage exclude each other: set deepspeed_stage 0 with fsdp")
        if self.fsdp == "hybrid_shard" and self.num_workers % self.shard_group_size:
            raise ValueError(f"num_workers ({self.num_workers}) must be a multiple of the hybrid shard group "
                             f"({self.shard_group_size})")
        return self

    @property
    def shard_group_size(self) -> int:
        """Ranks one copy of the model is sharded over (all of them unless hybrid sharding)."""
        if self.fsdp == "hybrid_shard":
            return self.fsdp_shard_size or self.gpus_per_node or self.num_workers
        return self.num_workers


class StudyConfig(_Strict):
    seed: Int = Field(33, ge=0, le=2**32 - 1)
    # Per-variant seeds where the reference deviated from `seed` (its exp_2_010 ran with 42).
    variant_seeds: dict[str, Int] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    optim: OptimConfig = OptimConfig()
    # Overrides for a smoke run of any profile (`--smoke`: the rehearsal): a few steps at a short seq_len.
    smoke: dict[str, dict[str, Any]] = Field(default_factory=dict)
    profiles: dict[str, Profile] = Field(default_factory=dict)

    def seed_for(self, variant_code: str) -> int:
        return self.variant_seeds.get(variant_code, self.seed)

    def resolve(self, profile: str | None, smoke: bool = False) -> "ResolvedConfig":
        """Apply a profile's overrides (then the smoke overrides, with ``smoke``); the result is what a run uses."""
        if profile is None:
            prof, merged = Profile(), self.model_dump()
        elif profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"Unknown profile '{profile}' (known profiles: {known}).")
        else:
            prof = self.profiles[profile]
            merged = self.model_dump()
            _apply(merged, prof.overrides, f"Profile '{profile}'")
        if smoke:
            _apply(merged, self.smoke, "The smoke section")
        where = f"profile '{profile}'" + (" (smoke)" if smoke else "")
        study = self if profile is None and not smoke else _validate(merged, where)
        return ResolvedConfig(profile=profile, study=study, target=prof, smoke=smoke)

    @property
    def global_batch_size(self) -> int:
        return self.train.micro_batch_size * self.train.grad_accum


def _apply(merged: dict, overrides: dict[str, dict[str, Any]], who: str) -> None:
    for section, values in overrides.items():
        if section not in ("data", "train", "optim"):
            raise ConfigError(f"{who} overrides unknown section '{section}' (use data, train or optim).")
        merged[section].update(values)


class ResolvedConfig(BaseModel):
    """A study config with one profile applied."""

    model_config = ConfigDict(extra="forbid")
    profile: str | None
    study: StudyConfig
    target: Profile
    smoke: bool = False

    @property
    def world_size(self) -> int:
        return self.target.num_workers

    @property
    def global_batch_size(self) -> int:
        return self.study.global_batch_size * self.world_size

    def flat_params(self) -> dict[str, Any]:
        """Flat ``section.key -> value`` view, for MLflow params."""
        out: dict[str, Any] = {"seed": self.study.seed, "profile": self.profile, "world_size": self.world_size}
        for section in ("data", "train", "optim"):
            for key, value in getattr(self.study, section).model_dump().items():
                out[f"{section}.{key}"] = value
        out["deepspeed_stage"] = self.target.deepspeed_stage
        out["fsdp"] = self.target.fsdp
        return out


def _describe(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"Unknown key '{key}' in {where}."
    return f"Invalid value for '{key}' in {where}: {first['msg'].removeprefix('Value error, ')}."


def _validate(data: Any, where: str) -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a YAML mapping, not {type(data).__name__}.")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, where)) from None


def load_config(path: str | Path | None = None) -> StudyConfig:
    """Load and validate a study config (the shipped default when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_CONFIG
    return _validate(load_yaml_file(path, ConfigError, "Config file"), str(path))
