"""Benchmark: evaluation throughput with lm-eval's batch size ``auto`` against batch size 1, on CPU, through our
runner (``run_eval``), on the same model and documents.

The suite is ``eu-mini`` (shipped with the project, offline) or, with ``--datasets MIRROR``, any study suite
read from a mirror. Runs alternate (1, auto, 1, auto, ...) after one untimed warm-up of each, so caches are
equally warm; each run is timed around ``run_eval`` (wall and process CPU time) and counts the log-likelihood
requests lm-eval scored (from its per-sample logs). Reports medians and the ratio auto / 1 (documents per second).

The vLLM-vs-hf comparison needs a GPU: with ``--device cuda`` and vllm installed it times ``--backend vllm``
against ``hf`` the same way; on a machine without either it says so and skips it.

    .venv/bin/python benchmarks/bench_eval.py --limit 40 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
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


def _requests(run) -> tuple[int, int]:
    """(documents, log-likelihood requests) lm-eval scored in a run, from its sample logs."""
    docs = reqs = 0
    for path in run.samples_paths:
        for line in path.read_text(encoding="utf-8").split("\n"):   # not splitlines(): texts hold U+2028
            if line.strip():
                docs += 1
                reqs += len(json.loads(line).get("resps") or [])
    return docs, reqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: build the tiny model in a temp folder)")
    ap.add_argument("--suite", default="eu-mini")
    ap.add_argument("--datasets", help="dataset mirror for study suites")
    ap.add_argument("--task", action="append", help="only these tasks (repeatable)")
    ap.add_argument("--limit", type=int, default=40, help="documents per task (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import logging

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    from latxa.components.eval.runner import run_eval
    from latxa.components.tiny_model import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    model = Path(args.model) if args.model else build_tiny_model(tmp / "tiny")
    common = dict(limit=args.limit or None, tasks=args.task, device=args.device, datasets=args.datasets,
                  progress=lambda _msg: None)

    def timed(label: str, i: int, **kw) -> dict:
        w, c = time.perf_counter(), time.process_time()
        run = run_eval(str(model), args.suite, tmp / f"{label}-{i}", **common, **kw)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        docs, reqs = _requests(run)
        return {"wall_s": wall, "cpu_s": cpu, "docs": docs, "requests": reqs}

    def compare(a: tuple[str, dict], b: tuple[str, dict]) -> dict:
        (na, kwa), (nb, kwb) = a, b
        timed(na, -1, **kwa), timed(nb, -1, **kwb)   # warm-up
        runs: dict[str, list[dict]] = {na: [], nb: []}
        for i in range(args.repeats):
            order = ((na, kwa), (nb, kwb)) if i % 2 == 0 else ((nb, kwb), (na, kwa))   # alternate: drift cancels
            for name, kw in order:
                runs[name].append(timed(name, i, **kw))
            print(f"repeat {i}: " + ", ".join(f"{n} {runs[n][-1]['wall_s']:.2f}s wall" for n in runs), flush=True)
        med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")} for n, rs in runs.items()}
        docs = runs[na][0]["docs"]
        assert all(r["docs"] == docs for rs in runs.values() for r in rs), "both sides must score the same documents"
        tput = {n: docs / med[n]["wall_s"] for n in runs}
        return {"documents": docs, "requests": runs[na][0]["requests"], "median": med, "docs_per_s": tput,
                f"ratio_{nb}_over_{na}": tput[nb] / tput[na], "runs": runs}

    out = {"suite": args.suite, "tasks": args.task, "limit_per_task": args.limit, "repeats": args.repeats,
           "device": args.device, "cpu_count": os.cpu_count()}
    out["batch"] = compare(("batch1", {"batch_size": 1}), ("auto", {"batch_size": "auto"}))
    if args.device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        out["backend"] = compare(("hf", {"backend": "hf"}), ("vllm", {"backend": "vllm"}))
    else:
        out["backend"] = "skipped: vLLM vs hf needs a GPU (--device cuda) and the vllm package"
    out["loadavg_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps({k: v for k, v in out.items()}, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
