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
arena: {database_url: null, sampling: adaptive, min_reading_seconds: 10}
```
Without a file the default set is the offline tiny model (three copies with different seeds, so battles
compare distinct models) plus every exported model found under ``<state>/exports/*/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from latxa.errors import LatxaError
from latxa.yamlfile import load_yaml_file

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


class ServeConfigError(LatxaError):
    """A serving configuration file that cannot be used."""


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.9, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(2048, ge=1, le=32768)
    # "default" = the arena's Basque system prompt with today's date; null = none; any other text is used as is
    system_prompt: Optional[str] = "default"


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["hf", "mlflow", "openai"] = "hf"
    path: Optional[str] = None
    model_uri: Optional[str] = None
    base_url: Optional[str] = None
    remote_model: Optional[str] = None
    api_key_env: Optional[str] = None
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
        need = {"hf": "path", "mlflow": "model_uri", "openai": "base_url"}[self.kind]
        if not getattr(self, need):
            raise ServeConfigError(f"model {self.name!r} of kind {self.kind} needs {need}.")
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
                "base_url": self.base_url, "api_key_env": self.api_key_env,
                "generation": self.generation.model_dump()}


class ControlBattle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    good: str
    bad: str


class ArenaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database_url: Optional[str] = None
    sampling: Literal["adaptive", "uniform"] = "adaptive"
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
    export_salt: Optional[str] = None


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
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    defaults: ServeDefaults = ServeDefaults()
    models: list[ModelSpec] = []
    arena: ArenaSettings = ArenaSettings()

    def arena_models(self) -> list[ModelSpec]:
        return [m for m in self.models if m.arena]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_serve_config(path: str | Path | None = None, tiny_copies: int = 3) -> ServeConfig:
    """Read a serving YAML (or build the default tiny-model set when ``path`` is None)."""
    if path is None:
        raw: dict[str, Any] = {}
    else:
        path = Path(path)
        raw = load_yaml_file(path, ServeConfigError, "Serving config") or {}
        if not isinstance(raw, dict):
            raise ServeConfigError(f"{path}: the top level must be a mapping.")
    given = raw.get("defaults") or {}
    defaults = given.get("generation") if isinstance(given, dict) else None
    defaults = defaults if isinstance(defaults, dict) else {}  # anything else is named by the validation below
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
