"""Render sbatch scripts from cluster profiles (Jinja2 templates in ``slurm/templates``).

- :func:`render_train`: a Ray Train job: Ray head on the first node, one worker per other node (``srun``),
  explicit per-job port block, wait until every node joined, ``latxa train ... --resume``, Ray teardown;
  the job's exit status is the training's. Several variants make a job array (one variant per task).
- :func:`render_command`: any command (data preparation, evaluation, tests), every argument quoted.

Every user value is validated or quoted (:mod:`latxa.slurm.safety`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jinja2

from latxa.slurm import safety
from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import ClusterProfile

TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass
class RenderedJob:
    """A rendered job script plus what the bridge needs to submit and follow it."""

    name: str
    script: str
    log: str                       # log path pattern (%j / %A_%a) as written on the #SBATCH line
    kind: str                      # "train" | "command"
    array: str | None = None
    variants: list[str] = field(default_factory=list)
    out: str | None = None

    def log_for(self, job_id: str) -> str:
        """The log file of one job (``12``) or array task (``12_3``)."""
        if "_" in job_id:
            array_id, task = job_id.split("_", 1)
            return self.log.replace("%A", array_id).replace("%a", task).replace("%j", job_id)
        return self.log.replace("%j", job_id).replace("%A", job_id).replace("%a", "0")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        comment_start_string="[[#",   # bash uses {# (e.g. ${#ARRAY[@]}), so Jinja comments use [[# ... #]]
        comment_end_string="#]]",
    )
    env.filters["q"] = safety.quote
    return env


_VAR_PATH = re.compile(r"^\$(\{)?([A-Za-z_][A-Za-z0-9_]*)(?(1)\})(/.*)?$")
_SCHEME = re.compile(r"^(file:(?://)?)(.*)$")


def shell_word(value: str | None, what: str = "path") -> str | None:
    """A value for the script body, as one shell word: quoted; a leading ``~/`` becomes ``"$HOME"/...`` and a leading
    cluster variable (``$WORK/x``, ``${FAST}/x``) stays expandable (``"${WORK}"/'/x'``), so profiles can name the
    cluster's filesystems without knowing their paths. A ``file:`` URI prefix is kept in front (tracking stores)."""
    if value is None:
        return None
    safety.body_path(value, what)
    scheme = _SCHEME.match(value)
    if scheme and scheme.group(2).startswith(("$", "~")):
        return shlex.quote(scheme.group(1)) + shell_word(scheme.group(2), what)
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    m = _VAR_PATH.match(value)
    if m:
        return f'"${{{m.group(2)}}}"' + (shlex.quote(m.group(3)) if m.group(3) else "")
    return shlex.quote(value)


def _shell_path(value: str | None, what: str) -> str | None:  # kept for callers of the old name
    return shell_word(value, what)


def join_path(base: str, *parts: str) -> str:
    """``base/part/...`` as written in a profile (cluster variables stay unexpanded)."""
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p]])


def _log_shell(pattern: str) -> str:
    """The log file of this job or array task, from the #SBATCH --output pattern (%j, %A, %a)."""
    out, i = [], 0
    for m in re.finditer(r"%[jAa]", pattern):
        out.append(shlex.quote(pattern[i:m.start()]) if m.start() > i else "")
        out.append({"%j": '"${SLURM_JOB_ID}"', "%A": '"${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID}}"',
                    "%a": '"${SLURM_ARRAY_TASK_ID:-0}"'}[m.group(0)])
        i = m.end()
    if i < len(pattern):
        out.append(shlex.quote(pattern[i:]))
    return "".join(out)


# storage key -> (environment variables it sets, sub-folder)
_STORAGE_ENV = {
    "latxa_home": (("LATXA_HOME", ""),),
    "hf_home": (("HF_HOME", ""),),
    "data_root": (("LATXA_DATA_ROOT", ""),),
    "cache": (("XDG_CACHE_HOME", ""), ("HF_DATASETS_CACHE", "hf-datasets"), ("TRITON_CACHE_DIR", "triton"),
              ("TORCH_EXTENSIONS_DIR", "torch-extensions")),
    "tmp": (("TMPDIR", ""),),
}


def storage_lines(profile: ClusterProfile) -> list[str]:
    """``export``/``mkdir`` lines for the profile's storage and tracking store (empty for a profile without them)."""
    lines, dirs = [], []
    st = profile.storage
    for key, targets in _STORAGE_ENV.items():
        value = getattr(st, key)
        if not value:
            continue
        for env_name, sub in targets:
            lines.append(f"export {env_name}={shell_word(join_path(value, sub) if sub else value, f'storage.{key}')}")
            if key != "data_root":
                dirs.append(env_name)
    if profile.tracking_uri:
        lines.append(f"export MLFLOW_TRACKING_URI={shell_word(profile.tracking_uri, 'tracking_uri')}")
    if dirs:
        lines.append("mkdir -p " + " ".join(f'"${{{d}}}"' for d in dirs)
                     + ' || { echo "[latxa-slurm] cannot create the storage folders" >&2; exit 1; }')
    return lines


def _header_vars(profile: ClusterProfile, name: str, time: str | None, log_dir: str | None, array: str | None,
                 per_task_log: bool, env: dict[str, str] | None = None, *, resources=None,
                 variants: Sequence[str] = ()) -> dict:
    """Everything the #SBATCH header and the shared body need. ``resources`` (a JobResources) sets a command job's
    own allocation; training jobs take the profile's."""
    import json

    name = safety.job_name(name)
    log_dir = safety.sbatch_path(log_dir or f"{profile.workdir_path}/logs", "log folder")
    pattern = f"{name}-%A_%a.out" if per_task_log else f"{name}-%j.out"
    r = resources
    nodes = r.nodes if r else profile.nodes
    gpus = r.gpus_per_node if r else profile.gpus_per_node
    log = f"{log_dir}/{pattern}"
    return {
        "p": profile,
        "name": name,
        "nodes": nodes,
        "gpus": gpus,
        "cpus": (r.cpus_per_task if r and r.cpus_per_task else profile.cpus_per_task),
        "mem": (r.mem if r and r.mem else profile.mem),
        "qos": (r.qos if r and r.qos else profile.qos),
        "partition": (r.partition if r and r.partition else profile.partition),
        "time": safety.time_limit(time) if time else ((r.time if r and r.time else None) or profile.time),
        "exclude": profile.excluded_nodes(list(variants)),
        "signal_lead": None if r else profile.signal_lead_s,   # checkpoint-and-requeue is for training jobs
        "array": safety.array_spec(array) if array else None,
        "log": log,
        "log_sh": _log_shell(log),
        "venv": shell_word(profile.python_env_path, "python_env"),
        "repo": shell_word(profile.repo_path, "repo"),
        "env": {**profile.env, **{safety.env_name(k): safety.text_arg(str(v), f"value of {k}") for k, v in (env or {}).items()}},
        "storage": storage_lines(profile),
        "patterns": json.dumps({"transient": profile.transient_patterns, "fatal": profile.fatal_patterns}),
    }


def default_model(profile: ClusterProfile, variant: str) -> str:
    """The model a variant starts from: the profile's ``backbones`` entry (an HF name[@revision] or a folder), else
    the registry's HF name on GPU profiles, and the tiny offline model on CPU profiles without backbones."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    size = load_config().resolve(profile.study_profile).target.model_size
    v = parse(variant, size=size)
    if profile.backbones or profile.gpus_per_node:
        return profile.backbone_model(v)
    from latxa.paths import tiny_model_dir

    return str(tiny_model_dir())


def render_train(
    profile: ClusterProfile,
    variants: Sequence[str],
    *,
    out: str,
    data: str | None = None,
    model: str | None = None,
    name: str | None = None,
    time: str | None = None,
    train_args: Sequence[str] = (),
    log_dir: str | None = None,
    max_parallel: int | None = None,
    check_study: bool = True,
    env: dict[str, str] | None = None,
    config_staged: bool = False,
    models: Sequence[str] | None = None,
    datas: Sequence[str] | None = None,
    heldouts: Sequence[str] | None = None,
    data_config: str | None = None,
    smoke: bool = False,
) -> RenderedJob:
    """A Ray Train job for one variant, or a job array over several (task i trains ``variants[i]``).

    With several variants, ``out`` (and ``data`` when given) get one sub-folder per variant (its run name: the code
    at 8B, ``Latxa-Llama-3.1-70B-Instruct-<code>`` at 70B). Each task starts from its own backbone: ``models[i]``,
    else ``model`` for all, else the profile's ``backbones`` entry for the variant (:func:`default_model`).
    ``datas[i]`` gives each task its prepared set (variants sharing a mixture share one), ``heldouts[i]`` its
    held-out sets for the loss during training. Paths may start with a cluster variable ($WORK, ...).
    """
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    if not variants:
        raise SlurmError("Give at least one variant to train.")
    size = load_config().resolve(profile.study_profile).target.model_size
    parsed = [parse(v, size=size) for v in variants]
    codes = [v.code for v in parsed]
    if len(set(codes)) != len(codes):
        raise SlurmError(f"Variant list has duplicates: {', '.join(codes)}.")
    for given, what in ((models, "models"), (datas, "datas"), (heldouts, "heldouts")):
        if given is not None and len(given) != len(codes):
            raise SlurmError(f"Give one entry of {what} per variant ({len(codes)}), not {len(given)}.")
    if check_study:
        profile.check_against_study()
    array = None
    if len(codes) > 1:
        array = f"0-{len(codes) - 1}" + (f"%{int(max_parallel)}" if max_parallel else "")
    if name is None:
        name = (f"train-{parsed[0].run_name}" if len(codes) == 1 else f"sweep-{len(codes)}")[:128]
    hv = _header_vars(profile, name, time, log_dir, array, per_task_log=array is not None, env=env, variants=codes)
    chosen = list(models) if models is not None else [model or default_model(profile, v.key) for v in parsed]
    for m in chosen:
        safety.body_path(m, "model")
    safety.body_path(out, "output folder")
    outs = [shell_word(join_path(out, v.run_name) if array else out, "output folder") for v in parsed]
    if data is not None:
        safety.body_path(data, "data folder")
    data_words = [shell_word(d, "data folder") for d in datas] if datas is not None else None
    args = [safety.text_arg(a, "training argument") for a in train_args]
    if smoke and "--smoke" not in args:
        args.append("--smoke")
    if profile.process_group_timeout_s and not any(a.startswith("--pg-timeout") for a in args):
        args += ["--pg-timeout", str(profile.process_group_timeout_s)]
    script = _env().get_template("ray_train.sbatch.j2").render(
        **hv,
        title=f"Ray Train job: {', '.join(v.run_name for v in parsed)} on {profile.nodes} node(s)",
        variants=codes,
        models=chosen,
        outs=outs,
        out=None,
        datas=data_words,
        data=shell_word(data, "data folder") if data is not None else None,
        per_variant_out=False,
        per_variant_data=array is not None and data is not None,
        study_profile=profile.study_profile,
        train_args=args,
        config_staged=config_staged,
        head_attempts=profile.ray_head_attempts,
        heldouts=[shell_word(h, "held-out folder") for h in heldouts] if heldouts else None,
        data_config=shell_word(data_config, "data config") if data_config else None,
        smoke=smoke,
    )
    return RenderedJob(name=hv["name"], script=script, log=hv["log"], kind="train", array=array,
                       variants=[v.key for v in parsed], out=out)


def render_command(
    profile: ClusterProfile,
    argv: Sequence[str],
    *,
    name: str,
    time: str | None = None,
    array: str | None = None,
    log_dir: str | None = None,
    nodes: int | None = None,
    env: dict[str, str] | None = None,
    kind: str = "command",
    resources=None,
    then: Sequence[Sequence[str]] = (),
) -> RenderedJob:
    """A job that runs one command (every argument quoted, so nothing in it is shell code), then ``then``'s commands
    in order while each succeeds. Its allocation is the profile's ``jobs.<kind>`` (one node by default: never the
    training's), or ``resources``; ``nodes`` and ``time`` override single fields."""
    if not argv:
        raise SlurmError("Give the command to run after '--'.")
    res = resources or profile.job_resources(kind)
    if nodes is not None:
        res = res.model_copy(update={"nodes": nodes})
    hv = _header_vars(profile, name, time, log_dir, array, per_task_log=array is not None, env=env, resources=res)
    commands = [safety.join(argv)] + [safety.join(c) for c in then if c]
    script = _env().get_template("command.sbatch.j2").render(
        **hv, title=f"Command job: {argv[0]}", commands=commands,
    )
    return RenderedJob(name=hv["name"], script=script, log=hv["log"], kind="command", array=hv["array"])
