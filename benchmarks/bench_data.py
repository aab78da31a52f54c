"""Data-preparation benchmarks (issue #3, Performance). Figures go to BENCHMARKS.md.

Measured in one run, each as a ratio against a baseline measured in the same run:

1. throughput: end-to-end ``prepare`` tokens/s vs the raw throughput of the same fast tokenizer
   encoding the same text (corpus documents and rendered conversations) in one batched call;
2. packing efficiency on the sample mixture (non-pad tokens / slots) at several seq_len;
3. memory: peak RSS of the whole process tree (main + workers) for 1x and 4x the input size;
4. naive baseline: ``datasets.map`` rendering + tokenizing with padding to seq_len (truncation, no
   packing) vs ``prepare``: time, padding tokens, tokens lost to truncation.

Larger inputs are the shipped sample repeated with shuffled line order (seeded).

    .venv/bin/python benchmarks/bench_data.py                 # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_data.py --quick         # smaller inputs, one repetition
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from latxa.paths import SAMPLE_DATA  # noqa: E402

FILES = {"corpus_eu": SAMPLE_DATA / "corpus" / "eu_corpus.jsonl", "inst_eu": SAMPLE_DATA / "instructions" / "eu.jsonl",
         "inst_en": SAMPLE_DATA / "instructions" / "en.jsonl"}
KIND = {"corpus_eu": "text", "inst_eu": "chat", "inst_en": "chat"}


def make_inputs(folder: Path, scale: int, seed: int = 0, only: tuple[str, ...] = tuple(FILES)) -> Path:
    """The sample repeated `scale` times with shuffled lines; returns a data config pointing at it."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = {}
    for name, path in FILES.items():
        if name not in only:
            continue
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()] * scale
        rng.shuffle(lines)
        out = folder / f"{name}.jsonl"
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        sources[name] = {"kind": KIND[name], "files": [str(out)]}
    cfg = folder / "data.yaml"
    cfg.write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")
    return cfg


def texts_of(cfg: Path, tok) -> list[str]:
    """The exact strings prepare tokenizes: corpus text and conversations rendered by the chat template."""
    import yaml

    out = []
    for src in yaml.safe_load(cfg.read_text())["sources"].values():
        for line in Path(src["files"][0]).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out.append(row["text"] if src["kind"] == "text" else
                       tok.apply_chat_template(row["conversations"], tokenize=False))
    return out


def bench_throughput(cfg: Path, tok_dir: Path, seq_len: int, reps: int, work: Path, variant: str = "exp_2_111") -> dict:
    from transformers import PreTrainedTokenizerFast

    from latxa.components.data import prepare

    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    texts = texts_of(cfg, tok)
    raw, ours, stats = [], [], None
    for r in range(reps):
        # A freshly loaded tokenizer each time, like prepare's workers: no warm BPE cache from the last rep.
        tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
        t0 = time.perf_counter()
        enc = tok(texts, add_special_tokens=False)
        dt = time.perf_counter() - t0
        raw_tokens = sum(len(x) for x in enc["input_ids"])
        raw.append(raw_tokens / dt)
        out = work / f"thr{r}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = prepare(variant, out, config=cfg, tokenizer=tok_dir, seq_len=seq_len, use_cache=False,
                      progress=False)
        dt = time.perf_counter() - t0
        stats = res.stats
        ours.append(stats["tokens"] / dt)
    raw_med, ours_med = statistics.median(raw), statistics.median(ours)
    return {"documents": len(texts), "raw_tokens": raw_tokens, "prepare_tokens": stats["tokens"],
            "raw_tokens_per_s": round(raw_med), "prepare_tokens_per_s": round(ours_med),
            "ratio": round(ours_med / raw_med, 3), "reps": reps, "num_proc": stats["num_proc"]}


def bench_packing(tok_dir: Path, work: Path) -> list[dict]:
    from latxa.components.data import prepare

    rows = []
    for seq_len in (256, 2048, 8192):
        s = prepare("exp_2_111", work / f"pack{seq_len}", tokenizer=tok_dir, seq_len=seq_len, use_cache=False,
                    progress=False).stats
        rows.append({"seq_len": seq_len, "rows": s["rows"], "tokens": s["tokens"], "pad_tokens": s["pad_tokens"],
                     "packing_efficiency": s["packing_efficiency"], "split_documents": s["split_documents"],
                     "examples": s["examples"]})
    return rows


_RSS_CHILD = r"""
import sys, time
from latxa.components.data import prepare
res = prepare("exp_2_111", sys.argv[2], config=sys.argv[1], tokenizer=sys.argv[3], seq_len=int(sys.argv[4]),
              use_cache=False, progress=False)
print(res.stats["tokens"])
"""


def peak_rss_of(cmd: list[str]) -> tuple[int, int, float, str]:
    """Run `cmd`; sample its whole process tree every 50 ms.

    Returns (peak summed RSS, peak summed PSS, seconds, stdout). RSS counts pages the forked workers
    share with the main process once per process; PSS splits shared pages between them, so the PSS
    sum is the tree's real footprint.
    """
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    ps = psutil.Process(proc.pid)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        try:
            infos = []
            for p in [ps] + ps.children(recursive=True):
                try:
                    infos.append(p.memory_full_info())
                except psutil.Error:
                    pass
            peak_rss = max(peak_rss, sum(i.rss for i in infos))
            peak_pss = max(peak_pss, sum(i.pss for i in infos))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err)
    return peak_rss, peak_pss, time.perf_counter() - t0, out


def bench_memory(tok_dir: Path, base_scale: int, seq_len: int, work: Path) -> dict:
    result = {}
    for factor in (1, 4):
        cfg = make_inputs(work / f"mem{factor}", base_scale * factor, seed=factor)
        size = sum(f.stat().st_size for f in (work / f"mem{factor}").glob("*.jsonl"))
        peak, pss, secs, out = peak_rss_of([sys.executable, "-c", _RSS_CHILD, str(cfg), str(work / f"memout{factor}"),
                                       str(tok_dir), str(seq_len)])
        result[f"{factor}x"] = {"input_mb": round(size / 2**20, 1), "tokens": int(out.strip()),
                                "peak_rss_mb": round(peak / 2**20, 1), "peak_pss_mb": round(pss / 2**20, 1),
                                "seconds": round(secs, 1)}
        shutil.rmtree(work / f"memout{factor}", ignore_errors=True)
    result["ratio_4x_over_1x"] = round(result["4x"]["peak_rss_mb"] / result["1x"]["peak_rss_mb"], 3)
    result["pss_ratio_4x_over_1x"] = round(result["4x"]["peak_pss_mb"] / result["1x"]["peak_pss_mb"], 3)
    return result


def bench_naive(cfg: Path, tok_dir: Path, seq_len: int, work: Path) -> dict:
    """HF datasets.map: render + tokenize with padding to seq_len and truncation, no packing."""
    import datasets
    import yaml
    from transformers import PreTrainedTokenizerFast

    from latxa.components.data import prepare

    datasets.disable_progress_bars()
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    cache = work / "naive-cache"
    t0 = time.perf_counter()
    parts = []
    for src in yaml.safe_load(cfg.read_text())["sources"].values():
        ds = datasets.load_dataset("json", data_files=src["files"], split="train", cache_dir=str(cache))
        if src["kind"] == "chat":
            def fn(batch):
                texts = [tok.apply_chat_template(c, tokenize=False) for c in batch["conversations"]]
                return tok(texts, add_special_tokens=False, padding="max_length", truncation=True, max_length=seq_len,
                           return_length=True)
        else:
            def fn(batch):
                return tok(batch["text"], padding="max_length", truncation=True, max_length=seq_len, return_length=True)
        parts.append(ds.map(fn, batched=True, num_proc=2, remove_columns=ds.column_names))
    naive = datasets.concatenate_datasets(parts).shuffle(seed=33)
    naive = naive.flatten_indices()
    naive_s = time.perf_counter() - t0
    rows = len(naive)
    real = int(sum(sum(m) for m in naive["attention_mask"]))
    full = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts_of(cfg, tok))
    t0 = time.perf_counter()
    res = prepare("exp_2_111", work / "ours-vs-naive", config=cfg, tokenizer=tok_dir, seq_len=seq_len,
                  use_cache=False, progress=False)
    ours_s = time.perf_counter() - t0
    s = res.stats
    return {"seq_len": seq_len, "naive_rows": rows, "naive_pad_tokens": rows * seq_len - real,
            "naive_tokens_kept": real, "naive_tokens_truncated": max(0, full - (real - _corpus_bos(cfg))),
            "naive_seconds": round(naive_s, 2), "ours_rows": s["rows"], "ours_pad_tokens": s["pad_tokens"],
            "ours_tokens": s["tokens"], "ours_seconds": round(ours_s, 2),
            "rows_ratio": round(s["rows"] / rows, 3), "time_ratio": round(ours_s / naive_s, 3),
            "pad_tokens_saved": rows * seq_len - real - s["pad_tokens"]}


def _corpus_bos(cfg: Path) -> int:
    import yaml

    src = yaml.safe_load(cfg.read_text())["sources"]["corpus_eu"]
    return sum(1 for line in Path(src["files"][0]).read_text().splitlines() if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs, one repetition")
    ap.add_argument("--scale", type=int, default=None, help="sample repetitions for throughput/naive (default 8)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the tiny model)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--breakdown", action="store_true",
                    help="only the throughput ratio: the mixture, corpus-only and conversations-only inputs")
    args = ap.parse_args()

    from latxa.components.tiny_model import ensure_tiny_model

    tok_dir = Path(args.tokenizer) if args.tokenizer else Path(ensure_tiny_model())
    scale = args.scale or (4 if args.quick else 8)
    reps = 1 if args.quick else 5
    work = Path(tempfile.mkdtemp(prefix="latxa-bench-data-"))
    os.environ["LATXA_HOME"] = str(work / "home")
    try:
        if args.breakdown:
            results = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 1) for x in os.getloadavg()]}}
            for variant, only in (("exp_2_111", tuple(FILES)), ("exp_2_100", ("corpus_eu",)),
                                  ("exp_0_011", ("inst_eu", "inst_en"))):
                cfg = make_inputs(work / variant, scale, only=only)
                results[f"throughput_{variant}"] = bench_throughput(cfg, tok_dir, args.seq_len, reps, work, variant)
            results["machine"]["load_avg_at_end"] = [round(x, 1) for x in os.getloadavg()]
            print(json.dumps(results, indent=2))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
            return
        cfg = make_inputs(work / "inputs", scale)
        results = {
            "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 1) for x in os.getloadavg()]},
            "throughput": bench_throughput(cfg, tok_dir, args.seq_len, reps, work),
            "packing": bench_packing(tok_dir, work),
            "memory": bench_memory(tok_dir, 2 if args.quick else 8, args.seq_len, work),
            "naive": bench_naive(cfg, tok_dir, args.seq_len, work),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_avg_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
