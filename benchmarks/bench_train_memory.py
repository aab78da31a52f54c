"""Host memory of training on CPU, in one run: sharded loading, maskless packed attention, chunked loss, streamed export.

Each measurement runs in its own process (the attention, loss and export ones 3 times, alternating; medians) and reads the kernel's peak resident set (``ru_maxrss``) of that process,
before and after the step measured; figures are the peak's rise over the process's resident set just before the
step ("delta", what the step itself costs), and the whole peak ("total", imports included).

The attention, loss and export steps run twice over: with glibc's malloc as it comes, and with its mmap threshold fixed
at 128 KiB (``MALLOC_MMAP_THRESHOLD_``). By default glibc raises that threshold as large blocks are freed (up to
32 MiB), so freed activation buffers stay in the heap and the resident peak carries whatever the allocator kept:
that figure moves by up to 170 MiB between runs of the same step. With the threshold fixed, every tensor buffer of
128 KiB or more is mapped on allocation and returned on free, so the resident peak is the peak of live tensors
(the CPU counterpart of ``torch.cuda.max_memory_allocated``, which is what bounds a GPU). The headline ratios use
the fixed threshold; the default-malloc ratios are reported beside them. ``--tensor-check`` adds one run of each
attention path under torch's memory profiler, whose peak of live tensors confirms the fixed-threshold figure.

1. load: a Llama-shaped model of about 0.5e9 parameters saved in bf16. Baseline: one process loading it whole
   (the old loop's ``from_pretrained`` in fp32: what every rank did). Sharded: 2 ranks (torchrun, gloo), FSDP2
   built on the meta device, rank 0 reads one tensor at a time and broadcasts it; each rank keeps its fp32 half.
   Ratio: peak per rank / baseline peak (goal <= 0.6).
2. attention: forward + backward of a micro-batch of 2 packed rows of 8192 tokens (documents of 128-2048 tokens,
   gradient checkpointing on, as the study), on a small Llama (hidden 256, 2 layers): the maskless path
   (per-document causal SDPA, no mask tensor) vs today's 4D block-diagonal fp32 mask with SDPA (goal <= 0.5).
3. loss: 2048 tokens at vocab 128,256 (hidden 512): the chunked (fused) linear cross-entropy with chunks of 128 tokens (1/16 of
   the tokens, as 1024 of a 2 x 8192 micro-batch in production) vs full fp32 logits (goal <= 0.25).
4. export: the sharded run's FSDP checkpoint (torch.distributed.checkpoint) streamed to bf16 safetensors shards;
   peak / largest shard (goal <= 1.5), 3 runs under each malloc.

    .venv/bin/python benchmarks/bench_train_memory.py [--json out.json] [--tensor-check]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
MIB = 2**20
SHAPE = dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=16, num_attention_heads=16,
             num_key_value_heads=8, vocab_size=32000)


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measured(before: int) -> dict:
    p = peak()
    return {"before_mib": before / MIB, "peak_mib": p / MIB, "delta_mib": (p - before) / MIB}


# --- the measured steps (each runs in a fresh process: `bench_train_memory.py --step NAME ...`) ---------------
def step_build(work: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from latxa.components.tiny_model import train_tokenizer

    cfg = LlamaConfig(max_position_embeddings=8192, tie_word_embeddings=False, **SHAPE)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(work / "model", max_shard_size="10GB")
    train_tokenizer(2048).save_pretrained(work / "model")
    return {"params": sum(p.numel() for p in model.parameters())}


def step_load_whole(work: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    before = rss()
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    out = measured(before)
    out["params"] = sum(p.numel() for p in model.parameters())
    return out


def step_load_sharded(work: Path) -> dict:
    """One rank of the torchrun group: sharded load, then an FSDP checkpoint for the export step."""
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    from latxa.components.train import sharding
    from latxa.components.train.loop import build_sharded_model

    plan = SimpleNamespace(model_dir=str(work / "model"), gradient_checkpointing=False, fsdp="full_shard",
                           fsdp_shard_size=2, precision="fp32", prefetch_layers=1)
    before = rss()
    model = build_sharded_model(plan, torch.device("cpu"), rank=dist.get_rank(), world=2, attn_implementation="sdpa")
    out = measured(before)
    out["local_params"] = sum(p.to_local().numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ckpt = work / "ckpt"
    sharding.save_checkpoint(ckpt, model, optimizer)
    dist.barrier()
    dist.destroy_process_group()
    return out


def _packed_row(seq_len: int, vocab: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    pos, n = [], 0
    while n < seq_len:
        d = min(int(torch.randint(128, 2049, (1,), generator=g)), seq_len - n)
        pos += list(range(d))
        n += d
    ids = torch.randint(10, vocab, (1, seq_len), generator=g)
    return ids, ids.clone(), torch.tensor([pos])


def step_attention(masked: bool, tensor_check: bool = False) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from latxa.components.train.attention import packed_kwargs, register
    from latxa.components.train.data import packed_attention_mask
    from latxa.components.train.loss import install_packed_loss, shifted_targets

    cfg = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=2048, max_position_embeddings=8192)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})   # as the study
    model.train()
    model.set_attn_implementation("sdpa" if masked else register())
    install_packed_loss(model, 1024)
    rows = [_packed_row(8192, 2048, seed) for seed in (0, 1)]                 # micro-batch 2 x 8192, as the study
    ids, labels, pos = (torch.cat([r[i] for r in rows]) for i in range(3))
    targets = shifted_targets(labels).reshape(-1)

    def forward_backward():
        if masked:   # today's loop: the mask is built per micro-batch, so it is part of the cost
            loss = model(input_ids=ids, position_ids=pos, targets=targets,
                         attention_mask=packed_attention_mask(pos, torch.float32))
        else:
            loss = model(input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1), targets=targets,
                         **packed_kwargs(pos))
        loss.backward()
        return loss

    if tensor_check:
        return {"tensor_peak_mib": _profiled_tensor_peak(forward_backward) / MIB}
    before = rss()
    start = time.perf_counter()
    loss = forward_backward()
    seconds = time.perf_counter() - start
    out = measured(before)
    out["seconds"] = seconds
    out["loss"] = float(loss.detach()) / int((targets != -100).sum())
    return out


def _profiled_tensor_peak(fn) -> int:
    """Peak bytes of live CPU tensors while ``fn()`` runs, from torch's memory profiler (allocator-independent)."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline  # private, but the only per-tensor timeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _times, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return int(np.asarray(sizes).sum(axis=1).max())


def step_loss(chunked: bool) -> dict:
    import torch

    from latxa.components.train.loss import fused_linear_cross_entropy, plain_cross_entropy

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    tokens, hidden, vocab = 2048, 512, 128_256
    head = torch.nn.Linear(hidden, vocab, bias=False)
    h = torch.randn(tokens, hidden, generator=g, requires_grad=True)
    tgt = torch.randint(0, vocab, (tokens,), generator=g)
    before = rss()
    # chunk = tokens / 16, as production's 1024-token chunks of a 2 x 8192 micro-batch
    loss = fused_linear_cross_entropy(h, head.weight, tgt, chunk_tokens=128) if chunked else plain_cross_entropy(head(h), tgt)
    loss.backward()
    out = measured(before)
    out["loss"] = float(loss.detach())
    return out


def step_export(work: Path) -> dict:
    import torch  # noqa: F401  (imports before the baseline: the step measured is the export itself)
    import torch.distributed.checkpoint  # noqa: F401
    import transformers  # noqa: F401

    from latxa.components.train.export import _expected_keys, export_checkpoint

    _expected_keys(transformers.AutoConfig.from_pretrained(work / "model"))   # warm transformers' lazy modules
    before = rss()
    out_dir = export_checkpoint(work / "ckpt", work / "export", base_model=work / "model", dtype="bfloat16",
                                max_shard_size="1GB")
    out = measured(before)
    info = json.loads((out_dir / "latxa_export.json").read_text())
    out["largest_shard_mib"] = info["largest_shard_bytes"] / MIB
    out["shards"] = info["shards"]
    return out


STEPS = {"build": step_build, "load_whole": step_load_whole, "load_sharded": step_load_sharded,
         "attention_masked": lambda _w: step_attention(True), "attention_maskless": lambda _w: step_attention(False),
         "attention_masked_tensors": lambda _w: step_attention(True, tensor_check=True),
         "attention_maskless_tensors": lambda _w: step_attention(False, tensor_check=True),
         "loss_full": lambda _w: step_loss(False), "loss_chunked": lambda _w: step_loss(True),
         "export": step_export}


# glibc: a fixed mmap threshold maps every block >= 128 KiB on allocation and unmaps it on free (see the docstring)
TENSOR_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def run_step(name: str, work: Path, env: dict | None = None) -> dict:
    print(f"{name}{' (fixed mmap threshold)' if env else ''} ...", flush=True)
    res = work / f"{name}.json"
    cmd = [sys.executable, __file__, "--step", name, "--work", str(work), "--out", str(res)]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **(env or {})})
    return json.loads(res.read_text())


def run_sharded(work: Path) -> list[dict]:
    print("load_sharded (2 ranks) ...", flush=True)
    from latxa.net import free_port

    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), __file__, "--step",
                    "load_sharded", "--work", str(work), "--out", str(work / "load_sharded.json")], check=True, cwd=REPO)
    return [json.loads((work / f"load_sharded.json.rank{r}").read_text()) for r in (0, 1)]


def _median_run(runs: list[dict]) -> dict:
    """The median of 3 runs by rise, with the range of the rises."""
    runs = sorted(runs, key=lambda r: r["delta_mib"])
    return {**runs[1], "delta_mib_range": [runs[0]["delta_mib"], runs[-1]["delta_mib"]]}


SMALL_STEPS = ("attention_masked", "attention_maskless", "loss_full", "loss_chunked")


def measure(work: Path, tensor_check: bool = False) -> dict:
    """Every step in fresh processes under ``work``; the results and their ratios."""
    os.environ["LATXA_HOME"] = str(work / "home")
    res: dict = {"build": run_step("build", work)}
    res["load_whole"] = run_step("load_whole", work)
    res["load_sharded"] = run_sharded(work)
    # the small steps alternate 3 times (fresh processes), under both mallocs: the median, and the spread, of each
    variants = {"": TENSOR_MALLOC, "_glibc_default": None}
    for name in SMALL_STEPS:
        for suffix in variants:
            res[name + suffix + "_runs"] = []
    for _ in range(3):
        for name in SMALL_STEPS:
            for suffix, env in variants.items():
                res[name + suffix + "_runs"].append(run_step(name, work, env))
    for name in SMALL_STEPS:
        for suffix in variants:
            res[name + suffix] = _median_run(res[name + suffix + "_runs"])
    if tensor_check:
        for name in ("attention_masked", "attention_maskless"):
            res[name + "_tensors"] = run_step(name + "_tensors", work)
    for suffix in variants:   # the export too: 3 runs under each malloc, alternating
        res["export" + suffix + "_runs"] = []
    for _ in range(3):
        for suffix, env in variants.items():
            shutil.rmtree(work / "export", ignore_errors=True)
            res["export" + suffix + "_runs"].append(run_step("export", work, env))
    for suffix in variants:
        res["export" + suffix] = _median_run(res["export" + suffix + "_runs"])
    worst_rank = max(r["peak_mib"] for r in res["load_sharded"])
    worst_rank_delta = max(r["delta_mib"] for r in res["load_sharded"])
    res["ratios"] = {
        "load_peak_per_rank_vs_whole": worst_rank / res["load_whole"]["peak_mib"],
        "load_delta_per_rank_vs_whole": worst_rank_delta / res["load_whole"]["delta_mib"],
        "attention_maskless_vs_mask_delta": res["attention_maskless"]["delta_mib"] / res["attention_masked"]["delta_mib"],
        "attention_maskless_vs_mask_peak": res["attention_maskless"]["peak_mib"] / res["attention_masked"]["peak_mib"],
        "attention_maskless_vs_mask_delta_glibc_default": (res["attention_maskless_glibc_default"]["delta_mib"]
                                                           / res["attention_masked_glibc_default"]["delta_mib"]),
        "attention_maskless_vs_mask_seconds": res["attention_maskless"]["seconds"] / res["attention_masked"]["seconds"],
        "attention_loss_difference": abs(res["attention_maskless"]["loss"] - res["attention_masked"]["loss"]),
        "loss_chunked_vs_full_delta": res["loss_chunked"]["delta_mib"] / res["loss_full"]["delta_mib"],
        "loss_chunked_vs_full_peak": res["loss_chunked"]["peak_mib"] / res["loss_full"]["peak_mib"],
        "loss_chunked_vs_full_delta_glibc_default": (res["loss_chunked_glibc_default"]["delta_mib"]
                                                     / res["loss_full_glibc_default"]["delta_mib"]),
        "export_delta_vs_largest_shard": res["export"]["delta_mib"] / res["export"]["largest_shard_mib"],
        "export_peak_vs_largest_shard": res["export"]["peak_mib"] / res["export"]["largest_shard_mib"],
        "export_delta_vs_largest_shard_glibc_default": (res["export_glibc_default"]["delta_mib"]
                                                        / res["export_glibc_default"]["largest_shard_mib"]),
    }
    if tensor_check:
        res["ratios"]["attention_maskless_vs_mask_tensor_peak"] = (res["attention_maskless_tensors"]["tensor_peak_mib"]
                                                                   / res["attention_masked_tensors"]["tensor_peak_mib"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tensor-check", action="store_true",
                    help="also measure each attention path's peak of live tensors with torch's memory profiler")
    ap.add_argument("--step", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        sys.path.insert(0, str(REPO))
        result = STEPS[args.step](args.work)
        rank = os.environ.get("RANK")
        args.out.with_name(args.out.name + (f".rank{rank}" if rank is not None else "")).write_text(json.dumps(result))
        return

    work = Path(tempfile.mkdtemp(prefix="bench-train-mem-"))
    try:  # the work folder holds a few GiB of model shards: never leave it behind
        res = measure(work, tensor_check=args.tensor_check)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
