"""The serving configuration: the arena's model registry (YAML) and the arena settings.

```yaml
host: 127.0.0.1
port: 8000
defaults:                 # generation settings every model starts from (the reference arena's)
  generation: {temperature: 0.9, top_p: 0.95, max_tokens: 2048, system_prompt: default}
models:
  - name: exp_2_101
    kind: hf              # hf: a local Hugging Face folder
    path: /models/exp_2_101
    autoscaling: {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 2}
    num_gpus: 1
  - name: exp_1_101
    kind: mlflow          # an MLflow registered model, downloaded once into the state folder
    model_uri: models:/latxa-exp_1_101/3
  - name: gpt-4o
    kind: openai          # an external OpenAI-compatible endpoint; the key is read from the env var
    base_url: https://api.openai.com/v1
    remote_model: gpt-4o-2024-11-20
    api_key_env: OPENAI_API_KEY
    generation: {max_tokens: 1024}
  - name: claude-3-5-sonnet-20241022
    kind: anthropic       # Anthropic's Messages API (native streaming); key from the env var or a Secret file
    api_key_env: ANTHROPIC_API_KEY
    api_key_file: /var/run/secrets/latxa/anthropic-api-key
  - name: exp_1_101
    kind: vllm            # Ray Serve LLM (vLLM) in the same Serve instance, reached as an OpenAI endpoint
    vllm: {model_source: HiTZ/Latxa-Llama-3.1-8B-Instruct, revision: exp_1_101, gpu_fraction: 0.49}
arena: {protocol: latxa, database_url: null, sampling: adaptive, min_reading_seconds: 10}
```
``extends: NAME`` starts from a configuration shipped in ``serving/configs/`` (``ebaluatoia-2025``: the study's
21 models) or a path, and merges this file over it. Without a file the default set is the offline tiny model
(three copies with different seeds, so battles compare distinct models) plus every exported model found under
``<state>/exports/*/``. The arena protocol (``arena.protocol``, ``--protocol``) supplies the generation settings
every model starts from; ``defaults.generation`` and ``models[].generation`` override them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from latxa.errors import LatxaError
from latxa.yamlfile import load_yaml_file

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
CONFIGS = Path(__file__).with_name("configs")


class ServeConfigError(LatxaError):
    """A serving configuration file that cannot be used."""


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.9, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1, le=32768)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0)   # vLLM and transformers only
    stop: Optional[list[str]] = None                          # vLLM only (the study: ["<|eot_id|>"])
    # A named prompt with today's date ("default": the Basque one; "ebaluatoia-2025": the study's English one,
    # see serving/prompts.py); null = none; any other text is used as is ({date} filled in).
    system_prompt: Optional[str] = "default"


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)


class VLLMEngine(BaseModel):
    """A model served by vLLM through Ray Serve LLM (``ray.serve.llm``), as the study served its 19 models."""

    model_config = ConfigDict(extra="forbid")
    model_source: str                       # a Hugging Face name (resolved from the local cache) or a folder
    revision: Optional[str] = None          # the study's variants are revisions of one repository
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_fraction: float = Field(0.9, gt=0, le=1)   # vLLM's gpu_memory_utilization; 0.49 puts two on one GPU
    max_model_len: int = Field(8192, ge=256)
    dtype: Literal["bfloat16", "float16", "auto"] = "bfloat16"
    chat_template: Optional[str] = "llama-3.1"     # a template in serving/configs/, a path, or null (tokenizer's)
    params_b: float = Field(8.03, gt=0)            # size in billions of parameters (the memory check)
    layers: int = Field(32, ge=1)
    kv_heads: int = Field(8, ge=1)
    head_dim: int = Field(128, ge=1)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    engine_kwargs: dict[str, Any] = {}


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["hf", "mlflow", "openai", "anthropic", "vllm"] = "hf"
    path: Optional[str] = None
    model_uri: Optional[str] = None
    base_url: Optional[str] = None
    remote_model: Optional[str] = None
    api_key_env: Optional[str] = None
    api_key_file: Optional[str] = None      # a mounted Secret; read at request time when the env var is unset
    # how an OpenAI-compatible endpoint takes the settings: "openai" (the OpenAI API: max_completion_tokens, no
    # stop or repetition_penalty, as the study called GPT-4o) or "vllm" (max_tokens, stop, repetition_penalty)
    dialect: Optional[Literal["openai", "vllm"]] = None
    vllm: Optional[VLLMEngine] = None
    export_name: Optional[str] = None       # the name in exported votes (the study's, e.g. "Latxa 3.1 70B Instruct")
    generation: GenerationSettings = GenerationSettings()
    autoscaling: Autoscaling = Autoscaling()
    num_cpus: float = Field(0.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    serialize: bool = True  # one generate() at a time per replica (CPU); concurrency comes from replicas
    arena: bool = True      # take part in arena battles

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("model names use letters, digits and _ . : + - (at most 128 characters)")
        return v

    def check(self) -> None:
        need = {"hf": "path", "mlflow": "model_uri", "openai": "base_url", "anthropic": "remote_model",
                "vllm": "vllm"}[self.kind]
        if self.kind == "anthropic" and not self.remote_model:
            self.remote_model = self.name
        if not getattr(self, need):
            raise ServeConfigError(f"model {self.name!r} of kind {self.kind} needs {need}.")
        if self.vllm is not None and self.kind != "vllm":
            raise ServeConfigError(f"model {self.name!r}: the vllm block needs kind: vllm.")
        if self.kind == "hf" and not (Path(self.path) / "config.json").is_file():
            raise ServeConfigError(f"model {self.name!r}: {self.path} is not a Hugging Face folder (no config.json).")

    def resolve_path(self) -> str:
        if self.kind == "hf":
            return str(self.path)
        if self.kind == "mlflow":
            return str(download_mlflow_model(self.model_uri))
        raise ServeConfigError(f"model {self.name!r} is an external endpoint, not a local folder.")

    def public(self) -> dict[str, Any]:
        """What may be shown to admins and logged: never the key, only the variable's name."""
        return {"name": self.name, "kind": self.kind, "path": self.path, "model_uri": self.model_uri,
                "base_url": self.base_url, "api_key_env": self.api_key_env, "api_key_file": self.api_key_file,
                "generation": self.generation.model_dump()}

    def openai_dialect(self) -> str:
        return self.dialect or ("vllm" if self.kind == "vllm" else "openai")

    def api_key(self) -> str:
        """The key, read now from the environment variable or else the Secret file (never stored or logged)."""
        import os

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if not key and self.api_key_file:
            try:
                key = Path(self.api_key_file).read_text(encoding="utf-8").strip()
            except OSError:
                key = ""
        return key


class ControlBattle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    good: str
    bad: str


class ArenaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: str = "latxa"          # serving/arena/protocols/<name>.yaml: latxa or ebaluatoia-2025
    database_url: Optional[str] = None
    sampling: Optional[Literal["adaptive", "uniform"]] = None   # None: the protocol's
    min_reading_seconds: float = Field(10.0, ge=0)
    max_turns: int = Field(10, ge=1)
    max_message_chars: int = Field(4000, ge=1)
    token_days: float = Field(30.0, gt=0)
    admin_token: Optional[str] = None
    # requests per minute: per participant and per client IP
    rate_votes_per_minute: int = Field(30, ge=1)
    rate_battles_per_minute: int = Field(20, ge=1)
    rate_messages_per_minute: int = Field(30, ge=1)
    rate_auth_per_minute_ip: int = Field(20, ge=1)
    rate_requests_per_minute_ip: int = Field(600, ge=1)
    control_rate: float = Field(0.0, ge=0, le=1)
    control_battles: list[ControlBattle] = []
    control_fail_flag: int = Field(2, ge=1)
    outlier_alpha: float = Field(0.001, gt=0, lt=1)
    leaderboard_bootstrap: int = Field(100, ge=1)
    leaderboard_cache_seconds: float = Field(30.0, ge=0)
    # a model is listed once it has this many rated battles; until then the page says how many more it needs
    leaderboard_min_battles: int = Field(20, ge=0)
    # weak Gaussian prior on the leaderboard's ratings (rating points; null = the plain MLE): keeps ratings of
    # models with few votes near 1000 instead of +-2000 (see docs/arena-api.md)
    leaderboard_prior_sd: Optional[float] = Field(200.0, gt=0)
    # how often the careless-voter test reruns after votes arrive (seconds; it also runs at start)
    outlier_check_seconds: float = Field(30.0, gt=0)
    export_salt: Optional[str] = None
    export_timezone: str = "UTC"     # timestamps in the export: naive local time of this zone (the study: the server's)


class GPUNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    gpus: int = Field(ge=1)


class Placement(BaseModel):
    """The GPU budget the vLLM models must fit (checked offline by ``latxa serve --dry-run``)."""

    model_config = ConfigDict(extra="forbid")
    accelerator_type: str = "A100-80G"
    gpu_memory_gb: float = Field(80.0, gt=0)
    nodes: list[GPUNode]


class ServeDefaults(BaseModel):
    """Settings every model starts from; only ``generation`` so far (unknown keys are errors, not ignored)."""

    model_config = ConfigDict(extra="forbid")
    generation: dict[str, Any] = {}

    @field_validator("generation")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(GenerationSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown generation setting '{unknown[0]}'")
        GenerationSettings.model_validate(v)
        return v


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extends: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    defaults: ServeDefaults = ServeDefaults()
    models: list[ModelSpec] = []
    arena: ArenaSettings = ArenaSettings()
    # the OpenAI-compatible /v1 routes on the same port; None: on unless the protocol hides model names
    openai_api: Optional[bool] = None
    # where the gateway reaches the vLLM models (Ray Serve LLM's OpenAI app); None: this Serve instance's /llm/v1
    llm_base_url: Optional[str] = None
    placement: Optional[Placement] = None

    def arena_models(self) -> list[ModelSpec]:
        return [m for m in self.models if m.arena]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    raw = load_yaml_file(path, ServeConfigError, "Serving config") or {}
    if not isinstance(raw, dict):
        raise ServeConfigError(f"{path}: the top level must be a mapping.")
    raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}   # x-*: YAML anchors only
    base = raw.get("extends")
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ServeConfigError(f"{path}: extends: must name a shipped configuration or a path.")
    shipped = CONFIGS / f"{base}.yaml"
    target = shipped if re.fullmatch(r"[a-z0-9][a-z0-9.-]*", base) and shipped.is_file() else (path.parent / base)
    if target.resolve() in seen or len(seen) > 4:
        raise ServeConfigError(f"{path}: extends: {base} loops back to itself.")
    if not target.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise ServeConfigError(f"{path}: extends: {base} is neither a shipped configuration ({names}) nor a file.")
    parent = _read_raw(target, (*seen, path.resolve()))
    merged = _merge(parent, {k: v for k, v in raw.items() if k != "extends"})
    if "models" in raw:   # a list replaces the parent's, it is not merged
        merged["models"] = raw["models"]
    return merged


def local_llm_url(port: int) -> str:
    """Where `latxa serve` runs Ray Serve LLM's OpenAI app for the vLLM models: /llm on its own Serve proxy."""
    return f"http://127.0.0.1:{port}/llm/v1"


def shipped_config(name: str) -> Path:
    """The path of a configuration shipped in serving/configs (``ebaluatoia-2025``: the study's models)."""
    path = CONFIGS / f"{name}.yaml"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name) or not path.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise ServeConfigError(f"{name}: no such serving config file, nor a shipped configuration ({names}).")
    return path


def load_serve_config(path: str | Path | None = None, tiny_copies: int = 3, protocol: str | None = None) -> ServeConfig:
    """Read a serving YAML (or build the default tiny-model set when ``path`` is None).

    ``protocol`` (``--protocol``) overrides ``arena.protocol``; the protocol's generation settings are every
    model's starting point.
    """
    from latxa.serving.arena.protocol import load_protocol

    if path is None:
        raw: dict[str, Any] = {}
    else:
        path = Path(path)
        raw = _read_raw(path)
    arena_raw = raw.get("arena") or {}
    if not isinstance(arena_raw, dict):
        raise ServeConfigError(f"{path}: arena must be a mapping.")
    if protocol:
        arena_raw = {**arena_raw, "protocol": protocol}
        raw = {**raw, "arena": arena_raw}
    try:
        proto = load_protocol(arena_raw.get("protocol"))
    except LatxaError as err:
        raise ServeConfigError(f"{path or 'serving config'}: arena.protocol: {err}") from None
    if arena_raw.get("control_rate") and not proto.control_battles:
        raise ServeConfigError(f"{path or 'serving config'}: arena.control_rate: the {proto.name} protocol has no "
                               "control battles; remove it or use --protocol latxa.")
    given = raw.get("defaults") or {}
    defaults = given.get("generation") if isinstance(given, dict) else None
    defaults = defaults if isinstance(defaults, dict) else {}  # anything else is named by the validation below
    defaults = _merge(proto.generation, defaults)
    models = raw.get("models")
    if models is None:
        models = default_models(tiny_copies)
    if not isinstance(models, list):
        raise ServeConfigError(f"{path}: models must be a list.")
    merged = []
    for m in models:
        if not isinstance(m, dict):
            raise ServeConfigError(f"{path}: each models entry must be a mapping.")
        merged.append({**m, "generation": _merge(defaults, m.get("generation") or {})})
    raw = {**raw, "models": merged}
    try:
        cfg = ServeConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ServeConfigError(f"{path or 'serving config'}: {loc}: {first['msg']}.") from None
    names = [m.name for m in cfg.models]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ServeConfigError(f"{path}: model names must be unique ({', '.join(sorted(dup))} repeated).")
    for m in cfg.models:
        m.check()
        if m.kind == "vllm" and not m.base_url:
            m.base_url = cfg.llm_base_url or local_llm_url(cfg.port)
    if cfg.placement is not None:
        from latxa.serving.placement import plan_placement

        plan_placement(cfg)   # raises ServeConfigError naming the model that does not fit
    return cfg


def default_models(tiny_copies: int = 3) -> list[dict]:
    """The tiny model in ``tiny_copies`` seeds, plus exported models under ``<state>/exports``."""
    from latxa.paths import state_dir

    models = [{"name": f"tiny-{chr(ord('a') + i)}", "kind": "hf", "path": str(tiny_copy(i)),
               "generation": {"max_tokens": 128}} for i in range(tiny_copies)]
    exports = state_dir() / "exports"
    if exports.is_dir():
        for folder in sorted(exports.iterdir()):
            if (folder / "config.json").is_file() and NAME_RE.match(folder.name):
                models.append({"name": folder.name, "kind": "hf", "path": str(folder)})
    return models


def tiny_copy(i: int) -> Path:
    """Copy ``i`` of the tiny model: same tokenizer and shape, weights re-drawn with seed 33 + i."""
    import shutil

    from latxa.components.tiny_model import ensure_tiny_model
    from latxa.paths import tiny_model_dir

    base = ensure_tiny_model(tiny_model_dir())
    if i == 0:
        return base
    out = base.parent / f"tiny-seed{33 + i}"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp)
    (tmp / "model.safetensors").unlink()
    torch.manual_seed(33 + i)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    model.generation_config = model.generation_config.from_pretrained(base)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def download_mlflow_model(model_uri: str) -> Path:
    """Resolve ``models:/name/version`` to a local Hugging Face folder (cached in the state folder)."""
    import hashlib

    from latxa.paths import state_dir

    dest = state_dir() / "serving" / "mlflow-models" / hashlib.sha256(model_uri.encode()).hexdigest()[:16]
    if not dest.is_dir():
        try:
            import mlflow
        except ImportError:
            raise ServeConfigError("serving an MLflow model needs the mlflow package (pip install mlflow).") from None
        dest.mkdir(parents=True, exist_ok=True)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest))
        except Exception as err:  # mlflow raises many types; the message names the URI
            raise ServeConfigError(f"cannot download {model_uri} from MLflow ({type(err).__name__}).") from None
    for cfg in sorted(dest.rglob("config.json")):
        if (cfg.parent / "tokenizer_config.json").is_file() or (cfg.parent / "tokenizer.json").is_file():
            return cfg.parent
    raise ServeConfigError(f"{model_uri}: the downloaded artifacts hold no Hugging Face model folder.")
