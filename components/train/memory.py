"""The memory and time plan of a training configuration (``latxa train plan``), before anything starts.

Per GPU: weights, gradients, optimizer state, activations, logits and buffers, in GiB, for the profile's
sharding (FSDP full/hybrid, DeepSpeed ZeRO 1/2/3 or DDP); per node: host memory; plus tokens per step,
steps and an estimated step time from a stated MFU. A configuration that does not fit is refused with one
sentence naming the budget and the largest term. The arithmetic is written out in docs/train.md.

Assumptions (stated, not measured): bf16 activations (fp32 on CPU) with FlashAttention-style attention (no
L^2 term) unless the masked path is chosen; a Python + torch + CUDA runtime of ``RUNTIME_GIB`` per rank and
``RAY_GIB`` per node on the host; ``CONTEXT_GIB`` per GPU for the CUDA context and NCCL.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from latxa.errors import LatxaError

GIB = 2**30
RUNTIME_GIB = 3.0       # one rank's Python + torch + CUDA + transformers, resident on the host
RAY_GIB = 4.0           # raylet, GCS (head node), object store in use, per node
CONTEXT_GIB = 1.0       # CUDA context + NCCL buffers per GPU


class PlanRefused(LatxaError):
    """A configuration that does not fit its budget (one sentence)."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    @property
    def layer_params(self) -> int:
        h = self.hidden
        return h * (2 * h + 2 * self.kv_dim) + 3 * h * self.intermediate + 2 * h

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embed_params
        return self.embed_params + head + self.layers * self.layer_params + self.hidden


_8B = ModelShape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256)
_70B = ModelShape(hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=28672, vocab=128256)
#: The study's backbones (their config.json values), so a plan needs no weights on disk.
SHAPES: dict[str, ModelShape] = {
    "meta-llama/Llama-3.1-8B": _8B, "meta-llama/Llama-3.1-8B-Instruct": _8B, "HiTZ/Latxa-Llama-3.1-8B": _8B,
    "meta-llama/Llama-3.1-70B": _70B, "meta-llama/Llama-3.1-70B-Instruct": _70B,
}


def model_shape(name_or_dir: str) -> ModelShape:
    path = Path(name_or_dir)
    if (path / "config.json").is_file():
        c = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return ModelShape(hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=c["num_attention_heads"],
                          kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
                          intermediate=c["intermediate_size"], vocab=c["vocab_size"],
                          tied=bool(c.get("tie_word_embeddings", False)))
    if name_or_dir in SHAPES:
        return SHAPES[name_or_dir]
    known = ", ".join(SHAPES)
    raise PlanRefused(f"Unknown model {name_or_dir!r}: give a folder with config.json or one of {known}.")


@dataclass
class Setup:
    """What the plan depends on (from the resolved profile and study config, or CLI overrides)."""

    profile: str
    model: str
    world: int
    nodes: int
    shard_size: int                # ranks one model copy is sharded over (FSDP)
    fsdp: str                      # none | full_shard | hybrid_shard
    deepspeed_stage: int
    offload_optimizer: bool
    micro_batch: int
    grad_accum: int
    seq_len: int
    epochs: float
    gradient_checkpointing: bool
    precision: str
    attention: str
    loss_chunk_tokens: int
    prefetch_layers: int
    bucket_mb: int
    gpu_memory_gib: float
    host_memory_gib: float
    gpu_peak_tflops: float
    backend: str
    mfu: float = 0.40
    doc_len: int = 2048            # mean packed document length: the attention FLOPs of varlen attention
    rows: int | None = None        # packed rows per epoch (from --data or --rows); None: steps not planned


def _gib(x: float) -> float:
    return round(x / GIB, 2)


def plan_memory(s: Setup) -> dict:
    """The plan as a JSON-able dict; raises :class:`PlanRefused` if GPU or host memory does not fit."""
    m = model_shape(s.model)
    n, layer = m.params, m.layer_params
    gpu = s.backend == "gpu"
    act_b = 2 if s.precision in ("bf16", "fp16") else 4
    tokens = s.micro_batch * s.seq_len
    w = s.world
    terms: dict[str, float] = {}
    if s.fsdp != "none":
        k = s.shard_size
        terms["weights"] = 4 * n / k                       # fp32 master, sharded
        terms["gradients"] = 4 * n / k                     # fp32 (reduce_dtype), sharded
        terms["optimizer"] = 8 * n / k                     # AdamW moments, fp32, sharded
        root = m.embed_params * (1 if m.tied else 2)
        buffers = 2 * root + layer * (2 * (1 + s.prefetch_layers) + 4)   # gathered bf16 root/layers + one layer's grads
    elif s.deepspeed_stage:
        z = s.deepspeed_stage
        terms["weights"] = 2 * n / (w if z == 3 else 1)    # bf16 working copy
        terms["gradients"] = 2 * n / (w if z >= 2 else 1)
        terms["optimizer"] = 0.0 if s.offload_optimizer else 12 * n / w   # fp32 master + moments
        buffers = 4 * s.bucket_mb * 1e6 * 2 + (2 * layer * (1 + s.prefetch_layers) if z == 3 else 0)
    else:
        terms["weights"], terms["gradients"], terms["optimizer"] = 4 * n, 4 * n, 8 * n
        buffers = 2 * s.bucket_mb * 2**20
    per_token_layer = (6 * m.hidden + 2 * m.kv_dim + 4 * m.intermediate) * act_b
    working = tokens * per_token_layer
    if s.attention == "masked_sdpa":                      # 4D mask + materialised scores and probabilities
        working += s.micro_batch * s.seq_len**2 * (act_b + m.heads * 3 * act_b)
    if s.gradient_checkpointing:
        # the checkpointed layer inputs, plus one layer recomputed and its backward
        terms["activations"] = m.layers * tokens * m.hidden * act_b + 2 * working
    else:
        terms["activations"] = m.layers * working
    chunk = s.loss_chunk_tokens or tokens
    # one chunk: fp32 logits, their gradient, the matmul output; plus the head's gradient, accumulated in an fp32
    # V x H buffer from each chunk's product (fused linear cross-entropy)
    terms["logits"] = min(chunk, tokens) * m.vocab * (4 + 4 + act_b) + m.vocab * m.hidden * (4 + act_b)
    terms["buffers"] = buffers + CONTEXT_GIB * GIB * gpu
    gpu_total = sum(terms.values())

    ranks_per_node = max(1, w // max(s.nodes, 1))
    host: dict[str, float] = {"runtime": ranks_per_node * RUNTIME_GIB * GIB, "ray": RAY_GIB * GIB}
    if s.fsdp != "none":
        largest = max(m.embed_params, m.intermediate * m.hidden) * (2 + 4)   # rank 0: one bf16 tensor + fp32 copy
        host["loading"] = largest
    else:
        host["loading"] = ranks_per_node * n * (2 if s.deepspeed_stage else 4)   # every rank loads the whole model
    if s.offload_optimizer and s.deepspeed_stage:
        host["offloaded_optimizer"] = ranks_per_node * (12 + 4) * n / w     # master + moments + fp32 grads
    if not gpu:                                     # CPU training: the GPU terms live in host memory
        host["training_state"] = ranks_per_node * gpu_total
    host_total = sum(host.values())

    global_rows = s.micro_batch * s.grad_accum * w
    tokens_per_step = global_rows * s.seq_len
    flops_per_token = 6 * n + 6 * m.layers * m.hidden * min(s.doc_len, s.seq_len)
    step_s = tokens_per_step * flops_per_token / (w * s.gpu_peak_tflops * 1e12 * s.mfu)
    steps = math.ceil(s.epochs * math.ceil(s.rows / global_rows)) if s.rows else None
    out = {
        "profile": s.profile, "model": s.model, "params": n, "world_size": w, "nodes": s.nodes,
        "sharding": {"fsdp": s.fsdp, "shard_group": s.shard_size, "deepspeed_stage": s.deepspeed_stage,
                     "offload_optimizer": s.offload_optimizer},
        "gpu_gib_per_device": _gib(gpu_total) if gpu else 0.0,
        "gpu_budget_gib": s.gpu_memory_gib,
        "gpu": {k: _gib(v) for k, v in terms.items()} if gpu else {},
        "host_gib_per_node": _gib(host_total), "host_budget_gib": s.host_memory_gib,
        "host": {k: _gib(v) for k, v in host.items()},
        "tokens_per_micro_batch": tokens, "global_batch_rows": global_rows, "tokens_per_step": tokens_per_step,
        "steps": steps, "model_flops_per_token": flops_per_token, "mfu_assumed": s.mfu,
        "gpu_peak_tflops": s.gpu_peak_tflops, "step_time_s": round(step_s, 2),
        "hours": round(steps * step_s / 3600, 2) if steps else None, "setup": asdict(s),
    }
    _refuse_if_over(out, terms, host, s, gpu)
    return out


def _refuse_if_over(out: dict, terms: dict, host: dict, s: Setup, gpu: bool) -> None:
    if gpu and s.gpu_memory_gib and out["gpu_gib_per_device"] > s.gpu_memory_gib:
        name, value = max(terms.items(), key=lambda kv: kv[1])
        raise PlanRefused(
            f"Profile '{s.profile}' does not fit: {out['gpu_gib_per_device']:.1f} GiB per GPU against a budget of "
            f"{s.gpu_memory_gib:g} GiB, the largest term being {name} at {_gib(value):.1f} GiB.")
    if s.host_memory_gib and out["host_gib_per_node"] > s.host_memory_gib:
        name, value = max(host.items(), key=lambda kv: kv[1])
        raise PlanRefused(
            f"Profile '{s.profile}' does not fit: {out['host_gib_per_node']:.1f} GiB of host memory per node against "
            f"a budget of {s.host_memory_gib:g} GiB, the largest term being {name} at {_gib(value):.1f} GiB.")


def setup_from_config(*, variant: str, profile: str, config_path=None, model: str | None = None,
                      rows: int | None = None, overrides: dict | None = None) -> Setup:
    """A :class:`Setup` from the study config and a profile; ``overrides`` replace any of its fields."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    v = parse(variant)
    r = load_config(config_path).resolve(profile)
    t, tr = r.target, r.study.train
    fsdp = t.fsdp
    if model is None and not t.plan_model and t.backend == "cpu":   # what `latxa train` uses on CPU profiles
        from latxa.components.tiny_model import ensure_tiny_model

        model = str(ensure_tiny_model())
    setup = Setup(
        profile=profile, model=model or t.plan_model or v.backbone_info.hf_name, world=t.num_workers,
        nodes=t.nodes, shard_size=t.shard_group_size, fsdp=fsdp, deepspeed_stage=t.deepspeed_stage,
        offload_optimizer=t.offload_optimizer, micro_batch=tr.micro_batch_size, grad_accum=tr.grad_accum,
        seq_len=r.study.data.seq_len, epochs=tr.epochs, gradient_checkpointing=tr.gradient_checkpointing,
        precision=tr.precision if t.backend == "gpu" else "fp32", attention=tr.attention,
        loss_chunk_tokens=tr.loss_chunk_tokens, prefetch_layers=t.prefetch_layers, bucket_mb=t.bucket_mb,
        gpu_memory_gib=t.gpu_memory_gib, host_memory_gib=t.host_memory_gib, gpu_peak_tflops=t.gpu_peak_tflops,
        backend=t.backend, rows=rows)
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(setup, key, value)
    if setup.fsdp == "full_shard":
        setup.shard_size = setup.world
    elif setup.fsdp == "none":
        setup.shard_size = 1
    return setup
