"""Models by Hugging Face name, resolved offline from ``HF_HOME``; fetching is a separate, explicit step.

A model reference is a folder, or a hub name with an optional revision: ``meta-llama/Llama-3.1-8B``,
``HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_2_101`` (a branch), ``org/name@<40-hex commit>``. Resolution never touches
the network: it reads the hub cache layout that ``huggingface_hub`` writes (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)::

    models--meta-llama--Llama-3.1-8B/refs/main            the commit a branch or tag points at
    models--meta-llama--Llama-3.1-8B/snapshots/<commit>/  the files of that commit

and checks that the snapshot is a usable causal-LM folder (config, tokenizer, every weight shard the index names).
When it is absent, the error names the command that downloads it (:func:`fetch_model`, ``latxa model fetch``),
which is meant for a login node with internet; compute nodes stay offline.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from latxa.errors import LatxaError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# What `latxa model fetch` downloads by default: everything a run needs, not the original/ consolidated copies.
DEFAULT_FETCH_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py")


class ModelNotFound(LatxaError):
    """A model reference that does not resolve to a local folder (one sentence naming the fix)."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points on this machine."""

    path: Path                  # the folder to load
    name: str                   # hub name, or the folder as given
    revision: str | None        # branch/tag/commit asked for (None for folders; "main" by default for names)
    commit: str | None          # the snapshot's commit (None for folders)

    @property
    def ref(self) -> str:
        """The reference as a user writes it: ``name`` or ``name@revision``."""
        return self.name if not self.revision or self.revision == "main" else f"{self.name}@{self.revision}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub uses: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def looks_like_hub_name(text: str) -> bool:
    """``org/name`` (optionally ``@revision``) that is not an existing path and not written as one."""
    text = str(text)
    if text.startswith(("/", ".", "~")) or Path(text).exists():
        return False
    return bool(NAME_RE.fullmatch(text.split("@", 1)[0]))


def split_ref(text: str, revision: str | None = None) -> tuple[str, str | None]:
    """``name@rev`` -> (name, rev); an explicit ``revision`` must agree with one written in the reference."""
    name, _, written = str(text).partition("@")
    if written and revision and written != revision:
        raise ModelNotFound(f"Model reference '{text}' names revision {written} but --revision says {revision}.")
    rev = written or revision
    if rev is not None and not REVISION_RE.fullmatch(rev):
        raise ModelNotFound(f"Revision '{rev}' is not a branch, tag or commit name.")
    return name, rev


def repo_folder(name: str) -> Path:
    return hub_cache_dir() / ("models--" + name.replace("/", "--"))


def _snapshot(name: str, revision: str) -> tuple[Path, str] | None:
    folder = repo_folder(name)
    if COMMIT_RE.fullmatch(revision):
        commit = revision
    else:
        ref = folder / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit
    return (snap, commit) if snap.is_dir() else None


def missing_files(folder: Path) -> list[str]:
    """What a causal-LM folder lacks to be loaded: config, tokenizer, weights (every shard its index names)."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        missing.append("tokenizer files")
    index = next((folder / f for f in INDEX_FILES if (folder / f).is_file()), None)
    if index is not None:
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, OSError):
            return [*missing, f"a readable {index.name}"]
        missing += [s for s in shards if not (folder / s).is_file()]
    elif not any(next(folder.glob(p), None) is not None for p in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors)")
    return missing


def resolve_model(text: str | os.PathLike, revision: str | None = None, *, weights: bool = True) -> ResolvedModel:
    """A folder or a cached hub name (``name``, ``name@rev``, or ``name`` with ``revision``) -> its local folder.

    Offline only. ``weights=False`` accepts a snapshot without weights (a tokenizer is enough for data preparation).
    Raises :class:`ModelNotFound` with one sentence: which name and revision, which cache, and the fetch command.
    """
    text = str(text)
    if not looks_like_hub_name(text):
        path = Path(text).expanduser()
        if revision:
            raise ModelNotFound(f"--revision {revision} applies to Hugging Face names, but '{text}' is a folder.")
        if not path.is_dir():
            raise ModelNotFound(f"Model folder {path} does not exist (and '{text}' is not a Hugging Face name "
                                "such as meta-llama/Llama-3.1-8B).")
        _check_complete(path, text, weights)
        return ResolvedModel(path.resolve(), text, None, None)
    name, rev = split_ref(text, revision)
    rev = rev or "main"
    found = _snapshot(name, rev)
    fetch = f"`latxa model fetch {name}" + ("" if rev == "main" else f" --revision {rev}") + "`"
    if found is None:
        where = hub_cache_dir()
        have = sorted(p.name for p in (repo_folder(name) / "refs").glob("*")) if (repo_folder(name) / "refs").is_dir() else []
        extra = f" (cached revisions: {', '.join(have)})" if have else ""
        raise ModelNotFound(f"Model {name} at revision {rev} is not in the Hugging Face cache {where}{extra}; download it "
                            f"on a login node with internet with {fetch} (runs never download).")
    path, commit = found
    _check_complete(path, f"{name}@{rev}", weights, fetch)
    return ResolvedModel(path, name, rev, commit)


def _check_complete(path: Path, what: str, weights: bool, fetch: str | None = None) -> None:
    missing = missing_files(path)
    if not weights:   # data preparation needs the tokenizer (and config), not the weights
        missing = [m for m in missing if m in ("config.json", "tokenizer files")]
    if missing:
        hint = f"; complete it with {fetch}" if fetch else ""
        raise ModelNotFound(f"Model {what} at {path} is incomplete: it lacks {missing[0]}{hint}.")


def cached_models() -> list[dict]:
    """Every model in the hub cache with its revisions (refs) and whether each snapshot is complete."""
    out = []
    root = hub_cache_dir()
    for folder in sorted(root.glob("models--*")) if root.is_dir() else []:
        name = folder.name[len("models--"):].replace("--", "/", 1)
        for ref in sorted((folder / "refs").glob("*")) if (folder / "refs").is_dir() else []:
            commit = ref.read_text(encoding="utf-8").strip()
            snap = folder / "snapshots" / commit
            out.append({"name": name, "revision": ref.name, "commit": commit, "path": str(snap),
                        "complete": snap.is_dir() and not missing_files(snap)})
    return out


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_model(name: str, revision: str | None = None, *, include: tuple[str, ...] | None = None,
                refresh: bool = False, token: str | None = None) -> ResolvedModel:
    """Download ``name`` (at ``revision``) into the hub cache with huggingface_hub, for a login node with internet.

    A complete cached snapshot of that revision is reused without any network access unless ``refresh``. Refuses
    (one sentence) when ``HF_HUB_OFFLINE`` is set, so a compute node or a test never reaches the hub by accident.
    """
    if not NAME_RE.fullmatch(name or ""):
        raise ModelNotFound(f"'{name}' is not a Hugging Face model name (org/name, e.g. meta-llama/Llama-3.1-8B).")
    name, rev = split_ref(name, revision)
    rev = rev or "main"
    if not refresh:
        try:
            return resolve_model(name, rev)
        except ModelNotFound:
            pass
    if _offline():
        raise ModelNotFound(f"Fetching {name} needs the network, but HF_HUB_OFFLINE is set; run `latxa model fetch` on "
                            "a login node with internet and HF_HUB_OFFLINE unset.")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(name, revision=rev, cache_dir=str(hub_cache_dir()), token=token,
                          allow_patterns=list(include or DEFAULT_FETCH_PATTERNS))
    except Exception as err:  # gated repos, unknown names, network: the hub library raises many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelNotFound(f"Downloading {name}@{rev} failed: {first}") from None
    return resolve_model(name, rev)
