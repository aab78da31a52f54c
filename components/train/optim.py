"""Optimizer, learning-rate schedule and DeepSpeed config, all derived from the study config (via a TrainPlan)."""

from __future__ import annotations

import math
from typing import Any


def warmup_steps(plan) -> int:
    return int(math.ceil(plan.warmup_ratio * plan.total_steps))


def lr_factor(step: int, total: int, warmup: int, kind: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based), as Axolotl's cosine-with-min-lr.

    Linear warm-up from 0 over ``warmup`` steps, then cosine (or linear) decay to ``min_lr_ratio`` x peak at
    the last step; ``constant`` keeps the peak after warm-up.
    """
    if warmup and step < warmup:
        return step / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        decay = 1.0 - progress
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases and norm weights), as HF Trainer/Axolotl do."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, plan):
    """AdamW with the study's settings: fused on GPU (``adamw_torch_fused``), DeepSpeed's CPU Adam when ZeRO
    offloads the optimizer to host memory on GPU nodes, torch's default (foreach) implementation on CPU."""
    import torch

    groups = param_groups(model, plan.weight_decay)
    gpu = plan.backend == "gpu"
    if gpu and plan.offload_optimizer and plan.deepspeed_stage > 0:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=plan.lr, betas=tuple(plan.betas), eps=plan.eps,
                                weight_decay=plan.weight_decay, adamw_mode=True)
    fused = gpu and getattr(plan, "fused_adamw", True)
    return torch.optim.AdamW(groups, lr=plan.lr, betas=tuple(plan.betas), eps=plan.eps,
                             weight_decay=plan.weight_decay, **({"fused": True} if fused else {}))


def build_scheduler(optimizer, plan):
    import torch

    warm = warmup_steps(plan)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, plan.total_steps, warm, plan.scheduler, plan.min_lr_ratio))


def deepspeed_config(plan) -> dict[str, Any]:
    """A DeepSpeed config consistent with the plan's batch arithmetic (train_batch = micro x accum x world).

    The optimizer and scheduler are the client's (torch AdamW + the study's schedule) so that CPU runs need no
    compiled DeepSpeed ops; ``offload_optimizer`` moves ZeRO's optimizer state to host memory (GPU profiles).
    """
    stage = plan.deepspeed_stage
    bucket = int(getattr(plan, "bucket_mb", 50) * 1e6)        # elements, as DeepSpeed counts them
    zero: dict[str, Any] = {"stage": stage, "contiguous_gradients": True, "overlap_comm": plan.backend == "gpu",
                            "reduce_bucket_size": bucket, "allgather_bucket_size": bucket}
    if stage == 3:
        zero.update({"stage3_prefetch_bucket_size": bucket, "stage3_param_persistence_threshold": 1e5,
                     "stage3_gather_16bit_weights_on_model_save": False})
    if plan.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": plan.backend == "gpu"}
    return {
        "train_batch_size": plan.global_batch,
        "train_micro_batch_size_per_gpu": plan.micro_batch_size,
        "gradient_accumulation_steps": plan.grad_accum,
        "gradient_clipping": plan.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": plan.precision == "bf16"},
        "fp16": {"enabled": plan.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,     # the client optimizer is used (DeepSpeedCPUAdam when offloading)
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
