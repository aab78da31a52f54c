"""Typed cluster profiles (YAML): where and how a job runs on a SLURM cluster.

A cluster profile names the study profile it trains with (``components/configs/study.yaml``: ``local``,
``leonardo-8b``, ``leonardo-70b``), the allocation (account, partition, nodes, GPUs, CPUs, memory, time,
excluded nodes), the job environment (modules, venv, environment variables) and how to reach the cluster
(``transport``: this host, or a login node over OpenSSH).

Shipped profiles live in ``slurm/profiles/<name>.yaml``; ``load_profile`` also takes a path to a YAML file.
Values may use ``{state}`` (the local state folder), ``{repo}`` (this checkout) and ``{slurm_dir}``
(the local test cluster's folder, ``$LATXA_SLURM_DIR`` or ``/tmp/latxa-slurm``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latxa.slurm import safety
from latxa.slurm.errors import SlurmError
from latxa.yamlfile import load_yaml_file

PROFILE_DIR = Path(__file__).with_name("profiles")


def local_cluster_dir() -> Path:
    return Path(os.environ.get("LATXA_SLURM_DIR", "/tmp/latxa-slurm"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransportConfig(_Strict):
    """How SLURM commands reach the cluster."""

    kind: Literal["local", "ssh"] = "local"
    host: str | None = None
    user: str | None = None
    port: int = Field(22, gt=0, lt=65536)
    key_file: str | None = None
    known_hosts: str | None = None
    # Host keys are always checked; "accept-new" trusts a host seen for the first time (and says so).
    host_key_checking: Literal["yes", "accept-new"] = "yes"
    connect_timeout_s: int = Field(20, gt=0)
    # Reuse one SSH connection for the many short commands of submit/status/wait (OpenSSH ControlMaster);
    # the master exits control_persist_s seconds after the last command (or on SSHTransport.close()).
    multiplex: bool = True
    control_persist_s: int = Field(60, ge=0)
    # Short-lived SSH certificates (CINECA: 12 h, issued through smallstep): the certificate next to key_file
    # (default <key_file>-cert.pub) is checked before connecting; `latxa slurm login` renews it with login_command.
    certificate_file: str | None = None
    login_command: list[str] = Field(default_factory=list)
    # `wait` rides out dropped connections: this many consecutive failed polls before it gives up.
    retries: int = Field(5, ge=0)
    retry_delay_s: float = Field(5.0, ge=0)

    @model_validator(mode="after")
    def _ssh_needs_host(self) -> "TransportConfig":
        if self.kind == "ssh" and not self.host:
            raise ValueError("an ssh transport needs 'host'")
        for value, what in ((self.host, "host"), (self.user, "user")):
            if value is not None:
                safety.node_name(value) if what == "host" else safety.slurm_token(value, what)
        return self


class JobResources(_Strict):
    """The allocation of a command job (data preparation, export, evaluation, registration): not the training's."""

    nodes: int = Field(1, gt=0)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int | None = Field(None, gt=0)
    mem: str | None = None
    time: str | None = None
    qos: str | None = None
    partition: str | None = None

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        return safety.time_limit(v) if v else v

    @model_validator(mode="after")
    def _tokens(self) -> "JobResources":
        for what in ("qos", "mem", "partition"):
            if getattr(self, what) is not None:
                safety.slurm_token(getattr(self, what), what)
        return self


class Storage(_Strict):
    """Where a job keeps its state on the cluster. Values may start with a cluster variable ($WORK, $FAST,
    $SCRATCH, ...), expanded by the job's shell; Leonardo's $HOME (50 GB) holds none of it."""

    latxa_home: str | None = None      # LATXA_HOME: the project's state (records, caches, digests)
    hf_home: str | None = None         # HF_HOME: the backbones, fetched on a login node (`latxa model fetch`)
    data_root: str | None = None       # LATXA_DATA_ROOT: the raw corpora the production data configs name
    data: str | None = None            # prepared (packed) sets, read memory-mapped by every rank
    runs: str | None = None            # checkpoints and run.json (large: one folder per variant)
    models: str | None = None          # exported Hugging Face folders
    cache: str | None = None           # XDG_CACHE_HOME, HF_DATASETS_CACHE, TRITON_CACHE_DIR, TORCH_EXTENSIONS_DIR
    tmp: str | None = None             # TMPDIR (the reference's data preparation set it off $HOME too)


class SmokeSettings(_Strict):
    """`latxa study rehearse --on-cluster`: the real chain on a debug QoS, a few steps, before spending the full run."""

    qos: str | None = None
    partition: str | None = None
    nodes: int | None = Field(None, gt=0)
    time: str | None = None
    max_steps: int = Field(6, gt=0)


# Start-up and communication failures the reference's README says to fix by launching again; matched in the job's
# log of the failed attempt (Python regexes). A fatal pattern (bad input, deterministic out-of-memory) wins.
TRANSIENT_PATTERNS = [
    r"NCCL (error|WARN .*(timeout|Timeout))", r"nccl(System|Internal|Remote)Error", r"NCCL communicator was aborted",
    r"ProcessGroupNCCL.*(Watchdog|timed out|timeout)", r"NVCC timeout", r"Unsupported device", r"Unable to setup node",
    r"uncorrectable ECC error", r"CUDA error: (an illegal memory access|unspecified launch failure|unknown error)",
    r"Ray head .* did not come up", r"could not start the Ray head", r"only \d+/\d+ Ray node\(s\) joined",
    r"The node with node id: .* has been marked dead", r"raylet (died|has been killed|aborted)",
    r"srun: error: .*(Node failure|Unable to create step|Socket timed out)", r"Connection reset by peer",
    r"\[latxa-slurm\] transient:",
]
FATAL_PATTERNS = [r"CUDA out of memory", r"OutOfMemoryError", r"\[latxa-slurm\] fatal:"]


class ClusterProfile(_Strict):
    name: str = ""
    description: str = ""
    study_profile: str = Field(..., description="profile of the study config the training runs with")
    transport: TransportConfig = TransportConfig()
    slurm_conf: str | None = None          # SLURM_CONF for client commands (the local test cluster)
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    nodes: int = Field(1, gt=0)
    ntasks_per_node: int = Field(1, gt=0)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, gt=0)
    mem: str | None = None
    time: str = "24:00:00"
    exclude: list[str] = Field(default_factory=list)
    requeue: bool = False                  # let SLURM requeue on preemption / node failure
    modules: list[str] = Field(default_factory=list)
    python_env: str | None = None          # venv to activate; "auto" = the venv running the bridge
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = "{state}/slurm"         # job folders (script, staged config, logs) live under here
    repo: str | None = "{repo}"            # project checkout on the cluster (the job cd's there)
    node_ip_command: str = "hostname --ip-address | awk '{print $1}'"
    ray_port_base: int = Field(20000, ge=1024, lt=65000)
    ray_port_slots: int = Field(400, gt=0)
    ray_object_store_mb: int | None = Field(None, gt=0)
    ray_join_timeout_s: int = Field(600, gt=0)
    ray_head_attempts: int = Field(3, gt=0)        # the head start is retried when Ray's raylet aborts
    sacct_completion: bool = False         # no slurmdbd: read finished jobs with `sacct -c` (jobcomp/filetxt)
    max_resubmits: int = Field(2, ge=0)    # client-side resubmissions by `wait` (TIMEOUT/PREEMPTED/NODE_FAIL)
    # `wait` backs off to its caller's longest poll interval (30-60 s: spares a shared slurmctld); a cluster that
    # answers at once (the local test cluster) caps it lower.
    max_poll_s: float | None = Field(None, gt=0)
    # Surviving SLURM with nobody watching (inside the job, no client needed):
    signal_lead_s: int | None = Field(None, gt=0)   # --signal=B:USR1@lead: checkpoint, then requeue
    max_requeues: int = Field(3, ge=0)     # in-cluster requeues (scontrol requeue) per job, SLURM_RESTART_COUNT
    transient_patterns: list[str] = Field(default_factory=lambda: list(TRANSIENT_PATTERNS))
    fatal_patterns: list[str] = Field(default_factory=lambda: list(FATAL_PATTERNS))
    process_group_timeout_s: int | None = Field(None, gt=0)   # torch.distributed's timeout (latxa train --pg-timeout)
    storage: Storage = Storage()
    tracking_uri: str | None = None        # MLflow for the jobs: http(s):// server, or a file: store synced later
    # backbone -> model (HF name[@revision] or folder): "0", "1", "2" for 8B, "70b" for the 70B backbone
    backbones: dict[str, str] = Field(default_factory=dict)
    exclude_per_variant: dict[str, list[str]] = Field(default_factory=dict)   # the reference's per-run node lists
    jobs: dict[str, JobResources] = Field(default_factory=dict)   # command, prep, export, eval, register
    data_configs: dict[str, str] = Field(default_factory=dict)    # model size -> data config (name or path)
    smoke: SmokeSettings | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return safety.profile_name(v) if v else v

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        # rendered into the script's header comment: a newline there would start a shell line before #SBATCH
        return safety.text_arg(v, "profile description")

    @field_validator("exclude")
    @classmethod
    def _nodes(cls, v: list[str]) -> list[str]:
        return [safety.node_name(n) for n in v]

    @field_validator("exclude_per_variant")
    @classmethod
    def _variant_nodes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return {k: [safety.node_name(n) for n in nodes] for k, nodes in v.items()}

    @field_validator("transient_patterns", "fatal_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        import re

        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {pattern!r} is not a regular expression ({err})") from None
        return v

    @field_validator("jobs")
    @classmethod
    def _job_kinds(cls, v: dict[str, "JobResources"]) -> dict[str, "JobResources"]:
        unknown = sorted(set(v) - set(JOB_KINDS))
        if unknown:
            raise ValueError(f"unknown job kind '{unknown[0]}' (known: {', '.join(JOB_KINDS)})")
        return v

    @field_validator("backbones")
    @classmethod
    def _backbone_keys(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - {"0", "1", "2", "70b"})
        if unknown:
            raise ValueError(f"unknown backbone '{unknown[0]}' (known: 0, 1, 2, 70b)")
        return {k: safety.text_arg(m, f"backbone {k}") for k, m in v.items()}

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        return [safety.module_name(m) for m in v]

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return {safety.env_name(k): safety.text_arg(str(val), f"value of {k}") for k, val in v.items()}

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        return safety.time_limit(v)

    @model_validator(mode="after")
    def _tokens(self) -> "ClusterProfile":
        for what in ("account", "partition", "qos", "mem"):
            value = getattr(self, what)
            if value is not None:
                safety.slurm_token(value, what)
        if self.ray_port_base + self.ray_port_slots * 100 > 65535:
            raise ValueError("ray_port_base + ray_port_slots * 100 must stay below 65536")
        return self

    # ---------------------------------------------------------------------------------------- resolved
    def expand(self, value: str | None) -> str | None:
        if value is None:
            return None
        from latxa.paths import expand

        # Placeholders only: $VARS in a cluster profile belong to the cluster's shell, not to this machine's.
        out = value.replace("{slurm_dir}", str(local_cluster_dir()))
        return expand(out, what="profile value", env=False)

    @property
    def workdir_path(self) -> str:
        return safety.sbatch_path(self.expand(self.workdir), "profile workdir")

    @property
    def repo_path(self) -> str | None:
        return safety.body_path(self.expand(self.repo), "profile repo") if self.repo else None

    @property
    def slurm_conf_path(self) -> str | None:
        return self.expand(self.slurm_conf)

    @property
    def python_env_path(self) -> str | None:
        if self.python_env == "auto":
            return sys.prefix if sys.prefix != sys.base_prefix else None
        return self.expand(self.python_env)

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node if self.gpus_per_node else 0

    def job_resources(self, kind: str) -> "JobResources":
        """A command job's allocation: the profile's ``jobs.<kind>``, else ``jobs.command``, else one node, no GPU."""
        if kind not in JOB_KINDS:
            raise SlurmError(f"Unknown job kind '{kind}' (known: {', '.join(JOB_KINDS)}).")
        return self.jobs.get(kind) or self.jobs.get("command") or JobResources()

    def backbone_model(self, variant) -> str:
        """The model a variant starts from: the profile's ``backbones`` entry, else the registry's HF name."""
        key = "70b" if variant.size == "70b" else str(variant.backbone)
        return self.backbones.get(key) or variant.backbone_info.hf_name

    def excluded_nodes(self, variants: list[str]) -> list[str]:
        """The base exclude list plus the per-variant extras of every variant in the job (union, in order)."""
        out = list(self.exclude)
        for code in variants:
            out += [n for n in self.exclude_per_variant.get(code, []) if n not in out]
        return out

    def for_study(self, study_profile: str | None, config_path: str | Path | None = None) -> "ClusterProfile":
        """This site profile retargeted at another study profile: nodes and GPUs follow the study's target."""
        if not study_profile or study_profile == self.study_profile:
            return self
        from latxa.components.config import load_config

        tgt = load_config(config_path).resolve(study_profile).target
        update: dict = {"study_profile": study_profile}
        if tgt.backend == "gpu":
            update.update(nodes=tgt.nodes, gpus_per_node=tgt.gpus_per_node)
        return self.model_copy(update=update)

    def check_against_study(self, config_path: str | Path | None = None):
        """The study profile must exist and agree with the allocation (nodes x GPUs = Ray Train workers)."""
        from latxa.components.config import load_config

        resolved = load_config(config_path).resolve(self.study_profile)
        tgt = resolved.target
        if self.gpus_per_node and tgt.backend == "gpu":
            if (tgt.nodes, tgt.gpus_per_node) != (self.nodes, self.gpus_per_node):
                raise SlurmError(
                    f"Cluster profile '{self.name}' allocates {self.nodes} nodes x {self.gpus_per_node} GPUs but study "
                    f"profile '{self.study_profile}' expects {tgt.nodes} x {tgt.gpus_per_node}."
                )
        return resolved


JOB_KINDS = ("command", "prep", "export", "eval", "register")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> ClusterProfile:
    """A shipped profile by name (``local``, ``leonardo-8b``, ...) or a YAML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise SlurmError(f"Unknown cluster profile '{text}' (known: {', '.join(available_profiles())}; or pass a YAML file).")
    data = load_yaml_file(path, SlurmError, "Cluster profile file")
    if not isinstance(data, dict):
        raise SlurmError(f"Cluster profile {path} must be a YAML mapping.")
    data.setdefault("name", path.stem)
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise SlurmError(f"Unknown key '{key}' in cluster profile {path}.") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise SlurmError(f"Invalid value for '{key}' in cluster profile {path}: {msg}.") from None
