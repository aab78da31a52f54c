"""Export: consolidate a training checkpoint into a standard Hugging Face folder.

What the reference did by hand with ``merge_weights.sh``. A checkpoint is either plain DDP (``model.pt``) or a
DeepSpeed ZeRO checkpoint (``state/`` with per-rank shards, read with ``zero_to_fp32`` in lazy mode), or an
FSDP2 checkpoint (``dcp/``, torch.distributed.checkpoint). Tensors are streamed one at a time into safetensors
shards (bf16 by default), so the export needs about one shard of memory, not the model: it runs as its own
one-node step. The result has ``config.json``, ``model.safetensors`` (or shards + index),
``generation_config.json`` and the tokenizer files with the chat template, so transformers, lm-eval's ``hf``
model and the serving layer load it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterator

from latxa.errors import LatxaError

CHECKSUMS = "SHA256SUMS"
EXPORT_INFO = "latxa_export.json"


class ExportError(LatxaError):
    """A checkpoint that cannot be exported (one readable sentence)."""


def sha256sums(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != CHECKSUMS):
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[path.relative_to(folder).as_posix()] = h.hexdigest()
    return out


def write_checksums(folder: Path) -> dict[str, str]:
    sums = sha256sums(folder)
    (Path(folder) / CHECKSUMS).write_text("".join(f"{h}  {name}\n" for name, h in sums.items()), encoding="utf-8")
    return sums


def checkpoint_tensors(checkpoint_dir: Path, dtype=None) -> Iterator[tuple[str, object]]:
    """(name, tensor) of a DDP, FSDP or ZeRO (1/2/3) checkpoint, one tensor at a time.

    FSDP: each tensor is assembled from the ranks' torch.distributed.checkpoint files as it is needed. ZeRO:
    DeepSpeed's ``zero_to_fp32`` in lazy mode (each tensor gathered from the partitions on access). DDP:
    ``model.pt`` memory-mapped. FSDP tensors are read straight into ``dtype`` when given (DCP converts chunk by
    chunk, so no full fp32 copy of a tensor exists); the others come as stored.
    """
    import torch

    from latxa.components.train import sharding
    from latxa.components.train.loop import DS_TAG, MODEL_FILE

    checkpoint_dir = Path(checkpoint_dir)
    if (checkpoint_dir / sharding.DCP_DIR).is_dir():
        for name, (shape, stored) in sharding.checkpoint_tensors(checkpoint_dir).items():
            yield name, sharding.read_checkpoint_tensor(checkpoint_dir, name, shape, dtype or stored)
        return
    if (checkpoint_dir / MODEL_FILE).is_file():
        yield from torch.load(checkpoint_dir / MODEL_FILE, map_location="cpu", weights_only=True, mmap=True).items()
        return
    if (checkpoint_dir / DS_TAG).is_dir():
        import os

        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        lazy = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=DS_TAG, lazy_mode=True)
        for name, value in lazy.items():
            yield name, value.contiguous() if hasattr(value, "contiguous") else value
        return
    raise ExportError(f"{checkpoint_dir} is not a training checkpoint (no {MODEL_FILE}, no FSDP '{sharding.DCP_DIR}/' "
                      f"and no DeepSpeed '{DS_TAG}/' folder).")


def consolidated_state_dict(checkpoint_dir: Path) -> dict:
    """All weights of a checkpoint in memory (small models and tests; export streams instead)."""
    return {name: tensor.clone() for name, tensor in checkpoint_tensors(checkpoint_dir)}


DTYPES = ("bfloat16", "float32", "float16")


def parse_size(text: str | int) -> int:
    """``5GB``, ``500MB``, ``2GiB`` or a byte count."""
    if isinstance(text, int):
        return text
    t = text.strip().upper()
    units = {"GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    for unit, factor in units.items():
        if t.endswith(unit):
            try:
                return int(float(t[: -len(unit)]) * factor)
            except ValueError:
                break
    try:
        return int(t)
    except ValueError:
        raise ExportError(f"--max-shard-size {text!r} is not a size like 5GB or 500MB.") from None


def _expected_keys(config) -> tuple[set[str], dict[str, str]]:
    """Parameter names of the architecture (built on the meta device: no memory) and its tied names."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    tied = dict(tied) if isinstance(tied, dict) and getattr(config, "tie_word_embeddings", False) else {}
    return set(model.state_dict()), tied


def export_checkpoint(checkpoint_dir: str | Path, out: str | Path, base_model: str | Path | None = None,
                      dtype: str | None = None, max_shard_size: str | int = "5GB",
                      chat_template: str | None = None) -> Path:
    """Write a Hugging Face folder for ``checkpoint_dir``; architecture and tokenizer come from ``base_model``.

    Weights are streamed: each tensor is read from the checkpoint, cast to ``dtype`` (bf16 by default, fp32 on
    request) and added to the current safetensors shard, which is written when it reaches ``max_shard_size``;
    peak memory is about one shard. ``base_model`` and ``dtype`` default to the run's (its run.json: the model it
    started from, the plan's ``export_dtype``), else bf16. The exported tokenizer carries ``chat_template``, else
    the template the training data was rendered with (the data manifest's ``chat_template``: the
    Llama-3.1-Instruct template the study forces on every backbone), else the base tokenizer's own.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from latxa.components.train.weights import ShardedWriter

    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    run = _find_run_file(checkpoint_dir) if checkpoint_dir.is_dir() else None
    if dtype is None:
        dtype = ((run or {}).get("plan") or {}).get("export_dtype") or "bfloat16"
    if dtype not in DTYPES:
        raise ExportError(f"Export dtype must be one of {', '.join(DTYPES)} (got {dtype}).")
    limit = parse_size(max_shard_size)
    if not checkpoint_dir.is_dir():
        raise ExportError(f"Checkpoint folder {checkpoint_dir} does not exist.")
    state_file = checkpoint_dir / "trainer_state.json"
    trainer_state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    if base_model is None:
        if run is None:
            raise ExportError(f"Cannot tell which model {checkpoint_dir} was trained from; pass --base-model.")
        base_model = run["plan"]["model_dir"]
    if chat_template is None and run is not None:
        chat_template = _data_chat_template(run.get("plan", {}).get("data_dir"))
    base_model = Path(base_model)
    if not (base_model / "config.json").is_file():
        raise ExportError(f"Base model folder {base_model} has no config.json.")
    config = AutoConfig.from_pretrained(base_model)
    expected, tied = _expected_keys(config)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = ShardedWriter(tmp, limit)
    seen: set[str] = set()
    target = getattr(torch, dtype)
    for name, tensor in checkpoint_tensors(checkpoint_dir, dtype=target):
        if name not in expected:
            raise ExportError(f"Checkpoint {checkpoint_dir} does not match {base_model}: unexpected tensor {name}.")
        seen.add(name)
        if name in tied:                       # tied to the input embeddings: stored once, as save_pretrained does
            continue
        writer.add(name, tensor.to(target))
        del tensor
    missing = sorted(expected - seen - set(tied))
    if missing:
        raise ExportError(f"Checkpoint {checkpoint_dir} does not match {base_model}: missing {missing[:3]}.")
    files = writer.close()
    config.use_cache = True
    config.dtype = dtype
    config.save_pretrained(tmp)
    try:
        GenerationConfig.from_pretrained(base_model).save_pretrained(tmp)
    except OSError:
        GenerationConfig.from_model_config(config).save_pretrained(tmp)
    tok = AutoTokenizer.from_pretrained(base_model)
    if chat_template:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise ExportError(f"The tokenizer in {base_model} has no chat template; the exported model needs one.")
    tok.save_pretrained(tmp)
    (tmp / EXPORT_INFO).write_text(json.dumps({
        "checkpoint": str(checkpoint_dir), "base_model": str(base_model), "step": trainer_state.get("step"),
        "variant": trainer_state.get("variant"), "mlflow_run_id": trainer_state.get("mlflow_run_id"),
        "deepspeed_stage": trainer_state.get("deepspeed_stage"), "fsdp": trainer_state.get("fsdp", "none"),
        "dtype": dtype, "shards": [f.name for f in files], "max_shard_bytes": limit,
        "largest_shard_bytes": writer.largest_shard_bytes}, indent=2) + "\n", encoding="utf-8")
    write_checksums(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _data_chat_template(data_dir: str | None) -> str | None:
    """The chat template a prepared dataset was rendered with (its manifest's ``chat_template``), if recorded."""
    if not data_dir:
        return None
    try:
        return json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError):
        return None


def _find_run_file(checkpoint_dir: Path) -> dict | None:
    for parent in checkpoint_dir.resolve().parents:
        if (parent / "run.json").is_file():
            return json.loads((parent / "run.json").read_text(encoding="utf-8"))
    return None


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint of a run folder (``out/ray/<variant>/step-N`` with trainer_state.json)."""
    run_dir = Path(run_dir)
    candidates = sorted(p for p in (run_dir / "ray").glob("*/step-*") if (p / "trainer_state.json").is_file())
    if not candidates:
        raise ExportError(f"{run_dir} holds no complete checkpoint (looked for ray/*/step-*/trainer_state.json).")
    return candidates[-1]
