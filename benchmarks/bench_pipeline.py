"""Benchmark: what kfp.local orchestration costs. Wall time of `latxa pipeline run --local` for one variant
versus running the same work directly with the layers' CLIs (`latxa data prepare`, `latxa train`,
`latxa eval run`) in the same run, same inputs, same MLflow store (SQLite), alternating the two.

The pipeline side additionally runs the tracking check, the register step, spawns one Python process per
step (kfp's executor), and copies artifacts between steps. Reports each side's wall time, the ratio
pipeline / direct, and the per-step times kfp.local logged.

    .venv/bin/python benchmarks/bench_pipeline.py --max-steps 10 --eval-limit 10 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LATXA = str(Path(sys.executable).with_name("latxa"))


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return dt, proc.stdout + proc.stderr


def step_times(log: str) -> dict[str, float]:
    """Per-task seconds from kfp.local's 'Executing task' / 'finished with status' lines."""
    start: dict[str, datetime] = {}
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = re.match(r"(\d\d:\d\d:\d\d\.\d+) - INFO - (Executing task|Task) \S*'([\w-]+)'", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if not m:
            continue
        ts = datetime.strptime(m[1], "%H:%M:%S.%f")
        if m[2] == "Executing task":
            start[m[3]] = ts
        elif m[3] in start and "finished" in line:
            out[m[3]] = (ts - start.pop(m[3])).total_seconds()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="exp_2_101")
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--eval-limit", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LATXA_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false",
               "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        tiny = tmp / "tiny"
        run([LATXA, "model", "tiny", "--out", str(tiny)], env)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        direct, pipeline, steps = [], [], []
        for i in range(args.repeats):
            d = tmp / f"direct-{i}"
            t_prep, _ = run([LATXA, "data", "prepare", "--variant", args.variant, "--tokenizer", str(tiny),
                             "--out", str(d / "data")], env)
            t_train, _ = run([LATXA, "train", "--variant", args.variant, "--data", str(d / "data"), "--model", str(tiny),
                              "--out", str(d / "train"), "--max-steps", str(args.max_steps), "--tracking-uri", uri,
                              "--experiment", "bench-direct"], env)
            t_eval, _ = run([LATXA, "eval", "run", "--model", str(d / "train" / "model"), "--suite", "eu-mini",
                             "--limit", str(args.eval_limit), "--out", str(d / "eval"), "--variant", args.variant], 
                            {**env, "MLFLOW_TRACKING_URI": uri})
            direct.append(t_prep + t_train + t_eval)
            t_pipe, log = run([LATXA, "pipeline", "run", "--variants", args.variant, "--model", str(tiny),
                               "--max-steps", str(args.max_steps), "--eval-limit", str(args.eval_limit),
                               "--tracking-uri", uri, "--experiment", "bench-pipeline"], env)
            pipeline.append(t_pipe)
            steps.append(step_times(log))
            print(f"repeat {i}: direct {direct[-1]:.1f} s (prepare {t_prep:.1f}, train {t_train:.1f}, eval {t_eval:.1f}); "
                  f"pipeline {t_pipe:.1f} s; steps {steps[-1]}", flush=True)
        res = {"variant": args.variant, "max_steps": args.max_steps, "eval_limit": args.eval_limit,
               "repeats": args.repeats, "direct_s": statistics.median(direct), "pipeline_s": statistics.median(pipeline),
               "ratio_pipeline_over_direct": statistics.median(pipeline) / statistics.median(direct),
               "pipeline_steps_s": steps[-1], "load_average_1m": os.getloadavg()[0], "cpus": os.cpu_count()}
        print(json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
