"""Benchmark: wall time of the eu-mini suite on the tiny model through our runner (`run_eval`) versus calling
``lm_eval.simple_evaluate`` directly with the same arguments, in the same process.

Both sides build their lm-eval TaskManager over the eu-mini YAMLs, load the model and evaluate; the runner
additionally checks the model folder, writes lm-eval's results JSON and per-sample logs (sample logging is
on for both). Runs alternate (runner, direct, runner, direct, ...) after one untimed warm-up of each, so
caches and page cache are equally warm. Reports medians of wall time and of process CPU time and the
overhead ratios (goal <= 1.1); on a shared, oversubscribed machine the CPU-time ratio is the stable one.

    .venv/bin/python benchmarks/bench_eval.py --limit 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: build the tiny model in a temp folder)")
    ap.add_argument("--limit", type=int, default=100, help="documents per task (0 = the whole eu-mini suite)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import logging

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    from lm_eval import simple_evaluate

    from latxa.components.eval.registry import default_registry
    from latxa.components.eval.runner import model_spec, run_eval, simple_evaluate_kwargs, task_manager
    from latxa.components.tiny_model import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    model = Path(args.model) if args.model else build_tiny_model(tmp / "tiny")
    limit = args.limit or None
    suite = default_registry().suite("eu-mini")

    def timed(fn) -> tuple[float, float]:
        """(wall seconds, process CPU seconds: all threads; far less sensitive to a busy machine than wall time)."""
        w, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w, time.process_time() - c

    def ours(i: int) -> tuple[float, float]:
        return timed(lambda: run_eval(str(model), "eu-mini", tmp / f"ours-{i}", limit=limit))

    def direct(_i: int) -> tuple[float, float]:
        def go():
            spec = model_spec(str(model), check_loads=False)
            kwargs = simple_evaluate_kwargs(spec, suite.tasks, limit=limit, tm=task_manager(suite))
            res = simple_evaluate(**kwargs)
            assert res is not None and set(res["results"]) >= set(suite.tasks)
        return timed(go)

    ours(-1), direct(-1)  # warm-up (imports, tokenizer caches, page cache)
    checks = []
    for _ in range(5):  # the runner's own extra step: the model-folder check (AutoConfig + AutoTokenizer)
        c = time.process_time()
        model_spec(str(model))
        checks.append(time.process_time() - c)
    wall = {"runner": [], "direct": []}
    cpu = {"runner": [], "direct": []}
    for i in range(args.repeats):
        pair = (("runner", ours), ("direct", direct))
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):   # alternate the order: drift cancels out
            w, c = fn(i)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"repeat {i}: runner {wall['runner'][-1]:.2f}s wall / {cpu['runner'][-1]:.2f}s cpu, direct simple_evaluate "
              f"{wall['direct'][-1]:.2f}s wall / {cpu['direct'][-1]:.2f}s cpu", flush=True)
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"limit_per_task": limit, "repeats": args.repeats, "tasks": suite.tasks,
           "median_wall_s": med_wall, "median_cpu_s": med_cpu, "wall_s": wall, "cpu_s": cpu,
           "overhead_ratio_wall": med_wall["runner"] / med_wall["direct"],
           "overhead_ratio_cpu": med_cpu["runner"] / med_cpu["direct"],
           # noise on a shared machine only ever adds time, so the fastest runs are the cleanest comparison
           "overhead_ratio_wall_min": min(wall["runner"]) / min(wall["direct"]),
           "overhead_ratio_cpu_min": min(cpu["runner"]) / min(cpu["direct"]), "goal": 1.1,
           "model_check_cpu_s": statistics.median(checks), "cpu_count": os.cpu_count(), "loadavg_1m_at_end": os.getloadavg()[0]}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
