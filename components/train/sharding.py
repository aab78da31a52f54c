"""FSDP2 (``torch.distributed.fsdp.fully_shard``): meta-device construction, rank-0 load + broadcast, sharded checkpoints.

Why FSDP2 and not DeepSpeed ``zero.Init`` (docs/train.md, "Sharded loading"): it is what the reference ran
(FSDP HYBRID_SHARD for 8B, FULL_SHARD for 70B, ``cpu_ram_efficient_loading`` + ``sync_module_states``); a 2D
device mesh gives hybrid sharding (shard inside a node, replicate across nodes) with no extra library; the
model is built on the meta device and sharded before any weight exists, and weights arrive one tensor at a
time (rank 0 reads it from the safetensors file, broadcasts it, every rank keeps its slice), so no rank ever
holds more than its shard plus one tensor; the same code runs on CPU with gloo, which is what the tests use.

Layout: every ``LlamaDecoderLayer`` (the model's ``_no_split_modules``) is its own FSDP unit, the root holds
the embeddings, final norm and LM head. Parameters stay fp32 (the optimizer's master copy, sharded); on GPU the
forward and backward run in bf16 (``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

FULL_SHARD = "full_shard"
HYBRID_SHARD = "hybrid_shard"
DCP_DIR = "dcp"                 # checkpoint_dir/dcp: torch.distributed.checkpoint files (one per rank + .metadata)


def mesh_shape(strategy: str, world: int, shard_size: int) -> tuple[int, int]:
    """(replicate, shard) sizes: full sharding is (1, world); hybrid shards over ``shard_size`` ranks (a node)."""
    if strategy == FULL_SHARD:
        return 1, world
    if strategy != HYBRID_SHARD:
        raise ValueError(f"unknown FSDP strategy {strategy!r}")
    if shard_size < 1 or world % shard_size:
        raise ValueError(f"hybrid sharding needs the world size ({world}) to be a multiple of the shard group ({shard_size})")
    return world // shard_size, shard_size


def device_mesh(strategy: str, world: int, shard_size: int, device_type: str):
    from torch.distributed.device_mesh import init_device_mesh

    replicate, shard = mesh_shape(strategy, world, shard_size)
    if strategy == FULL_SHARD:
        return init_device_mesh(device_type, (shard,), mesh_dim_names=("shard",))
    return init_device_mesh(device_type, (replicate, shard), mesh_dim_names=("replicate", "shard"))


def build_on_meta(model_dir: str, attn_implementation: str):
    """The model's modules with meta tensors (no memory), from its config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    config.use_cache = False
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    return model


def shard(model, mesh, *, bf16: bool, prefetch: int = 1, reshard_after_forward: bool = True):
    """Apply FSDP2 per decoder layer and at the root; explicit forward/backward prefetch of ``prefetch`` layers."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    layers = list(model.model.layers)
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    if prefetch > 0:
        for i, layer in enumerate(layers):
            nxt = layers[i + 1:i + 1 + prefetch]
            prev = layers[max(0, i - prefetch):i][::-1]
            if nxt:
                layer.set_modules_to_forward_prefetch(nxt)
            if prev:
                layer.set_modules_to_backward_prefetch(prev)
    return model


def _reset_rotary(model) -> None:
    """Non-persistent buffers (RoPE's inv_freq) are not in the checkpoint: compute them again after to_empty."""
    for module in model.modules():
        if hasattr(module, "inv_freq") and hasattr(module, "config"):
            fresh = type(module)(config=module.config)
            for name, buf in fresh.named_buffers(recurse=False):
                getattr(module, name).copy_(buf)
            if hasattr(fresh, "attention_scaling"):
                module.attention_scaling = fresh.attention_scaling


def _tied_sources(model) -> dict[str, str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    if not isinstance(tied, dict) or not getattr(model.config, "tie_word_embeddings", False):
        return {}
    return dict(tied)


def load_sharded(model, model_dir: str, device, *, rank: int) -> None:
    """Fill a sharded (meta-built) model: rank 0 reads each tensor, broadcasts it, every rank keeps its slice."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor

    from latxa.components.train.weights import read_tensor, tensor_index

    model.to_empty(device=device)
    index = tensor_index(model_dir) if rank == 0 else {}
    tied = _tied_sources(model)
    with torch.no_grad():
        for name, param in model.named_parameters():   # shared (tied) parameters come once
            full = torch.empty(param.shape, dtype=param.dtype, device=device)
            if rank == 0:
                key = name if name in index else tied.get(name, name)
                if key not in index:
                    raise KeyError(f"{model_dir} has no tensor {name}")
                full.copy_(read_tensor(*index[key]))
            dist.broadcast(full, src=0)
            if isinstance(param, DTensor):
                local = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
                param.to_local().copy_(local.to_local())
            else:
                param.copy_(full)
            del full
        _reset_rotary(model)


def save_checkpoint(folder: Path, model, optimizer) -> None:
    """Sharded model + optimizer state with torch.distributed.checkpoint (every rank writes its own file)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.save(state, checkpoint_id=str(folder / DCP_DIR))


def load_checkpoint(folder: Path, model, optimizer) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=str(folder / DCP_DIR))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])


def checkpoint_tensors(folder: Path) -> dict[str, tuple[tuple[int, ...], object]]:
    """Model tensor names in a DCP checkpoint -> (full shape, dtype), read from its metadata only."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta = FileSystemReader(str(folder / DCP_DIR)).read_metadata()
    out = {}
    for key, md in meta.state_dict_metadata.items():
        if key.startswith("model.") and isinstance(md, TensorStorageMetadata):
            out[key[len("model."):]] = (tuple(md.size), md.properties.dtype)
    return out


def read_checkpoint_tensor(folder: Path, name: str, shape, dtype):
    """One full tensor of a DCP checkpoint, assembled from the ranks' files without a process group, in ``dtype``
    (each stored chunk is converted as it is copied in)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import DefaultLoadPlanner

    out = {f"model.{name}": torch.empty(shape, dtype=dtype)}
    with warnings.catch_warnings():      # "torch.distributed is ... uninitialized": exactly the intent here
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(out, checkpoint_id=str(folder / DCP_DIR), planner=DefaultLoadPlanner(allow_partial_load=True),
                 no_dist=True)
    return out[f"model.{name}"]
