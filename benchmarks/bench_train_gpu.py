"""GPU training benchmark: an 8B-layer-shaped slice of Llama-3.1 on ONE GPU, bf16, packed rows, the production path.

Needs a CUDA GPU (never run by the tests). It runs the project's own recipe
(`latxa.components.train.loop.TrainRecipe`, the code every Ray Train worker runs) in one process with a 1-rank NCCL
group: FSDP2 (``--engine fsdp``, the Leonardo profiles' engine; or ``deepspeed`` ZeRO-2), bf16 mixed precision with
TF32, fused AdamW, packed rows without a mask (FlashAttention-2 varlen when ``flash_attn`` is installed, else
per-document SDPA), the chunked linear cross-entropy and gradient checkpointing. The model is random-init with the
8B's layer shape (hidden 4096, MLP 14336, 32/8 heads, vocab 128,256) and ``--layers`` decoder layers (default 4:
1.9e9 parameters); the data are synthetic packed rows of documents of 128-2048 tokens. It reports tokens/s and
model FLOPs utilisation against the A100 (312 TFLOP/s) and H100 SXM (989 TFLOP/s) dense bf16 peaks:

    MFU = tokens/s x (6 N + 6 L h d) / peak     (N parameters, L layers, h hidden, d mean document length:
                                                 causal attention within each packed document)

Finishes in a few minutes (model build, 5 warm-up + 20 timed steps).

    .venv/bin/python benchmarks/bench_train_gpu.py [--layers 4] [--seq-len 8192] [--micro-batch 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "train"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
VARIANT = "exp_1_010"


def build_model(out: Path, hidden: int, layers: int, heads: int, kv_heads: int, inter: int, vocab: int) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from latxa.components.tiny_model import train_tokenizer

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=8192,
                      rope_theta=500000.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    tok = train_tokenizer(2048)           # the tokenizer only matters for export
    tok.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return n


def synthetic_packed(out: Path, rows: int, seq_len: int, vocab: int, seed: int = 0) -> Path:
    import numpy as np
    from packing_helper import pack, write_packed

    rng = np.random.default_rng(seed)
    docs = []
    total = 0
    while total < rows * seq_len:
        n = int(rng.integers(128, min(2048, seq_len) + 1))
        ids = rng.integers(10, vocab, n).tolist()
        labels = [-100] * (n // 4) + ids[n // 4:]           # a "prompt" quarter without loss
        docs.append((ids, labels))
        total += n
    packed = pack(docs, seq_len, pad_id=0)[:rows]
    return write_packed(out, packed, seq_len, VARIANT, 0, "synthetic", rows_per_shard=256), total / len(docs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--engine", choices=("fsdp", "deepspeed"), default="fsdp")
    ap.add_argument("--attention", default="auto", help="auto | flash_attention_2 | packed_sdpa | masked_sdpa")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--no-grad-ckpt", action="store_true", help="disable gradient checkpointing")
    ap.add_argument("--peak-tflops", type=float, default=None, help="default: from the device name (A100 312, H100 989)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        sys.exit("bench_train_gpu.py needs a CUDA GPU; see benchmarks/bench_train.py for the CPU benchmark.")
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ["LATXA_HOME"] = str(work / "home")
    t0 = time.perf_counter()
    n_params = build_model(work / "model", args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate,
                           args.vocab)
    rows = args.steps * args.micro_batch
    data, mean_doc = synthetic_packed(work / "data", rows, args.seq_len, args.vocab)
    setup_s = time.perf_counter() - t0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"})
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)

    from latxa.components.train.data import inspect_packed
    from latxa.components.train.loop import LocalContext, run_worker
    from latxa.components.train.plan import TrainPlan

    info = inspect_packed(data)
    plan = TrainPlan(
        variant=VARIANT, data_dir=str(data), out_dir=str(work / "out"), model_dir=str(work / "model"), run_name=VARIANT,
        profile="bench-gpu", backend="gpu", world_size=1, gpus_per_worker=1, cpus_per_worker=8,
        deepspeed_stage=args.stage if args.engine == "deepspeed" else 0, offload_optimizer=False, seed=33,
        seq_len=args.seq_len, num_rows=info.num_rows, micro_batch_size=args.micro_batch, grad_accum=1,
        global_batch=args.micro_batch, steps_per_epoch=info.num_rows // args.micro_batch, total_steps=args.steps,
        padded_rows_per_epoch=0, shuffle=True, precision="bf16", gradient_checkpointing=not args.no_grad_ckpt,
        neftune_alpha=5.0, max_grad_norm=1.0, log_every=5, checkpoint_every=10**9, keep_checkpoints=1, lr=1e-5,
        scheduler="cosine", warmup_ratio=0.1, min_lr_ratio=0.33, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
        data_cache_key=None, trainable_tokens=info.trainable_tokens, resolved_config={},
        bench_steps_to_skip=args.warmup, fsdp="full_shard" if args.engine == "fsdp" else "none", fsdp_shard_size=1,
        attention=args.attention, loss_chunk_tokens=1024, tf32=True, fused_adamw=True)
    torch.cuda.reset_peak_memory_stats()
    ctx = LocalContext()
    t1 = time.perf_counter()
    m = run_worker(plan, ctx)
    train_s = time.perf_counter() - t1
    tps = m["tokens_per_s"]
    flops_per_token = 6 * n_params + 6 * args.layers * args.hidden * mean_doc
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or (312.0 if "A100" in name else 989.0)
    from latxa.components.train.attention import attention_implementation

    res = {
        "device": name, "params": n_params, "seq_len": args.seq_len, "mean_doc_len": mean_doc,
        "engine": args.engine, "attention": attention_implementation("gpu", args.attention),
        "micro_batch": args.micro_batch, "zero_stage": args.stage if args.engine == "deepspeed" else None,
        "gradient_checkpointing": not args.no_grad_ckpt,
        "timed_steps": m["timed_steps"], "tokens_per_s": tps, "trainable_tokens_per_s": m["trainable_tokens_per_s"],
        "mfu": tps * flops_per_token / (peak * 1e12), "peak_tflops_assumed": peak,
        "mfu_vs_a100_312": tps * flops_per_token / 312e12, "mfu_vs_h100_989": tps * flops_per_token / 989e12,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "first_loss": m["first_loss"],
        "final_loss": m["loss"], "setup_s": setup_s, "train_s": train_s,
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
