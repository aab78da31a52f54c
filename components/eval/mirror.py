"""Where an evaluation's datasets come from: an offline mirror, the bias data folder, or the Hugging Face cache.

Compute nodes have no internet, so ``latxa eval fetch --suite paper --to DIR`` (run where there is) writes every
dataset, config and split a suite reads into one folder, and ``latxa eval run --datasets DIR`` (or
``LATXA_EVAL_DATASETS=DIR``) reads them from there::

    DIR/mirror.json                                   what was fetched, from where, how many rows per split
    DIR/<dataset path>/<config or "default">/<split>.jsonl      e.g. DIR/HiTZ/BertaQA/eu/test.jsonl
    DIR/json/<relative data file>                     the bias tasks' local files (see below)

Task configs keep the dataset ids the study recorded (``HiTZ/BertaQA``, ``piqa``, ...): during a run
:meth:`DataSources.active` answers lm-eval's ``datasets.load_dataset(path, name)`` calls from the mirror (or,
without one, from the HF cache, offline). Two ids need more than that:

* ``piqa``: its loading script no longer runs under datasets >= 4, so it is fetched from ``baber/piqa`` (a
  parquet copy of the same rows, lm-eval 0.4.13's own choice) and filed under ``piqa``.
* BBQ / BasqBBQ (``dataset_path: json``): the data is not public. Their ``data_files`` are relative paths
  into a folder laid out like the study's lm-eval tasks folder (``bbq/bbq/data/Age_ambig.jsonl``,
  ``bbq/fewshot/noAdin_4s.jsonl``, ``basqbbq/BasqBBQ/data/BasqBBQ/...``): ``--bias-data DIR``,
  ``LATXA_BIAS_DATA``, or ``MIRROR/json`` when the mirror has one (``fetch --bias-data`` copies it there).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from latxa.components.eval.errors import EvalError
from latxa.jsonl import iter_lines

MIRROR_ENV = "LATXA_EVAL_DATASETS"
BIAS_ENV = "LATXA_BIAS_DATA"
MANIFEST = "mirror.json"
LOCAL_FILES = "json"            # the dataset_path of tasks that read local files
DEFAULT_CONFIG = "default"

#: (path, config) as recorded -> where to fetch those rows from, when the recorded id no longer loads.
FETCH_FROM: dict[tuple[str, str | None], tuple[str, str | None]] = {("piqa", None): ("baber/piqa", None)}


def fetch_hint(suite: str, mirror: str | Path | None = None) -> str:
    return f"`latxa eval fetch --suite {suite} --to {mirror or 'DIR'}` where there is internet"


@dataclass(frozen=True)
class DatasetRef:
    """One dataset (id + config) a suite reads, the splits it needs and the tasks that need it."""

    path: str
    name: str | None
    splits: tuple[str, ...]
    tasks: tuple[str, ...]
    data_files: tuple[tuple[str, str], ...] = ()    # local-file tasks: (split, path relative to the bias folder)

    @property
    def local(self) -> bool:
        return self.path == LOCAL_FILES

    @property
    def label(self) -> str:
        if self.local:
            return ", ".join(p for _, p in self.data_files)
        return self.path + (f" (config {self.name})" if self.name else "")

    def mirror_dir(self, root: Path) -> Path:
        return root / self.path / (self.name or DEFAULT_CONFIG)

    def as_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "splits": list(self.splits), "tasks": list(self.tasks),
                **({"data_files": [{"split": s, "path": p} for s, p in self.data_files]} if self.local else {})}


def _data_files(kwargs: dict | None) -> tuple[tuple[str, str], ...]:
    files = (kwargs or {}).get("data_files")
    if files is None:
        return ()
    if isinstance(files, dict):
        return tuple((str(split), str(p)) for split, ps in files.items() for p in ([ps] if isinstance(ps, str) else ps))
    if isinstance(files, list) and all(isinstance(f, dict) and {"split", "path"} <= set(f) for f in files):
        return tuple((str(f["split"]), str(f["path"])) for f in files)
    raise EvalError(f"data_files {files!r}: expected a list of {{split, path}} or a {{split: path}} mapping.")


def refs_from_configs(configs: dict[str, dict]) -> list[DatasetRef]:
    """The datasets behind some leaf configs (raw or dumped), merged per (path, config, files)."""
    merged: dict[tuple, dict] = {}
    for task, cfg in configs.items():
        path = cfg.get("dataset_path")
        if not path:
            continue  # custom_dataset tasks (eu-mini) load themselves
        files = _data_files(cfg.get("dataset_kwargs"))
        key = (path, cfg.get("dataset_name"), files)
        splits = [cfg.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")]
        fs = cfg.get("fewshot_config")
        if isinstance(fs, dict) and fs.get("split"):
            splits.append(fs["split"])
        slot = merged.setdefault(key, {"splits": [], "tasks": []})
        slot["splits"] += [s for s in splits if s and s not in slot["splits"]]
        slot["tasks"].append(task)
    return [DatasetRef(path=p, name=n, splits=tuple(v["splits"]), tasks=tuple(v["tasks"]), data_files=f)
            for (p, n, f), v in merged.items()]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a bad line is one sentence naming ``file:line``."""
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, row in iter_lines(fh, str(path), EvalError):
                if not isinstance(row, dict):
                    raise EvalError(f"{path}:{lineno}: a row must be a JSON object.")
                rows.append(row)
    except OSError as err:
        raise EvalError(f"{path}: cannot read the dataset file ({err.strerror or err}).") from err
    if not rows:
        raise EvalError(f"{path}: no rows.")
    return rows


def _dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


@dataclass
class DataSources:
    """The mirror and bias folder of one run, and lm-eval's dataset loader pointed at them."""

    mirror: Path | None = None
    bias_data: Path | None = None
    suite: str = "paper"
    loaded: list[str] = field(default_factory=list)

    @classmethod
    def from_options(cls, datasets: str | Path | None = None, bias_data: str | Path | None = None,
                     suite: str = "paper") -> "DataSources":
        mirror = datasets or os.environ.get(MIRROR_ENV) or None
        bias = bias_data or os.environ.get(BIAS_ENV) or None
        mirror_path = Path(mirror).expanduser() if mirror else None
        if mirror_path is not None and not mirror_path.is_dir():
            raise EvalError(f"--datasets {mirror_path}: no such folder (make one with {fetch_hint(suite, mirror_path)}).")
        bias_path = Path(bias).expanduser() if bias else None
        if bias_path is not None and not bias_path.is_dir():
            raise EvalError(f"--bias-data {bias_path}: no such folder.")
        if bias_path is None and mirror_path is not None and (mirror_path / LOCAL_FILES).is_dir():
            bias_path = mirror_path / LOCAL_FILES
        return cls(mirror=mirror_path, bias_data=bias_path, suite=suite)

    def describe(self) -> dict:
        return {"mirror": str(self.mirror) if self.mirror else None,
                "bias_data": str(self.bias_data) if self.bias_data else None,
                "hub_cache": self.mirror is None}

    # ---- checks before a run ---------------------------------------------------------------------------
    def missing(self, ref: DatasetRef) -> str | None:
        """Why ``ref`` cannot be read (one sentence), or None."""
        if ref.local:
            if self.bias_data is None:
                return (f"{ref.tasks[0].split('_')[0]} needs its data files, which are not public: set --bias-data "
                        f"(or {BIAS_ENV}) to a folder laid out like the study's lm-eval tasks folder "
                        f"(e.g. {ref.data_files[0][1]}).")
            for _, rel in ref.data_files:
                if not self._local_file(rel).is_file():
                    return f"{self._local_file(rel)}: bias data file not found (needed by {ref.tasks[0]})."
            return None
        if self.mirror is None:
            return None   # the HF cache: only loading tells
        folder = ref.mirror_dir(self.mirror)
        for split in ref.splits:
            if not (folder / f"{split}.jsonl").is_file():
                return (f"dataset {ref.label} split '{split}' is not in the mirror {self.mirror} (needed by "
                        f"{ref.tasks[0]}): run {fetch_hint(self.suite, self.mirror)}.")
        return None

    def check(self, refs: Iterable[DatasetRef]) -> None:
        for ref in refs:
            problem = self.missing(ref)
            if problem:
                raise EvalError(problem)

    # ---- loading ---------------------------------------------------------------------------------------
    def _local_file(self, rel: str) -> Path:
        p = Path(rel).expanduser()
        return p if p.is_absolute() else (self.bias_data or Path(".")) / p

    def load(self, path: str, name: str | None = None, *, original: Callable | None = None, **kwargs):
        """What ``datasets.load_dataset(path, name, **kwargs)`` returns, from this run's sources."""
        import datasets

        if path == LOCAL_FILES:
            files = _data_files(kwargs)
            ref = DatasetRef(path, None, tuple(s for s, _ in files), ("bias",), files)
            problem = self.missing(ref)
            if problem:
                raise EvalError(problem)
            splits: dict[str, list] = {}
            for split, rel in files:
                splits.setdefault(split, []).extend(read_jsonl(self._local_file(rel)))
            self.loaded.append(ref.label)
            return datasets.DatasetDict({s: _dataset(rows) for s, rows in splits.items()})
        if self.mirror is not None:
            folder = self.mirror / path / (name or DEFAULT_CONFIG)
            files = sorted(folder.glob("*.jsonl"))
            if not files:
                raise EvalError(f"dataset {path}{f' (config {name})' if name else ''} is not in the mirror "
                                f"{self.mirror}: run {fetch_hint(self.suite, self.mirror)}.")
            self.loaded.append(f"{path}/{name or DEFAULT_CONFIG}")
            return datasets.DatasetDict({f.stem: _dataset(read_jsonl(f)) for f in files})
        src_path, src_name = FETCH_FROM.get((path, name), (path, name))
        kwargs.pop("trust_remote_code", None)
        try:
            out = (original or datasets.load_dataset)(src_path, src_name, **kwargs)
        except EvalError:
            raise
        except Exception as err:  # noqa: BLE001 - datasets raises many kinds; all mean "not available here"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise EvalError(f"dataset {path}{f' (config {name})' if name else ''} is not in the local Hugging Face "
                            f"cache ({first}): run {fetch_hint(self.suite)} and pass --datasets DIR.") from err
        self.loaded.append(f"{path}/{name or DEFAULT_CONFIG} (hub cache)")
        return out

    @contextlib.contextmanager
    def active(self) -> Iterator["DataSources"]:
        """Answer ``datasets.load_dataset`` (which lm-eval's tasks call when they are built) from these sources."""
        import datasets

        original = datasets.load_dataset

        def load_dataset(path, name=None, **kwargs):
            return self.load(path, name, original=original, **kwargs)

        datasets.load_dataset = load_dataset
        try:
            yield self
        finally:
            datasets.load_dataset = original


# ---- fetching -------------------------------------------------------------------------------------------------
def _write_jsonl(rows: Iterable[dict], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.part")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    tmp.replace(path)
    return n


@dataclass
class FetchReport:
    to: Path
    datasets: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"to": str(self.to), "datasets": self.datasets, "skipped": self.skipped,
                "fetched": len(self.datasets), "needed": len(self.datasets) + len(self.skipped)}


def fetch(refs: list[DatasetRef], to: str | Path, *, source: str | Path | None = None,
          bias_data: str | Path | None = None, suite: str = "paper",
          progress: Callable[[str], None] | None = None) -> FetchReport:
    """Mirror ``refs`` into ``to``: hub datasets through ``datasets.load_dataset`` (or from ``source``, a local
    folder of dataset repositories named like the hub: ``SOURCE/HiTZ/BertaQA``), the bias data copied from
    ``bias_data``. Every needed dataset is either written or reported as skipped, with the reason."""
    import datasets

    to = Path(to).expanduser()
    to.mkdir(parents=True, exist_ok=True)
    report = FetchReport(to=to)
    say = progress or (lambda _msg: None)
    for i, ref in enumerate(refs, 1):
        say(f"[{i}/{len(refs)}] {ref.label}")
        if ref.local:
            if not bias_data:
                report.skipped.append({**ref.as_dict(), "reason": "not public: pass --bias-data DIR to copy it"})
                continue
            rows = {}
            for split, rel in ref.data_files:
                src = Path(bias_data).expanduser() / rel
                if not src.is_file():
                    raise EvalError(f"{src}: bias data file not found (needed by {ref.tasks[0]}).")
                rows[split] = len(read_jsonl(src))   # checked before it is copied: errors name the user's file
                dst = to / LOCAL_FILES / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            report.datasets.append({**ref.as_dict(), "rows": rows})
            continue
        src_path, src_name = FETCH_FROM.get((ref.path, ref.name), (ref.path, ref.name))
        where = str(Path(source).expanduser() / src_path) if source else src_path
        try:
            ds = datasets.load_dataset(where, src_name)
        except Exception as err:  # noqa: BLE001
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise EvalError(f"cannot fetch dataset {ref.label} from {where} ({first}).") from err
        lacking = [s for s in ref.splits if s not in ds]
        if lacking:
            raise EvalError(f"dataset {ref.label} from {where} has no split(s) {', '.join(lacking)} "
                            f"(it has {', '.join(ds)}; needed by {ref.tasks[0]}).")
        rows = {split: _write_jsonl(ds[split], ref.mirror_dir(to) / f"{split}.jsonl") for split in ds}
        report.datasets.append({**ref.as_dict(), "rows": rows,
                                "fetched_from": where + (f" (config {src_name})" if src_name else "")})
    manifest = {"format": 1, "suite": suite, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "datasets_version": datasets.__version__, **report.as_dict()}
    (to / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
