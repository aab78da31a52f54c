"""`prepare(...)`: variant -> mixed, templated, tokenized, packed Parquet shards with stats and a cache.

Flow: resolve the variant's sources from the data config -> hash inputs into a cache key (hit:
done, no work) -> index files into tasks of whole records (byte ranges) -> shuffle tasks with
the study seed -> tokenize tasks in a process pool (bounded in-flight window, ordered results,
so the output does not depend on the number of processes) -> mix a window of task results ->
best-fit pack -> Parquet shards -> ``stats.json``, ``skips.jsonl``, ``manifest.json``.
Memory is bounded by the in-flight window and the packer's look-ahead, not by input size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latxa.components.data.sources import (
    DataError,
    ResolvedSource,
    file_format,
    load_data_config,
    resolve_sources,
)
from latxa.components.data.worker import Task, TaskResult, WorkerSpec, init_worker, run_task

FORMAT_VERSION = "latxa-packed/1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
MAX_SKIPS_IN_STATS = 200


@dataclass
class PrepareResult:
    out_dir: Path
    cache_key: str
    cache_hit: bool
    stats: dict
    manifest: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ hashing


def _file_digest(path: Path, memo: dict) -> str:
    st = path.stat()
    memo_key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if memo_key in memo:
        return memo[memo_key]
    h = hashlib.blake2b(digest_size=20)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    memo[memo_key] = h.hexdigest()
    return memo[memo_key]


class _DigestMemo(dict):
    """(path, size, mtime) -> content digest, persisted so re-hashing a 20 GB corpus is skipped."""

    def __init__(self, path: Path | None):
        super().__init__()
        self.path = path
        if path and path.is_file():
            try:
                self.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self))
            os.replace(tmp, self.path)


def tokenizer_digest(tok_dir: Path, memo: dict, ignore_template: bool = False) -> dict[str, str]:
    """Digests of the tokenizer files. ``ignore_template``: a forced chat template replaces the tokenizer's own, so
    its template files (and tokenizer_config.json's ``chat_template``) do not change the data: backbones with the
    same vocabulary and special tokens then share one prepared set."""
    names = [n for n in TOKENIZER_FILES if not (ignore_template and n.startswith("chat_template"))]
    out = {name: _file_digest(tok_dir / name, memo) for name in names if (tok_dir / name).is_file()}
    if ignore_template and "tokenizer_config.json" in out:
        try:
            cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
            cfg.pop("chat_template", None)
            out["tokenizer_config.json"] = hashlib.blake2b(json.dumps(cfg, sort_keys=True).encode(),
                                                           digest_size=20).hexdigest()
        except (OSError, ValueError):
            pass
    extra = tok_dir / "additional_chat_templates"
    if extra.is_dir() and not ignore_template:
        for f in sorted(extra.iterdir()):
            out[f"additional_chat_templates/{f.name}"] = _file_digest(f, memo)
    if "tokenizer.json" not in out and "tokenizer.model" not in out:
        raise DataError(f"{tok_dir} has no tokenizer files (tokenizer.json); pass a model or tokenizer folder.")
    return out


def resolve_tokenizer_dir(tokenizer: str | Path | None) -> Path:
    """A local folder: the given one, an offline Hugging Face cache entry, or the tiny model."""
    if tokenizer is None or str(tokenizer) == "":
        from latxa.components.tiny_model import ensure_tiny_model

        return Path(ensure_tiny_model())
    path = Path(tokenizer)
    if path.is_dir():
        return path
    from latxa.components.hub import ModelNotFound, looks_like_hub_name, resolve_model

    if looks_like_hub_name(str(tokenizer)):   # org/name[@revision], from the offline hub cache (HF_HOME)
        try:
            return resolve_model(str(tokenizer), weights=False).path
        except ModelNotFound as err:
            raise DataError(str(err)) from None
    raise DataError(f"Tokenizer folder {path} does not exist.")


# ------------------------------------------------------------------------------------------ indexing


CHUNK_RECORDS = 128          # records per task: fixed, so memory per task does not grow with the input
CHUNK_BYTES = 4 << 20        # ... and a task never reads more than this (long documents)


def _index_file(path: Path, chunk_records: int, paragraphs: bool, limit: int | None, capped: list):
    """Yield (start, end, first_line, records) ranges of whole records; stop after `limit` records.

    A range ends after ``chunk_records`` records or once it holds CHUNK_BYTES (at a record boundary).
    Appends True to ``capped`` when records were left unread because of the limit.
    """
    start, first_line, records, total, offset, line_no = 0, 1, 0, 0, 0, 0
    in_para = False
    with path.open("rb") as fh:
        for raw in fh:
            line_no += 1
            blank = not raw.strip()
            if paragraphs:
                if blank and in_para:
                    in_para = False
                    if records >= chunk_records or offset - start >= CHUNK_BYTES:  # cut only between paragraphs
                        end = offset
                        yield start, end, first_line, records
                        start, first_line, records = end, line_no, 0
                elif not blank and not in_para:
                    if limit is not None and total >= limit:
                        capped.append(True)
                        break
                    in_para = True
                    records += 1
                    total += 1
            elif not blank:
                if limit is not None and total >= limit:
                    capped.append(True)
                    break
                records += 1
                total += 1
            offset += len(raw)
            if not paragraphs and records and (records >= chunk_records or offset - start >= CHUNK_BYTES):
                yield start, offset, first_line, records
                start, first_line, records = offset, line_no + 1, 0
    if records:
        yield start, offset, first_line, records


def build_tasks(sources: list[ResolvedSource], chunk_records: int) -> tuple[list[Task], dict[str, dict]]:
    tasks: list[Task] = []
    info: dict[str, dict] = {}
    for src in sources:
        cfg = src.config
        left = cfg.max_documents
        n_records, capped = 0, []
        for fi, path in enumerate(src.files):
            if left is not None and left <= 0:
                capped.append(True)
                break
            fmt = file_format(path)
            paragraphs = fmt == "txt" and cfg.text_unit == "paragraph"
            file_records = 0
            for start, end, first_line, recs in _index_file(path, chunk_records, paragraphs, left, capped):
                for c in range(max(1, math.ceil(cfg.weight))):
                    tasks.append(Task(len(tasks), src.name, cfg.kind, fmt, str(path), fi, start, end, first_line, recs,
                                      c, cfg.weight, cfg.text_field, cfg.messages_field, cfg.text_unit))
                file_records += recs
            n_records += file_records
            if left is not None:
                left -= file_records
        info[src.name] = {"files": [str(f) for f in src.files], "records_indexed": n_records,
                          "max_documents": cfg.max_documents, "stopped_at_cap": bool(capped), "weight": cfg.weight}
    return tasks, info


# ------------------------------------------------------------------------------------------ prepare


def _materialize(src: Path, dst: Path) -> None:
    """Copy a finished dataset folder (hard links when possible)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, tmp, copy_function=link)
    _replace_dir(tmp, dst)


def _replace_dir(tmp: Path, dst: Path) -> None:
    if dst.exists():
        if dst.is_dir() and any(dst.iterdir()) and not (dst / "manifest.json").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"Output folder {dst} is not empty and is not a prepared dataset; refusing to overwrite it.")
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dst)


def _complete_manifest(out: Path) -> dict | None:
    """The manifest of a complete prepared dataset at ``out`` (shards and stats present), else None."""
    from latxa.components.data.load import read_manifest

    try:
        manifest = read_manifest(out)
    except DataError:
        return None
    return manifest if (out / "stats.json").is_file() else None


def prepare(
    variant: str,
    out: str | Path | None = None,
    *,
    config: str | Path | None = None,
    tokenizer: str | Path | None = None,
    seq_len: int | None = None,
    profile: str | None = "local",
    study_config: str | Path | None = None,
    chat_template: str | Path | None = None,
    on_error: str = "fail",
    num_proc: int | None = None,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    shard_rows: int | None = None,
    chunk_records: int | None = None,
    lookahead: int = 256,
    mix_tasks: int = 8,
    progress: bool | Callable[[int], Any] = True,
    sources: list[str] | None = None,
    smoke: bool = False,
) -> PrepareResult:
    """Prepare the packed dataset of one variant; see the module docstring and docs/data.md.

    ``sources`` prepares those named sources (or held-out sets of the data config) instead of the variant's; the
    result is then not tied to the variant (its manifest has no variant, its cache key does not name one)."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse
    from latxa.paths import state_dir

    t0 = time.perf_counter()
    if on_error not in ("fail", "skip"):
        raise DataError(f"on_error must be 'fail' or 'skip', not '{on_error}'.")
    v = parse(variant)
    if v.is_baseline and not sources:
        raise DataError(f"Variant {v.code} has no training data (it is the backbone {v.equivalent_model} itself).")
    study = load_config(study_config).resolve(profile, smoke=smoke).study
    study = study.model_copy(update={"seed": study.seed_for(v.code)})   # exp_2_010: the reference's seed 42
    seq_len = int(seq_len or study.data.seq_len)
    if seq_len < 2:
        raise DataError(f"seq_len must be at least 2, not {seq_len}.")
    shard_rows = int(shard_rows or max(1, (1 << 24) // seq_len))
    data_cfg, cfg_path = load_data_config(config)
    # The cache key names the mixture, not the variant: variants with the same sources, tokenizer and seed share
    # one prepared set (e.g. backbones with one vocabulary under a forced template).
    label = ("heldout:" + ",".join(sources)) if sources else ("mix:" + ",".join(sorted(v.sources)))
    sources = resolve_sources(data_cfg, cfg_path, list(sources or v.sources))
    tok_dir = resolve_tokenizer_dir(tokenizer)
    template_override = None
    if chat_template is not None:
        tp = Path(chat_template)
        if not tp.is_file():
            raise DataError(f"Chat template file {tp} does not exist.")
        template_override = tp.read_text(encoding="utf-8")
    else:  # the data config may force one template on every backbone (the reference's Llama-3.1-Instruct one)
        from latxa.components.data.sources import chat_template_text

        template_override = chat_template_text(data_cfg, cfg_path)

    cache_root = Path(cache_dir) if cache_dir else state_dir() / "cache" / "data"
    memo = _DigestMemo(cache_root / "file-digests.json" if use_cache else None)
    chunk_records = int(chunk_records or CHUNK_RECORDS)
    key_material = {
        "format": FORMAT_VERSION,
        "variant": label,
        "sources": [{"name": s.name, "config": s.config.model_dump(exclude={"files"}),
                     "files": [_file_digest(f, memo) for f in s.files]} for s in sources],
        "tokenizer": tokenizer_digest(tok_dir, memo, ignore_template=template_override is not None),
        "chat_template_override": template_override,
        "params": {"seq_len": seq_len, "seed": study.seed, "shuffle": study.data.shuffle, "train_on": study.data.train_on,
                   "on_error": on_error, "chunk_records": chunk_records, "lookahead": lookahead, "mix_tasks": mix_tasks,
                   "shard_rows": shard_rows},
    }
    memo.save()
    cache_key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:32]
    cached = cache_root / cache_key
    out = Path(out) if out else cached

    found = _complete_manifest(out)
    if found and found.get("cache_key") == cache_key:
        return PrepareResult(out, cache_key, True, json.loads((out / "stats.json").read_text()), found)
    if use_cache and out != cached:
        found = _complete_manifest(cached)
        if found and found.get("cache_key") == cache_key:
            _materialize(cached, out)
            return PrepareResult(out, cache_key, True, json.loads((out / "stats.json").read_text()), found)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        stats, manifest = _build(None if label.startswith("heldout:") else v.code, sources, tok_dir, template_override, tmp, seq_len, study, on_error, num_proc,
                                 shard_rows, chunk_records, lookahead, mix_tasks, progress, cache_key)
        stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, out)
    if use_cache and out != cached:
        try:
            _materialize(out, cached)
        except OSError:
            pass
    return PrepareResult(out, cache_key, False, stats, manifest)


def _load_tokenizer(tok_dir: Path):
    """The fast tokenizer of ``tok_dir``.

    ``PreTrainedTokenizerFast`` reads tokenizer.json/tokenizer_config.json directly; unlike
    ``AutoTokenizer`` it does not import the model's config class (and torch), which would cost
    more than preparing the shipped sample. Data preparation only needs the Rust tokenizer, the
    special tokens and the chat template, which are the same either way.
    """
    from transformers import PreTrainedTokenizerFast

    if not (tok_dir / "tokenizer.json").is_file():
        raise DataError(f"{tok_dir} has no tokenizer.json; data preparation needs a fast (Rust) tokenizer.")
    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
    except Exception as err:  # transformers raises many types for unusable folders
        raise DataError(f"Cannot load a tokenizer from {tok_dir}: {str(err).splitlines()[0]}") from None
    return tok


def _build(code, sources, tok_dir, template_override, tmp, seq_len, study, on_error, num_proc, shard_rows,
           chunk_records, lookahead, mix_tasks, progress, cache_key):
    from latxa.components.data.formatting import ChatFormatter, verify_renderer
    from latxa.components.data.packing import Packer, ShardWriter

    tok = _load_tokenizer(tok_dir)
    needs_chat = any(s.config.kind == "chat" for s in sources)
    template = template_override or tok.chat_template
    if needs_chat and not template:
        raise DataError(f"The tokenizer in {tok_dir} has no chat template; pass --chat-template FILE.")
    special = {k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)}
    formatter = ChatFormatter(template, special, study.data.train_on) if template else None
    if needs_chat:
        verify_renderer(tok, formatter)
    vocab = tok.get_vocab()
    bos_id = tok.bos_token_id
    doc_eos_id = vocab.get("<|end_of_text|>", tok.eos_token_id)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad_id is None:
        raise DataError(f"The tokenizer in {tok_dir} has neither a pad nor an EOS token to pad the last row with.")

    tasks, source_info = build_tasks(sources, chunk_records)
    order = np.arange(len(tasks))
    if study.data.shuffle:
        np.random.default_rng(study.seed).shuffle(order)
    ordered = [tasks[i] for i in order]

    num_proc = max(1, min(num_proc or os.cpu_count() or 1, len(ordered) or 1))
    spec = WorkerSpec(tok.backend_tokenizer.to_str(), template if needs_chat else None, special, bos_id, doc_eos_id,
                      study.data.train_on, study.seed, on_error, study.data.shuffle, threads=num_proc == 1)
    writer = ShardWriter(tmp, seq_len, shard_rows)
    packer = Packer(writer, seq_len, pad_id, lookahead)
    rng = np.random.default_rng([study.seed, 2])

    per_source = {s.name: Counter() for s in sources}
    reasons: Counter = Counter()
    first_skips: list[dict] = []
    boundary_tokens = 0
    total_records = sum(t.records for t in ordered)
    bar = _progress_bar(progress, total_records, code or "held-out set")
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []
    done_tasks = 0

    def flush_mix():
        if study.data.shuffle:
            rng.shuffle(pending)
        for _, ids, labels in pending:  # copies: a buffered view would pin its whole task's arrays
            packer.add(ids.copy(), labels.copy())
        pending.clear()

    with (tmp / "skips.jsonl").open("w", encoding="utf-8") as skips_fh:
        for res in _run(ordered, spec, num_proc):
            s = per_source[res.source]
            if res.error is not None:
                e = res.error
                raise DataError(f"{e['file']}:{e['line']}: {e['reason']} (use --on-error skip to skip bad records).")
            s["read"] += res.read
            s["written"] += res.written
            s["skipped"] += len(res.skips)
            for sk in res.skips:
                skips_fh.write(json.dumps({**sk, "source": res.source}, ensure_ascii=False) + "\n")
                reasons[_reason_class(sk["reason"])] += 1
                if len(first_skips) < MAX_SKIPS_IN_STATS:
                    first_skips.append({**sk, "source": res.source})
            s["examples"] += len(res.lengths)
            s["tokens"] += int(res.lengths.sum())
            s["trainable_tokens"] += res.trainable
            boundary_tokens += res.boundary_tokens
            offsets = np.concatenate([[0], np.cumsum(res.lengths)])
            for j in range(len(res.lengths)):
                a, b = offsets[j], offsets[j + 1]
                pending.append((res.source, res.ids[a:b], res.labels[a:b]))
            done_tasks += 1
            if done_tasks % mix_tasks == 0:
                flush_mix()
            if bar is not None:
                bar.update(_task_records(res, tasks))
        flush_mix()
        packer.finish()
    if bar is not None:
        bar.close()

    read = sum(s["read"] for s in per_source.values())
    written = sum(s["written"] for s in per_source.values())
    skipped = sum(s["skipped"] for s in per_source.values())
    if read != written + skipped:  # an internal invariant; never expected
        raise DataError(f"Internal accounting error: read {read} != written {written} + skipped {skipped}.")
    rows = writer.num_rows
    slots = rows * seq_len
    stats = {
        "variant": code,
        "cache_key": cache_key,
        "seq_len": seq_len,
        "read": read,
        "written": written,
        "skipped": skipped,
        "skipped_by_reason": dict(reasons),
        "skips": first_skips,
        "skips_file": "skips.jsonl",
        "examples": sum(s["examples"] for s in per_source.values()),
        "tokens": packer.tokens,
        "trainable_tokens": packer.trainable_tokens,
        "rows": rows,
        "slots": slots,
        "pad_tokens": packer.pad_tokens,
        "packing_efficiency": round(packer.tokens / slots, 6) if slots else 0.0,
        "split_documents": packer.split_documents,
        "boundary_tokens": boundary_tokens,
        "tokens_per_source": {n: int(c["tokens"]) for n, c in per_source.items()},
        "sources": {n: {**source_info[n], **{k: int(c[k]) for k in ("read", "written", "skipped", "examples", "tokens",
                                                                    "trainable_tokens")}}
                    for n, c in per_source.items()},
        "num_proc": num_proc,
        "tasks": len(ordered),
    }
    manifest = {
        "format": FORMAT_VERSION,
        "cache_key": cache_key,
        "variant": code,
        "seq_len": seq_len,
        "num_rows": rows,
        "tokenizer": str(tok_dir.resolve()),
        "pad_token_id": int(pad_id),
        "bos_token_id": bos_id,
        "doc_eos_token_id": doc_eos_id,
        "shards": writer.shards,
        "sources": [s.name for s in sources],
        "seed": study.seed,
        "train_on": study.data.train_on,
        "chat_template": template if needs_chat else None,   # what export writes into the tokenizer
    }
    return stats, manifest


def _task_records(res: TaskResult, tasks: list[Task]) -> int:
    return tasks[res.tid].records


def _reason_class(reason: str) -> str:
    """Group skip reasons (drop record-specific detail such as column numbers)."""
    return reason.split(" (")[0]


def _progress_bar(progress, total: int, code: str):
    if progress is False:
        return None
    if callable(progress) and progress is not True:
        class _Cb:
            def update(self, n):
                progress(n)

            def close(self):
                pass

        return _Cb()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="rec", desc=f"prepare {code}", dynamic_ncols=True, mininterval=0.5)


def _run(tasks: list[Task], spec: WorkerSpec, num_proc: int):
    """Run tasks, yielding results in task order; at most 2 x num_proc tasks in flight.

    A worker that dies (e.g. killed for memory) raises BrokenProcessPool instead of hanging.
    """
    if num_proc <= 1:
        init_worker(spec)
        for t in tasks:
            yield run_task(t)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(num_proc, mp_context=ctx, initializer=init_worker, initargs=(spec,))
    finished = False
    try:
        window: deque = deque()
        it = iter(tasks)
        for t in it:
            window.append(pool.submit(run_task, t))
            if len(window) >= 2 * num_proc:
                break
        while window:
            try:
                res = window.popleft().result()
            except BrokenProcessPool:
                raise DataError("A tokenizer process died (out of memory?); rerun with fewer --num-proc.") from None
            nxt = next(it, None)
            if nxt is not None:
                window.append(pool.submit(run_task, nxt))
            yield res
        finished = True
    finally:
        if not finished:  # an error or an interrupt: stop the workers now, do not drain the queue
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
