"""Export: consolidate a training checkpoint into a standard Hugging Face folder.

What the reference did by hand with ``merge_weights.sh``. A checkpoint is either plain DDP (``model.pt``) or a
DeepSpeed ZeRO checkpoint (``state/`` with per-rank shards), which is consolidated to fp32 with DeepSpeed's
``zero_to_fp32``. The result has ``config.json``, ``model.safetensors``, ``generation_config.json`` and the
tokenizer files with the chat template, so transformers, lm-eval's ``hf`` model and the serving layer load it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

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


def consolidated_state_dict(checkpoint_dir: Path) -> dict:
    """fp32 weights from a DDP or ZeRO (1/2/3) checkpoint folder."""
    import torch

    from latxa.components.train.loop import DS_TAG, MODEL_FILE

    checkpoint_dir = Path(checkpoint_dir)
    if (checkpoint_dir / MODEL_FILE).is_file():
        return torch.load(checkpoint_dir / MODEL_FILE, map_location="cpu", weights_only=True)
    if (checkpoint_dir / DS_TAG).is_dir():
        import os

        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=DS_TAG)
    raise ExportError(f"{checkpoint_dir} is not a training checkpoint (no {MODEL_FILE} and no DeepSpeed '{DS_TAG}/' folder).")


def export_checkpoint(checkpoint_dir: str | Path, out: str | Path, base_model: str | Path | None = None,
                      dtype: str = "float32", chat_template: str | None = None) -> Path:
    """Write a Hugging Face folder for ``checkpoint_dir``; architecture and tokenizer come from ``base_model``.

    ``base_model`` defaults to the model the run started from (recorded in the checkpoint's run.json). The exported
    tokenizer carries ``chat_template``, else the template the training data was rendered with (the data
    manifest's ``chat_template``, e.g. the Llama-3.1-Instruct template the study forces on every backbone), else
    the base tokenizer's own.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    if not checkpoint_dir.is_dir():
        raise ExportError(f"Checkpoint folder {checkpoint_dir} does not exist.")
    state_file = checkpoint_dir / "trainer_state.json"
    trainer_state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    run = _find_run_file(checkpoint_dir)
    if base_model is None:
        if run is None:
            raise ExportError(f"Cannot tell which model {checkpoint_dir} was trained from; pass --base-model.")
        base_model = run["plan"]["model_dir"]
    if chat_template is None and run is not None:
        chat_template = _data_chat_template(run.get("plan", {}).get("data_dir"))
    base_model = Path(base_model)
    if not (base_model / "config.json").is_file():
        raise ExportError(f"Base model folder {base_model} has no config.json.")
    state = consolidated_state_dict(checkpoint_dir)
    config = AutoConfig.from_pretrained(base_model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model = model.to_empty(device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ExportError(f"Checkpoint {checkpoint_dir} does not match {base_model}: "
                          f"missing {missing[:3]}, unexpected {list(unexpected)[:3]}.")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model = model.to(getattr(torch, dtype))
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.config.use_cache = True
    model.save_pretrained(tmp, safe_serialization=True)
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
        "deepspeed_stage": trainer_state.get("deepspeed_stage"), "dtype": dtype}, indent=2) + "\n", encoding="utf-8")
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
