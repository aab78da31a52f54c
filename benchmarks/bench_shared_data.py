"""Disk written and time to open a packed set when R ranks each open it: per-rank Arrow caches (the data layer's
``load_packed`` with each rank's own cache folder, what happens with a node-local or per-rank LATXA_HOME) versus one
shared memory-mapped copy built once (``latxa.components.train.shared_data``).

    python benchmarks/bench_shared_data.py --ranks 4 --rows 4000 --seq-len 1024

Prints bytes written per rank and in total, and the ratio shared / per-rank (goal: ~1/R, the one copy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANK = r"""
import os, sys, time
os.environ["LATXA_HOME"] = sys.argv[3]
t0 = time.perf_counter()
if sys.argv[1] == "per-rank":
    from latxa.components.data import load_packed
    ds = load_packed(sys.argv[2], format="numpy")
else:
    from latxa.components.train.shared_data import open_arrow
    ds = open_arrow(sys.argv[2])
rows = ds[[0, len(ds) - 1]]["input_ids"]
print(time.perf_counter() - t0)
"""


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _make_dataset(root: Path, rows: int, seq_len: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / "packed"
    (out / "shards").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 128000, size=(rows, seq_len), dtype=np.int32)
    col = pa.array(list(ids), type=pa.list_(pa.int32()))
    pos = pa.array([np.arange(seq_len, dtype=np.int32)] * rows, type=pa.list_(pa.int32()))
    pq.write_table(pa.table({"input_ids": col, "labels": col, "position_ids": pos}), out / "shards" / "shard-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"cache_key": "bench", "seq_len": seq_len, "num_rows": rows,
                                                   "shards": ["shards/shard-00000.parquet"]}))
    (out / "stats.json").write_text("{}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args()
    from latxa.components.train.shared_data import arrow_dir, ensure_arrow

    root = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    try:
        data = _make_dataset(root, args.rows, args.seq_len)
        tokens = args.rows * args.seq_len
        results = {}
        for mode in ("per-rank", "shared"):
            homes = [root / f"{mode}-home-{r}" for r in range(args.ranks)]
            t0 = time.perf_counter()
            if mode == "shared":
                ensure_arrow(data)                     # the one conversion (the prep job or the driver)
            build = time.perf_counter() - t0
            secs = [float(subprocess.run([sys.executable, "-c", RANK, mode, str(data), str(h)], check=True,
                                         capture_output=True, text=True).stdout.split()[-1]) for h in homes]
            written = sum(_du(h) for h in homes) + (_du(arrow_dir(data)) if mode == "shared" else 0)
            results[mode] = {"bytes_written": written, "bytes_per_token": written / tokens,
                             "open_s_per_rank": sum(secs) / len(secs), "one_time_build_s": build}
        ratio = results["shared"]["bytes_written"] / results["per-rank"]["bytes_written"]
        print(json.dumps({"ranks": args.ranks, "tokens": tokens, **results, "written_ratio_shared_per_rank": ratio},
                         indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main()
