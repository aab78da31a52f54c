"""The per-record size limit (issue 18, finding 4): time and peak memory of one huge record.

One corpus file: 200 short documents and one long one (a single JSONL line). Measured in one run:

- baseline: the long record under a raised ``max_record_bytes`` (so it is tokenized, as every record was
  before the limit existed);
- limited: the same file with the default limit and ``--on-error skip`` (the record is reported, never read);
- the issue's 49.5 MB record with the default limit (skipped).

Peak RSS / PSS is summed over the process tree (sampled every 50 ms, see bench_data.peak_rss_of).

    .venv/bin/python benchmarks/bench_record_limit.py              # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_record_limit.py --mb 16      # size of the long record of the baseline
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_data import peak_rss_of  # noqa: E402

CHILD = r"""
import sys
from latxa.components.data import prepare
res = prepare("exp_1_100", sys.argv[2], config=sys.argv[1], tokenizer=sys.argv[3], on_error="skip", num_proc=1,
              use_cache=False, progress=False)
print(res.stats["written"], res.stats["skipped"], res.stats["tokens"])
"""


def corpus(folder: Path, mb: float) -> Path:
    path = folder / f"corpus-{mb:g}mb.jsonl"
    word = "etxea mendia itsasoa "
    long_text = (word * (int(mb * 2**20) // len(word) + 1))[: int(mb * 2**20)]
    with path.open("w", encoding="utf-8") as fh:
        for i in range(100):
            fh.write(json.dumps({"text": f"Dokumentu laburra {i}: {word * 5}"}) + "\n")
        fh.write(json.dumps({"text": long_text}) + "\n")
        for i in range(100, 200):
            fh.write(json.dumps({"text": f"Dokumentu laburra {i}: {word * 5}"}) + "\n")
    return path


def config(folder: Path, data: Path, limit: int | None) -> Path:
    cfg = folder / f"{data.stem}-{limit}.yaml"
    src = {"kind": "text", "files": [str(data)]}
    if limit:
        src["max_record_bytes"] = limit
    cfg.write_text(json.dumps({"sources": {"corpus_eu": src}}), encoding="utf-8")  # JSON is YAML
    return cfg


def measure(cfg: Path, out: Path, tok: str) -> dict:
    rss, pss, secs, stdout = peak_rss_of([sys.executable, "-c", CHILD, str(cfg), str(out), tok])
    written, skipped, tokens = (int(x) for x in stdout.split())
    return {"seconds": round(secs, 2), "peak_rss_mb": round(rss / 2**20, 1), "peak_pss_mb": round(pss / 2**20, 1),
            "written": written, "skipped": skipped, "tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=16.0, help="size of the long record (MiB)")
    args = ap.parse_args()
    from latxa.components.tiny_model import ensure_tiny_model

    tok = str(ensure_tiny_model())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = corpus(work, args.mb)
        base = measure(config(work, data, 4 * int(args.mb * 2**20)), work / "base", tok)
        limited = measure(config(work, data, None), work / "limited", tok)
        issue = measure(config(work, corpus(work, 49.5), None), work / "issue", tok)
    report = {"long_record_mb": args.mb, "baseline_tokenized": base, "limited_skipped": limited,
              "issue_49.5mb_skipped": issue,
              "time_ratio": round(limited["seconds"] / base["seconds"], 3),
              "peak_pss_ratio": round(limited["peak_pss_mb"] / base["peak_pss_mb"], 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
