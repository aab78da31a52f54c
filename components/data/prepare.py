"""`prepare(...)`: variant -> mixed, templated, tokenized, packed Parquet shards with stats and a cache.

Flow, one function per step: resolve the inputs (variant, study profile, data config, tokenizer) -> the
cache key over their content (a verified hit: done, no work) -> set up the tokenizer and formatter -> index
files into tasks of whole records (byte ranges, :mod:`.indexing`) -> shuffle tasks with the study seed ->
tokenize tasks in a process pool (bounded in-flight window, ordered results, so the output does not depend on
the number of processes; :mod:`.worker` formats) -> mix a window of task results -> best-fit pack -> Parquet
shards -> ``stats.json``, ``skips.jsonl``, ``manifest.json`` -> swap into ``--out`` and copy into the cache
(:mod:`.store` holds the rules for both folders).
Memory is bounded by the in-flight window, the per-record size limit and the packer's look-ahead, not by
input size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latxa.components.data import store
from latxa.components.data.indexing import CHUNK_RECORDS, build_tasks
from latxa.components.data.sources import DataError, ResolvedSource, load_data_config, resolve_sources
from latxa.components.data.store import FORMAT_VERSION, DigestMemo
from latxa.components.data.worker import Task, TaskResult, WorkerSpec, init_worker, run_task

CACHE_VERSION = 2    # 2: content-verified entries with shard digests, copies instead of hard links
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
MAX_SKIPS_IN_STATS = 200
MAX_SEQ_LEN = 131072  # Llama 3.1's context window (the study config's bound too)

__all__ = ["prepare", "PrepareResult", "FORMAT_VERSION", "MAX_SEQ_LEN", "resolve_tokenizer_dir"]


@dataclass
class PrepareResult:
    out_dir: Path
    cache_key: str
    cache_hit: bool
    stats: dict
    manifest: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Inputs:
    """Everything the output depends on, resolved and checked (step 1)."""

    code: str | None                 # the variant (None for held-out sets: not tied to a variant)
    label: str                       # what the cache key names: the mixture (its sources), not the variant
    sources: list[ResolvedSource]
    tok_dir: Path
    template_override: str | None
    seq_len: int
    seed: int
    shuffle: bool
    train_on: str
    on_error: str
    shard_rows: int
    chunk_records: int


# ------------------------------------------------------------------------------------------ inputs


def tokenizer_digest(tok_dir: Path, memo: DigestMemo, ignore_template: bool = False) -> dict[str, str]:
    """Digests of the tokenizer files. ``ignore_template``: a forced chat template replaces the tokenizer's own, so
    its template files (and tokenizer_config.json's ``chat_template``) do not change the data: backbones with the
    same vocabulary and special tokens then share one prepared set."""
    names = [n for n in TOKENIZER_FILES if not (ignore_template and n.startswith("chat_template"))]
    out = {name: memo.digest(tok_dir / name) for name in names if (tok_dir / name).is_file()}
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
            out[f"additional_chat_templates/{f.name}"] = memo.digest(f)
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


def _resolve_inputs(variant: str, *, config, tokenizer, seq_len, profile, study_config, chat_template, on_error,
                    shard_rows, chunk_records, sources=None, smoke=False) -> _Inputs:
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    if on_error not in ("fail", "skip"):
        raise DataError(f"on_error must be 'fail' or 'skip', not '{on_error}'.")
    v = parse(variant)
    if v.is_baseline and not sources:
        raise DataError(f"Variant {v.code} has no training data (it is the backbone {v.equivalent_model} itself).")
    study = load_config(study_config).resolve(profile, smoke=smoke).study
    seed = study.seed_for(v.code)                       # exp_2_010: the reference's seed 42
    seq_len = study.data.seq_len if seq_len is None else seq_len
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= MAX_SEQ_LEN:
        raise DataError(f"seq_len must be between 2 and {MAX_SEQ_LEN} (Llama 3.1's context), not {seq_len}.")
    if shard_rows is not None and (isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1):
        raise DataError(f"shard_rows must be a positive integer, not {shard_rows}.")
    data_cfg, cfg_path = load_data_config(config)
    # The cache key names the mixture, not the variant: variants with the same sources, tokenizer and seed share
    # one prepared set (e.g. backbones with one vocabulary under a forced template).
    label = ("heldout:" + ",".join(sources)) if sources else ("mix:" + ",".join(sorted(v.sources)))
    resolved = resolve_sources(data_cfg, cfg_path, list(sources or v.sources))
    tok_dir = resolve_tokenizer_dir(tokenizer)
    template_override = None
    if chat_template is not None:
        tp = Path(chat_template)
        if not tp.is_file():
            raise DataError(f"Chat template file {tp} does not exist.")
        try:
            template_override = tp.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"Chat template file {tp} is not UTF-8 text (byte {err.start}).") from None
    else:  # the data config may force one template on every backbone (the reference's Llama-3.1-Instruct one)
        from latxa.components.data.sources import chat_template_text

        template_override = chat_template_text(data_cfg, cfg_path)
    return _Inputs(code=None if sources else v.code, label=label, sources=resolved, tok_dir=tok_dir,
                   template_override=template_override, seq_len=seq_len, seed=seed, shuffle=study.data.shuffle,
                   train_on=study.data.train_on,
                   on_error=on_error, shard_rows=int(shard_rows or max(1, (1 << 24) // seq_len)),
                   chunk_records=int(chunk_records or CHUNK_RECORDS))


def _cache_key(inputs: _Inputs, memo: DigestMemo, *, lookahead: int, mix_tasks: int) -> str:
    """SHA-256 over the content of every input and every setting the output depends on."""
    material = {
        "format": FORMAT_VERSION,
        "cache_version": CACHE_VERSION,
        "variant": inputs.label,
        "sources": [{"name": s.name, "config": s.config.model_dump(exclude={"files"}),
                     "files": [memo.digest(f) for f in s.files]} for s in inputs.sources],
        "tokenizer": tokenizer_digest(inputs.tok_dir, memo, ignore_template=inputs.template_override is not None),
        "chat_template_override": inputs.template_override,
        "params": {"seq_len": inputs.seq_len, "seed": inputs.seed, "shuffle": inputs.shuffle,
                   "train_on": inputs.train_on, "on_error": inputs.on_error, "chunk_records": inputs.chunk_records,
                   "lookahead": lookahead, "mix_tasks": mix_tasks, "shard_rows": inputs.shard_rows},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


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
    """Prepare the packed dataset of one variant into ``out`` (default: its cache entry); see docs/data.md.

    ``sources`` prepares those named sources (or held-out sets of the data config) instead of the variant's; the
    result is then not tied to the variant (no variant in its manifest or cache key). ``smoke`` applies the study
    config's smoke overrides (the rehearsal)."""
    from latxa.paths import state_dir

    t0 = time.perf_counter()
    inputs = _resolve_inputs(variant, config=config, tokenizer=tokenizer, seq_len=seq_len, profile=profile,
                             study_config=study_config, chat_template=chat_template, on_error=on_error,
                             shard_rows=shard_rows, chunk_records=chunk_records, sources=sources, smoke=smoke)
    cache_root = Path(cache_dir) if cache_dir else state_dir() / "cache" / "data"
    memo = DigestMemo(cache_root / "file-digests.json" if use_cache else None)
    try:
        key = _cache_key(inputs, memo, lookahead=lookahead, mix_tasks=mix_tasks)
        cached = cache_root / key
        if not out and cached.exists() and store.own_manifest(cached) is None:
            shutil.rmtree(cached)  # a damaged entry of our own cache, about to be rebuilt in place
        target = store.check_out(Path(out) if out else cached)
        hit = _hit(target, cached if use_cache else None, key, memo)
        if hit is not None:
            return hit
        stats, manifest = _build_and_install(inputs, target, key, num_proc=num_proc, lookahead=lookahead,
                                             mix_tasks=mix_tasks, progress=progress, t0=t0)
        if use_cache and target != cached:
            _fill_cache(target, cached, manifest)
        elif target == cached:
            _make_read_only(cached, manifest)
        return PrepareResult(target, key, False, stats, manifest)
    except OSError as err:  # unreadable input, full disk, no permission: the environment, in one sentence
        raise DataError(f"{err.filename or 'A file'}: {err.strerror or err}.") from None
    finally:
        memo.save()


# ------------------------------------------------------------------------------------------ hits and the cache


def _result(folder: Path, key: str, manifest: dict) -> PrepareResult:
    return PrepareResult(folder, key, True, json.loads((folder / "stats.json").read_text(encoding="utf-8")), manifest)


def _hit(target: Path, cached: Path | None, key: str, memo: DigestMemo) -> PrepareResult | None:
    """A verified dataset with ``key`` at ``target`` (no work), or one copied from the cache, else None."""
    found = store.verified(target, key, memo)
    if found is not None:
        return _result(target, key, found)
    if cached is None or cached == target:
        return None
    found = store.verified(cached, key, memo)
    if found is None:
        if cached.exists():
            shutil.rmtree(cached, ignore_errors=True)  # a damaged entry of our own cache: rebuilt below
        return None
    tmp = store.new_tmp(target)
    try:
        store.copy_dataset(cached, tmp, found, read_only=False)
        store.install(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _result(target, key, found)


def _fill_cache(out: Path, cached: Path, manifest: dict) -> None:
    """Copy a new dataset into the cache (read-only files); a failure here only costs a later rebuild."""
    tmp = None
    try:
        if cached.exists():
            shutil.rmtree(cached)  # ours, and not verified (else it would have been a hit)
        tmp = store.new_tmp(cached)
        store.copy_dataset(out, tmp, manifest, read_only=True)
        os.replace(tmp, cached)
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _make_read_only(folder: Path, manifest: dict) -> None:
    for name in [*store.OWN_FILES, *manifest["shards"]]:
        if (folder / name).is_file():
            os.chmod(folder / name, 0o444)


# ------------------------------------------------------------------------------------------ build


def _build_and_install(inputs: _Inputs, target: Path, key: str, *, num_proc, lookahead, mix_tasks, progress,
                       t0: float) -> tuple[dict, dict]:
    """Build into a fresh sibling of ``target``, then swap it in; nothing is left behind on failure."""
    tmp = store.new_tmp(target)
    try:
        stats, manifest = _build(inputs, tmp, key, num_proc=num_proc, lookahead=lookahead, mix_tasks=mix_tasks,
                                 progress=progress)
        stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
        _write_json(tmp / "stats.json", stats)
        _write_json(tmp / "manifest.json", manifest)
        store.install(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats, manifest


def _write_json(path: Path, obj: dict) -> None:
    # backslashreplace: a reason quoting odd text can never make the file unwritable or invalid JSON
    with path.open("w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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


@dataclass
class _Setup:
    """The tokenizer side of a build (step 2): what workers need and what the manifest records."""

    spec: WorkerSpec
    template: str | None
    pad_id: int
    bos_id: int | None
    doc_eos_id: int | None


def _setup(inputs: _Inputs, num_proc: int) -> _Setup:
    from latxa.components.data.formatting import ChatFormatter, verify_renderer

    tok = _load_tokenizer(inputs.tok_dir)
    needs_chat = any(s.config.kind == "chat" for s in inputs.sources)
    template = inputs.template_override or tok.chat_template
    if needs_chat and not template:
        raise DataError(f"The tokenizer in {inputs.tok_dir} has no chat template; pass --chat-template FILE.")
    special = {k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)}
    if needs_chat:
        verify_renderer(tok, ChatFormatter(template, special, inputs.train_on))
    doc_eos_id = tok.get_vocab().get("<|end_of_text|>", tok.eos_token_id)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad_id is None:
        raise DataError(f"The tokenizer in {inputs.tok_dir} has neither a pad nor an EOS token to pad the last row with.")
    spec = WorkerSpec(tokenizer_json=tok.backend_tokenizer.to_str(), template=template if needs_chat else None,
                      special=special, bos_id=tok.bos_token_id, doc_eos_id=doc_eos_id, train_on=inputs.train_on,
                      seed=inputs.seed, on_error=inputs.on_error, shuffle=inputs.shuffle, threads=num_proc == 1)
    return _Setup(spec=spec, template=template if needs_chat else None, pad_id=int(pad_id), bos_id=tok.bos_token_id, doc_eos_id=doc_eos_id)


def _ordered_tasks(inputs: _Inputs) -> tuple[list[Task], dict[str, dict]]:
    """Step 3, record reading: every source indexed into tasks, shuffled with the study seed."""
    tasks, source_info = build_tasks(inputs.sources, inputs.chunk_records)
    order = np.arange(len(tasks))
    if inputs.shuffle:
        np.random.default_rng(inputs.seed).shuffle(order)
    return [tasks[i] for i in order], source_info


class _Tally:
    """Counts per source (read = written + skipped), skip reasons, and the skips file."""

    def __init__(self, sources: list[ResolvedSource], skips_fh):
        self.per_source = {s.name: Counter() for s in sources}
        self.reasons: Counter = Counter()
        self.first_skips: list[dict] = []
        self.boundary_tokens = 0
        self._fh = skips_fh

    def add(self, res: TaskResult) -> None:
        if res.error is not None:
            e = res.error
            raise DataError(f"{e['file']}:{e['line']}: {e['reason']} (use --on-error skip to skip bad records).")
        s = self.per_source[res.source]
        s["read"] += res.read
        s["written"] += res.written
        s["skipped"] += len(res.skips)
        for sk in res.skips:
            self._fh.write(json.dumps({**sk, "source": res.source}, ensure_ascii=False) + "\n")
            self.reasons[_reason_class(sk["reason"])] += 1
            if len(self.first_skips) < MAX_SKIPS_IN_STATS:
                self.first_skips.append({**sk, "source": res.source})
        s["examples"] += len(res.lengths)
        s["tokens"] += int(res.lengths.sum())
        s["trainable_tokens"] += res.trainable
        self.boundary_tokens += res.boundary_tokens

    def total(self, key: str) -> int:
        return sum(c[key] for c in self.per_source.values())

    def check(self) -> None:
        read, written, skipped = self.total("read"), self.total("written"), self.total("skipped")
        if read != written + skipped:  # an internal invariant; never expected
            raise DataError(f"Internal accounting error: read {read} != written {written} + skipped {skipped}.")
        for name, c in self.per_source.items():
            if c["written"] == 0:
                first = next((f" (first: {k['file']}:{k['line']}: {k['reason']})" for k in self.first_skips
                              if k["source"] == name), "")
                raise DataError(f"Source '{name}' gave no records (read {c['read']}, skipped {c['skipped']}){first}; "
                                "a variant without one of its sources is another variant, so nothing was written.")


class _Mixer:
    """Step 5, packing: documents of a window of ``mix_tasks`` task results, shuffled, into the packer."""

    def __init__(self, packer, *, seed: int, shuffle: bool, mix_tasks: int):
        self.packer, self.shuffle, self.mix_tasks = packer, shuffle, mix_tasks
        self.rng = np.random.default_rng([seed, 2])
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.tasks = 0

    def add(self, res: TaskResult) -> None:
        offsets = np.concatenate([[0], np.cumsum(res.lengths)])
        for j in range(len(res.lengths)):
            a, b = offsets[j], offsets[j + 1]
            self.pending.append((res.ids[a:b], res.labels[a:b]))
        self.tasks += 1
        if self.tasks % self.mix_tasks == 0:
            self.flush()

    def flush(self) -> None:
        if self.shuffle:
            self.rng.shuffle(self.pending)
        for ids, labels in self.pending:  # copies: a buffered view would pin its whole task's arrays
            self.packer.add(ids.copy(), labels.copy())
        self.pending.clear()


def _build(inputs: _Inputs, tmp: Path, cache_key: str, *, num_proc, lookahead, mix_tasks, progress) -> tuple[dict, dict]:
    """Tokenize, mask, pack and write shards into ``tmp``; returns (stats, manifest)."""
    from latxa.components.data.packing import Packer, ShardWriter

    ordered, source_info = _ordered_tasks(inputs)
    num_proc = max(1, min(num_proc or os.cpu_count() or 1, len(ordered) or 1))
    setup = _setup(inputs, num_proc)
    writer = ShardWriter(tmp, inputs.seq_len, inputs.shard_rows)
    packer = Packer(writer, inputs.seq_len, setup.pad_id, lookahead)
    mixer = _Mixer(packer, seed=inputs.seed, shuffle=inputs.shuffle, mix_tasks=mix_tasks)
    bar = _progress_bar(progress, sum(t.records for t in ordered), inputs.code or "held-out set")
    with (tmp / "skips.jsonl").open("w", encoding="utf-8", errors="backslashreplace") as skips_fh:
        tally = _Tally(inputs.sources, skips_fh)
        # step 4, formatting, happens in the workers; results come back in task order
        for task, res in zip(ordered, _run(ordered, setup.spec, num_proc), strict=True):
            tally.add(res)
            mixer.add(res)
            if bar is not None:
                bar.update(task.records)
        tally.check()
        mixer.flush()
        packer.finish()
    if bar is not None:
        bar.close()
    return (_stats(inputs, tally, packer, writer, cache_key=cache_key, source_info=source_info, num_proc=num_proc,
                   tasks=len(ordered)),
            _manifest(inputs, setup, writer, tmp, cache_key))


def _stats(inputs: _Inputs, tally: _Tally, packer, writer, *, cache_key: str, source_info: dict, num_proc: int,
           tasks: int) -> dict:
    """Step 6: stats.json."""
    slots = writer.num_rows * inputs.seq_len
    counted = ("read", "written", "skipped", "examples", "tokens", "trainable_tokens")
    return {
        "variant": inputs.code,
        "cache_key": cache_key,
        "seq_len": inputs.seq_len,
        "read": tally.total("read"),
        "written": tally.total("written"),
        "skipped": tally.total("skipped"),
        "skipped_by_reason": dict(tally.reasons),
        "skips": tally.first_skips,
        "skips_file": "skips.jsonl",
        "examples": tally.total("examples"),
        "tokens": packer.tokens,
        "trainable_tokens": packer.trainable_tokens,
        "rows": writer.num_rows,
        "slots": slots,
        "pad_tokens": packer.pad_tokens,
        "packing_efficiency": round(packer.tokens / slots, 6) if slots else 0.0,
        "split_documents": packer.split_documents,
        "boundary_tokens": tally.boundary_tokens,
        "tokens_per_source": {n: int(c["tokens"]) for n, c in tally.per_source.items()},
        "sources": {n: {**source_info[n], **{k: int(c[k]) for k in counted}} for n, c in tally.per_source.items()},
        "num_proc": num_proc,
        "tasks": tasks,
    }


def _manifest(inputs: _Inputs, setup: _Setup, writer, tmp: Path, cache_key: str) -> dict:
    """Step 6: manifest.json, with the shard digests every later hit is verified against."""
    return {
        "format": FORMAT_VERSION,
        "writer": store.WRITER,
        "cache_key": cache_key,
        "variant": inputs.code,
        "seq_len": inputs.seq_len,
        "num_rows": writer.num_rows,
        "tokenizer": str(inputs.tok_dir.resolve()),
        "pad_token_id": setup.pad_id,
        "bos_token_id": setup.bos_id,
        "doc_eos_token_id": setup.doc_eos_id,
        "shards": writer.shards,
        "shard_digests": store.shard_digests(tmp, writer.shards),
        "sources": [s.name for s in inputs.sources],
        "seed": inputs.seed,
        "train_on": inputs.train_on,
        "chat_template": setup.template,      # what export writes into the tokenizer (None: no chat sources)
    }


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
