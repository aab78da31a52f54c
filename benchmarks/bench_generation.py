"""Generation benchmark on the tiny model: streamed tokens/s and time to first token (TTFT) under 1, 4 and 8
concurrent arena battles through `latxa serve` (Ray Serve; each battle streams two answers), versus calling
`generate` directly in one process (the same prompt, the same max_new_tokens, sequential).

    .venv/bin/python benchmarks/bench_generation.py --tokens 64 --json out.json [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPT = "Zein da Euskal Herriko mendirik altuena, eta zergatik da ezaguna?"


def direct(path: str, tokens: int, runs: int) -> dict:
    """The baseline: model.generate in this process, with a streamer only to timestamp the first token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.streamers import BaseStreamer

    # Ray starts replica workers with OMP_NUM_THREADS=1; use one thread here too, so the baseline is not
    # penalised by thread oversubscription on a small machine (the comparison is then like for like)
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)

    class First(BaseStreamer):
        def __init__(self):
            self.calls, self.t_first = 0, None

        def put(self, _value):
            self.calls += 1
            if self.calls == 2 and self.t_first is None:
                self.t_first = time.perf_counter()

        def end(self):
            pass

    ttft, rates = [], []
    for i in range(runs + 1):
        s = First()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True,
                                 temperature=0.9, top_p=0.95, streamer=s, pad_token_id=tok.pad_token_id)
        dt = time.perf_counter() - t0
        if i == 0:
            continue  # warm-up
        n = out.shape[1] - ids["input_ids"].shape[1]
        rates.append(n / dt)
        ttft.append(s.t_first - t0)
    return {"tokens_per_s": round(float(np.mean(rates)), 1), "ttft_ms_p50": round(float(np.median(ttft)) * 1000, 1)}


_users = iter(range(10**9))


async def battles(base: str, concurrency: int) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=300) as client:
        async def one(_i: int):
            r = await client.post(f"{base}/api/participants", json={
                "username": f"bench{next(_users)}_{os.getpid()}", "password": "pasahitza-8", "consent": True,
                "basque_level": "C1", "education": "master"})
            h = {"Authorization": f"Bearer {r.json()['token']}"}
            bid = (await client.post(f"{base}/api/battles", headers=h, json={"sampling": "uniform"})).json()["battle_id"]
            t0 = time.perf_counter()
            first, deltas = None, 0
            async with client.stream("POST", f"{base}/api/battles/{bid}/messages", headers=h,
                                     json={"content": PROMPT}) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: {") and '"delta"' in line:
                        deltas += 1
                        if first is None:
                            first = time.perf_counter() - t0
            return first, deltas, time.perf_counter() - t0

        t0 = time.perf_counter()
        res = await asyncio.gather(*(one(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    ttft = [r[0] for r in res if r[0] is not None]
    total = sum(r[1] for r in res)
    return {"battles": concurrency, "streams": 2 * concurrency, "tokens": total,
            "tokens_per_s_total": round(total / wall, 1),
            "tokens_per_s_per_stream": round(float(np.mean([r[1] / r[2] for r in res])) / 2, 1),
            "ttft_ms_p50": round(float(np.median(ttft)) * 1000, 1) if ttft else None,
            "ttft_ms_max": round(float(np.max(ttft)) * 1000, 1) if ttft else None}


def main() -> None:
    import yaml

    from latxa.net import free_port
    from latxa.serving.arena.loadgen import wait_http
    from latxa.serving.registry import load_serve_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--no-ray", action="store_true", help="serve in-process (uvicorn) instead of Ray Serve")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    models = load_serve_config().models
    res = {"direct_generate": direct(models[0].path, args.tokens, args.runs)}
    print(json.dumps(res, indent=2))
    work = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    port = free_port()
    cfg = {"host": "127.0.0.1", "port": port,
           "models": [{"name": m.name, "kind": "hf", "path": m.path, "generation": {"max_tokens": args.tokens}}
                      for m in models],
           "arena": {"database_url": f"sqlite:///{work}/arena.db", "rate_battles_per_minute": 10000,
                     "rate_messages_per_minute": 10000, "rate_auth_per_minute_ip": 10000,
                     "rate_requests_per_minute_ip": 1000000, "sampling": "uniform"}}
    (work / "serve.yaml").write_text(yaml.safe_dump(cfg))
    exe = Path(sys.executable).with_name("latxa")
    cmd = [str(exe), "serve", "--config", str(work / "serve.yaml")] + (["--no-ray"] if args.no_ray else [])
    proc = subprocess.Popen(cmd, stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/health", proc, 300)
        asyncio.run(battles(base, 1))  # warm-up: loads every replica's model
        res["served"] = "in-process (uvicorn)" if args.no_ray else "Ray Serve (one deployment per model)"
        for c in [int(x) for x in args.concurrency.split(",")]:
            res[f"battles_{c}"] = asyncio.run(battles(base, c))
            print(json.dumps(res[f"battles_{c}"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    # the machine's load drifts: measure the baseline again after the served runs and use the mean
    res["direct_generate_after"] = direct(models[0].path, args.tokens, args.runs)
    d = (res["direct_generate"]["tokens_per_s"] + res["direct_generate_after"]["tokens_per_s"]) / 2
    for c in [int(x) for x in args.concurrency.split(",")]:
        b = res[f"battles_{c}"]
        b["per_stream_vs_direct"] = round(b["tokens_per_s_per_stream"] / d, 2)
        b["total_vs_direct"] = round(b["tokens_per_s_total"] / d, 2)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
