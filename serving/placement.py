"""The vLLM models' GPU placement: does the study's serving configuration fit a stated GPU budget?

Each vLLM model takes ``tensor_parallel_size`` GPUs on one node at ``gpu_fraction`` of each (vLLM's
``gpu_memory_utilization``: weights, activations and KV cache together). Two fractions of 0.49 share one GPU, as
the study ran 16 variants on one 8-GPU host. The plan packs tensor-parallel models first (whole GPUs on one
node), then the fractional ones best-fit; memory is checked too: bf16 weights per GPU plus the KV cache of one
full-length sequence must fit the fraction of the GPU's memory, with room left for activations.

:func:`llm_configs` renders the same models as Ray Serve LLM ``LLMConfig`` mappings (the ``llm`` application of
the RayService builds them from the serving YAML, so the two never drift).
"""

from __future__ import annotations

from pathlib import Path

from latxa.serving.registry import CONFIGS, ModelSpec, ServeConfig, ServeConfigError

BYTES = {"bfloat16": 2, "float16": 2, "auto": 2}
ACTIVATION_GB = 2.0   # CUDA graphs, activations and the sampler's buffers, per GPU (a conservative allowance)


def memory_need_gb(spec: ModelSpec) -> float:
    """GB one GPU of this model needs: its share of the weights + one max_model_len sequence's KV cache."""
    v = spec.vllm
    b = BYTES[v.dtype]
    weights = v.params_b * 1e9 * b / v.tensor_parallel_size
    kv = 2 * v.layers * v.kv_heads * v.head_dim * b * v.max_model_len / v.tensor_parallel_size
    return (weights + kv) / 1e9 + ACTIVATION_GB


def plan_placement(cfg: ServeConfig) -> dict:
    """{"nodes": {node: [[models on GPU 0], ...]}, "used_gpus", "budget_gpus"}; ServeConfigError if it does not fit."""
    if cfg.placement is None:
        raise ServeConfigError("the serving config states no placement budget (placement: nodes: [...]).")
    budget = cfg.placement
    free = {n.name: [1.0] * n.gpus for n in budget.nodes}
    plan: dict[str, list[list[str]]] = {n.name: [[] for _ in range(n.gpus)] for n in budget.nodes}
    models = [m for m in cfg.models if m.kind == "vllm"]
    for m in models:
        need = memory_need_gb(m)
        have = m.vllm.gpu_fraction * budget.gpu_memory_gb
        if need > have:
            raise ServeConfigError(f"model {m.name!r} needs about {need:.1f} GB per GPU but gpu_fraction "
                                   f"{m.vllm.gpu_fraction} of a {budget.gpu_memory_gb:g} GB GPU is {have:.1f} GB.")
    eps = 1e-9
    for m in sorted(models, key=lambda s: (-s.vllm.tensor_parallel_size, -s.vllm.gpu_fraction, s.name)):
        v = m.vllm
        for _ in range(v.min_replicas):
            placed = False
            if v.tensor_parallel_size > 1:
                for node, gpus in free.items():
                    idle = [i for i, f in enumerate(gpus) if f >= v.gpu_fraction - eps]
                    if len(idle) >= v.tensor_parallel_size:
                        for i in idle[:v.tensor_parallel_size]:
                            gpus[i] -= v.gpu_fraction
                            plan[node][i].append(m.name)
                        placed = True
                        break
            else:
                fits = [(f - v.gpu_fraction, node, i) for node, gpus in free.items() for i, f in enumerate(gpus)
                        if f >= v.gpu_fraction - eps]
                if fits:
                    _, node, i = min(fits)   # best fit: the fullest GPU that still takes it
                    free[node][i] -= v.gpu_fraction
                    plan[node][i].append(m.name)
                    placed = True
            if not placed:
                total = sum(n.gpus for n in budget.nodes)
                raise ServeConfigError(f"model {m.name!r} (tensor_parallel_size {v.tensor_parallel_size}, "
                                       f"gpu_fraction {v.gpu_fraction}) does not fit the placement budget of {total} "
                                       "GPUs left after the models before it.")
    used = sum(1 for gpus in plan.values() for g in gpus if g)
    return {"nodes": plan, "used_gpus": used, "budget_gpus": sum(n.gpus for n in budget.nodes),
            "accelerator_type": budget.accelerator_type, "gpu_memory_gb": budget.gpu_memory_gb}


def chat_template_text(name: str | None) -> str | None:
    if name is None:
        return None
    shipped = CONFIGS / f"{name}.jinja"
    path = shipped if shipped.is_file() else Path(name)
    if not path.is_file():
        raise ServeConfigError(f"chat template {name!r} is neither shipped ({CONFIGS}) nor a file.")
    return path.read_text(encoding="utf-8")


def llm_configs(cfg: ServeConfig) -> list[dict]:
    """The vLLM models as Ray Serve LLM ``LLMConfig`` mappings (``build_openai_app({"llm_configs": ...})``)."""
    accelerator = cfg.placement.accelerator_type if cfg.placement else None
    out = []
    for m in cfg.models:
        if m.kind != "vllm":
            continue
        v = m.vllm
        engine = {"tensor_parallel_size": v.tensor_parallel_size, "max_model_len": v.max_model_len,
                  "dtype": v.dtype, "gpu_memory_utilization": v.gpu_fraction}
        if v.revision:
            engine["revision"] = v.revision
        template = chat_template_text(v.chat_template)
        if template is not None:
            engine["chat_template"] = template
        engine.update(v.engine_kwargs)
        gpu = v.gpu_fraction if v.tensor_parallel_size == 1 else 1.0
        conf = {"model_loading_config": {"model_id": m.remote_model or m.name, "model_source": v.model_source},
                "engine_kwargs": engine,
                "placement_group_config": {"bundles": [{"GPU": gpu, "CPU": 1}] * v.tensor_parallel_size,
                                           "strategy": "STRICT_PACK"},
                "deployment_config": {"autoscaling_config": {"min_replicas": v.min_replicas,
                                                             "max_replicas": v.max_replicas}}}
        if accelerator:
            conf["accelerator_type"] = accelerator
        out.append(conf)
    return out


def validate_llm_configs(configs: list[dict]) -> int:
    """Validate each mapping with Ray Serve LLM's own LLMConfig model (offline: no vLLM needed); returns the count."""
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError:  # older or newer Ray: the public path (needs vLLM installed)
        from ray.serve.llm import LLMConfig
    for c in configs:
        LLMConfig.model_validate(c)
    return len(configs)
