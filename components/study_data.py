"""Everything a study run reads, prepared in one step (the chain's one-node CPU prep job, `latxa study prepare`):

    OUT/train/            the variant's packed mixture (latxa.components.data.prepare); OUT/train.arrow/ its mapped copy
    OUT/heldout/<name>/   each held-out set of the data config (the reference's AYA and Magpie-Ultra-1K), same
                          tokenizer, chat template and seq_len, for the loss during training
    OUT/study-data.json   what was prepared (cache keys, rows, the forced chat template's name)

The ``.arrow/`` copies are built here, once, so the training job's ranks memory-map one copy and the 32 or 64
training nodes do not wait for a conversion (:mod:`latxa.components.train.shared_data`).
"""

from __future__ import annotations

import json
from pathlib import Path

from latxa.components.data.sources import CONFIG_DIR, DataError, load_data_config

TRAIN_DIR = "train"
HELDOUT_DIR = "heldout"
SUMMARY = "study-data.json"


def data_config_path(name_or_path: str | Path | None) -> Path | None:
    """A shipped data config by name (``production``, ``production-70b``, ``sample``) or a YAML path."""
    if name_or_path is None or str(name_or_path) == "":
        return None
    text = str(name_or_path)
    if not text.endswith((".yaml", ".yml")) and "/" not in text:
        path = CONFIG_DIR / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
            raise DataError(f"Unknown data config '{text}' (shipped: {known}; or pass a YAML file).")
        return path
    return Path(text)


def prepare_study_data(variant: str, out: str | Path, *, profile: str, config: str | Path | None = None,
                       tokenizer: str | None = None, smoke: bool = False, heldout: bool = True,
                       num_proc: int | None = None, progress: bool = True, on_error: str = "fail") -> dict:
    """Prepare the training mixture and the held-out sets of ``variant`` under ``out``; returns the summary."""
    from latxa.components.data import prepare
    from latxa.components.train.shared_data import ensure_arrow

    out = Path(out)
    cfg_path = data_config_path(config)
    cfg, resolved_path = load_data_config(cfg_path)
    common = dict(config=cfg_path, tokenizer=tokenizer, profile=profile, smoke=smoke, num_proc=num_proc,
                  progress=progress, on_error=on_error)
    res = prepare(variant, out / TRAIN_DIR, **common)
    ensure_arrow(res.out_dir)
    summary = {"variant": variant, "profile": profile, "smoke": smoke, "data_config": str(resolved_path),
               "chat_template": cfg.chat_template, "tokenizer": tokenizer,
               "train": {"path": str(res.out_dir), "cache_key": res.cache_key, "cache_hit": res.cache_hit,
                         "rows": res.stats["rows"], "tokens": res.stats["tokens"]},
               "heldout": {}}
    (out / HELDOUT_DIR).mkdir(parents=True, exist_ok=True)   # empty: the data config has no held-out sets
    for name in sorted(cfg.heldout) if heldout else []:
        h = prepare(variant, out / HELDOUT_DIR / name, sources=[name], **common)
        ensure_arrow(h.out_dir)
        summary["heldout"][name] = {"path": str(h.out_dir), "cache_key": h.cache_key, "cache_hit": h.cache_hit,
                                    "rows": h.stats["rows"], "examples": h.stats["examples"]}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
