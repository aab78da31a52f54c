"""KFP v2 component: data preparation for one variant (wraps ``components.data.prepare``).

Inputs: ``variant``; ``config`` (a data-source YAML path, inline YAML text, or "" for the shipped
sample); ``tokenizer`` as an ``Input[Model]`` artifact (a model/tokenizer folder) or, when no
artifact is wired, ``tokenizer_path`` (a folder or an HF name in the offline cache; "" = the tiny
model). Outputs: ``dataset`` (the packed dataset folder of docs/DEVELOPING.md) and ``metrics``
(the numeric stats). The base image is :data:`COMPONENT_IMAGE`, read from
``LATXA_COMPONENT_IMAGE`` when this module is imported (the pipelines layer sets it before import).

Runs under ``kfp.local.SubprocessRunner(use_venv=False)`` with the project installed in the
current environment; ``install_kfp_package=False`` because the image already has kfp.
"""

import os
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

COMPONENT_IMAGE = os.environ.get("LATXA_COMPONENT_IMAGE", "ghcr.io/latxa-mlops/components:0.1.0")


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def prepare_data(
    variant: str,
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    config: str = "",
    tokenizer: Optional[Input[Model]] = None,
    tokenizer_path: str = "",
    seq_len: int = 0,
    profile: str = "local",
    on_error: str = "fail",
    use_cache: bool = True,
) -> str:
    """Prepare the packed training data of `variant`; returns the cache key."""
    import json
    import os
    import tempfile

    from components.data import prepare

    cfg_path = None
    if config.strip():
        if os.path.isfile(config):
            cfg_path = config
        else:  # inline YAML text
            fd, cfg_path = tempfile.mkstemp(suffix=".yaml", prefix="latxa-data-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(config)
    tok = tokenizer.path if tokenizer is not None else (tokenizer_path or None)
    res = prepare(variant, dataset.path, config=cfg_path, tokenizer=tok, seq_len=seq_len or None, profile=profile,
                  on_error=on_error, use_cache=use_cache, progress=False)
    stats = res.stats
    for key in ("read", "written", "skipped", "examples", "tokens", "trainable_tokens", "rows", "pad_tokens",
                "packing_efficiency", "split_documents"):
        metrics.log_metric(key, float(stats[key]))
    metrics.log_metric("cache_hit", float(res.cache_hit))
    for name, tokens in stats["tokens_per_source"].items():
        metrics.log_metric(f"tokens.{name}", float(tokens))
    dataset.metadata.update({"variant": variant, "cache_key": res.cache_key, "seq_len": stats["seq_len"],
                             "num_rows": stats["rows"], "sources": json.dumps(sorted(stats["tokens_per_source"]))})
    print(f"prepared {variant}: {stats['rows']} rows, cache key {res.cache_key}, cache hit {res.cache_hit}")
    return res.cache_key
