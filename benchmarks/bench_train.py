"""Training throughput on CPU: the Ray Train loop versus a plain PyTorch loop, and packed versus padded rows.

All figures come from one run of this script, on the same tiny model and the same data:

1. plain: a single-process PyTorch loop (AdamW, the same maskless packed attention and fused chunked loss,
   no Ray, no DDP), 1 thread;
2. ray-1: `latxa.components.train` on Ray Train with 1 CPU worker (1 thread), DDP path, no MLflow;
3. ray-2: the same with 2 CPU workers (gloo all-reduce);
4. plain on padded rows (one conversation per row) versus plain on packed rows: trainable tokens/s.

Throughput is measured inside each loop over steps after a warm-up (cluster and worker start-up excluded),
so ray-1 / plain is the per-step overhead of the Ray Train loop. The plain loop runs twice (before and after
the Ray runs) to show the noise of a shared machine.

    .venv/bin/python benchmarks/bench_train.py [--steps 30] [--warmup 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "train"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VARIANT = "exp_1_010"


def plain_loop(model_dir: Path, data_dir: Path, steps: int, warmup: int, micro_batch: int, seed: int = 33) -> dict:
    """The baseline: the simplest correct loop over the same rows, in this process."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from latxa.components.train.attention import packed_kwargs, register
    from latxa.components.train.data import epoch_order, open_packed
    from latxa.components.train.loss import install_packed_loss, shifted_targets

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    model.set_attn_implementation(register())      # the same kernels as the recipe: maskless packed attention,
    install_packed_loss(model, 1024)               # fused chunked loss (the comparison is the loop's overhead)
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ds = open_packed(data_dir)
    n = len(ds)
    order = epoch_order(n, micro_batch, seed, 0, True)
    tokens = trainable = 0
    seconds = cpu = 0.0
    for step in range(steps):
        rows = order[step % len(order)]
        t0, c0 = time.perf_counter(), time.process_time()
        b = ds[sorted(rows.tolist())]
        ids, labels, pos = (torch.as_tensor(np.stack(list(b[k])), dtype=torch.long)
                            for k in ("input_ids", "labels", "position_ids"))
        count = int((labels[:, 1:] != -100).sum())
        loss = model(input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1),
                     targets=shifted_targets(labels).reshape(-1), **packed_kwargs(pos)) / max(count, 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if step >= warmup:
            seconds += dt
            cpu += dc
            tokens += ids.numel()
            trainable += count
    return {"tokens_per_s": tokens / seconds, "trainable_tokens_per_s": trainable / seconds,
            "tokens_per_cpu_s": tokens / cpu, "trainable_tokens_per_cpu_s": trainable / cpu,
            "timed_steps": steps - warmup, "final_loss": float(loss)}


def ray_loop(model_dir: Path, data_dir: Path, workers: int, steps: int, warmup: int, micro_batch: int) -> dict:
    from latxa.components.train.plan import TrainJob, plan_training
    from latxa.components.train.runner import run_trainer

    out = Path(tempfile.mkdtemp(prefix=f"bench-ray{workers}-"))
    job = TrainJob(variant=VARIANT, data_dir=data_dir, out_dir=out / "run", model_dir=model_dir, num_workers=workers,
                   micro_batch_size=micro_batch, max_steps=steps, checkpoint_every=steps, track=False, lr=1e-3)
    plan = plan_training(job)
    plan.bench_steps_to_skip = warmup
    plan.log_every = steps
    plan.neftune_alpha = 0.0          # the plain loop has no NEFTune either
    t0 = time.perf_counter()
    result = run_trainer(plan)
    m = dict(result.metrics)
    m["wall_s_incl_startup"] = time.perf_counter() - t0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from packing_helper import make_packed

    from latxa.components.data import prepare
    from latxa.components.tiny_model import build_tiny_model
    from latxa.components.train.runner import start_ray

    torch.set_num_threads(1)          # a Ray CPU worker runs with OMP_NUM_THREADS=1: same for the baseline
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ["LATXA_HOME"] = str(work / "home")
    model = build_tiny_model(work / "tiny")
    packed = work / "packed"
    prepare(VARIANT, packed, tokenizer=model, profile="local", progress=False, use_cache=False)
    padded = make_packed(work / "padded", model, REPO / "data" / "instructions" / "eu.jsonl", VARIANT, seq_len=256,
                         padded=True)
    common = dict(steps=args.steps, warmup=args.warmup, micro_batch=args.micro_batch)
    res: dict = {"load_average_at_start": os.getloadavg(), "steps": args.steps, "warmup": args.warmup, "micro_batch": args.micro_batch,
                 "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print("plain loop (packed) ...", flush=True)
    res["plain_packed_a"] = plain_loop(model, packed, **common)
    print("plain loop (padded) ...", flush=True)
    res["plain_padded"] = plain_loop(model, padded, **common)
    start_ray(num_cpus=2)
    try:
        for w in (1, 2):
            print(f"Ray Train, {w} worker(s) ...", flush=True)
            res[f"ray_{w}"] = ray_loop(model, packed, w, **common)
    finally:
        import ray

        ray.shutdown()
    print("plain loop (packed, again) ...", flush=True)
    res["plain_packed_b"] = plain_loop(model, packed, **common)
    plain = (res["plain_packed_a"]["tokens_per_s"] + res["plain_packed_b"]["tokens_per_s"]) / 2
    plain_cpu = (res["plain_packed_a"]["tokens_per_cpu_s"] + res["plain_packed_b"]["tokens_per_cpu_s"]) / 2
    res["ratios"] = {
        "overhead_ray1_vs_plain": plain / res["ray_1"]["tokens_per_s"],
        "overhead_ray1_vs_plain_cpu_time": plain_cpu / res["ray_1"]["tokens_per_cpu_s"],
        "overhead_ray2_per_worker_vs_plain_cpu_time": plain_cpu / res["ray_2"]["tokens_per_cpu_s"],
        "packed_vs_padded_trainable_tokens_per_cpu_s": res["plain_packed_a"]["trainable_tokens_per_cpu_s"]
        / res["plain_padded"]["trainable_tokens_per_cpu_s"],
        "speedup_ray2_vs_plain": res["ray_2"]["tokens_per_s"] / plain,
        "speedup_ray2_vs_ray1": res["ray_2"]["tokens_per_s"] / res["ray_1"]["tokens_per_s"],
        "packed_vs_padded_trainable_tokens_per_s": res["plain_packed_a"]["trainable_tokens_per_s"]
        / res["plain_padded"]["trainable_tokens_per_s"],
        "plain_noise_b_vs_a": res["plain_packed_b"]["tokens_per_s"] / res["plain_packed_a"]["tokens_per_s"],
    }
    res["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
