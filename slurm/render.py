"""Render sbatch scripts from cluster profiles (Jinja2 templates in ``slurm/templates``).

- :func:`render_train`: a Ray Train job: Ray head on the first node, one worker per other node (``srun``),
  explicit per-job port block, wait until every node joined, ``latxa train ... --resume``, Ray teardown;
  the job's exit status is the training's. Several variants make a job array (one variant per task).
- :func:`render_command`: any command (data preparation, evaluation, tests), every argument quoted.

Every user value is validated or quoted (:mod:`latxa.slurm.safety`).
"""

from __future__ import annotations

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


def _shell_path(value: str | None, what: str) -> str | None:
    """A path for the script body: quoted, with a leading ``~/`` kept expandable as ``"$HOME"/...``."""
    if value is None:
        return None
    safety.body_path(value, what)
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


def _header_vars(profile: ClusterProfile, name: str, time: str | None, log_dir: str | None, array: str | None,
                 per_task_log: bool, env: dict[str, str] | None = None) -> dict:
    name = safety.job_name(name)
    log_dir = safety.sbatch_path(log_dir or f"{profile.workdir_path}/logs", "log folder")
    pattern = f"{name}-%A_%a.out" if per_task_log else f"{name}-%j.out"
    return {
        "p": profile,
        "name": name,
        "nodes": profile.nodes,
        "time": safety.time_limit(time) if time else profile.time,
        "array": safety.array_spec(array) if array else None,
        "log": f"{log_dir}/{pattern}",
        "venv": _shell_path(profile.python_env_path, "python_env"),
        "repo": _shell_path(profile.repo_path, "repo"),
        "env": {**profile.env, **{safety.env_name(k): safety.text_arg(str(v), f"value of {k}") for k, v in (env or {}).items()}},
    }


def default_model(profile: ClusterProfile, variant: str) -> str:
    """The backbone a variant starts from: the tiny offline model on CPU profiles, the HF name on GPU ones."""
    from latxa.components.registry import parse

    v = parse(variant)
    if profile.gpus_per_node == 0:
        from latxa.paths import tiny_model_dir

        return str(tiny_model_dir())
    return v.backbone_info.hf_name


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
) -> RenderedJob:
    """A Ray Train job for one variant, or a job array over several (task i trains ``variants[i]``).

    With several variants, ``out`` (and ``data`` when given) get one sub-folder per variant.
    """
    from latxa.components.registry import parse

    if not variants:
        raise SlurmError("Give at least one variant to train.")
    codes = [parse(v).code for v in variants]
    if len(set(codes)) != len(codes):
        raise SlurmError(f"Variant list has duplicates: {', '.join(codes)}.")
    if check_study:
        profile.check_against_study()
    array = None
    if len(codes) > 1:
        array = f"0-{len(codes) - 1}" + (f"%{int(max_parallel)}" if max_parallel else "")
    if name is None:
        name = f"train-{codes[0]}" if len(codes) == 1 else f"sweep-{len(codes)}"
    hv = _header_vars(profile, name, time, log_dir, array, per_task_log=array is not None, env=env)
    models = [model or default_model(profile, c) for c in codes]
    for m in models:
        safety.body_path(m, "model")
    safety.body_path(out, "output folder")
    if data is not None:
        safety.body_path(data, "data folder")
    args = [safety.text_arg(a, "training argument") for a in train_args]
    script = _env().get_template("ray_train.sbatch.j2").render(
        **hv,
        title=f"Ray Train job: {', '.join(codes)} on {profile.nodes} node(s)",
        variants=codes,
        models=models,
        out=out,
        data=data,
        per_variant_out=array is not None,
        per_variant_data=array is not None and data is not None,
        study_profile=profile.study_profile,
        train_args=args,
        config_staged=config_staged,
        head_attempts=profile.ray_head_attempts,
    )
    return RenderedJob(name=hv["name"], script=script, log=hv["log"], kind="train", array=array, variants=codes, out=out)


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
) -> RenderedJob:
    """A job that runs one command (every argument quoted, so nothing in it is shell code)."""
    if not argv:
        raise SlurmError("Give the command to run after '--'.")
    if nodes is not None:
        profile = profile.model_copy(update={"nodes": nodes})
    hv = _header_vars(profile, name, time, log_dir, array, per_task_log=array is not None, env=env)
    script = _env().get_template("command.sbatch.j2").render(
        **hv, title=f"Command job: {argv[0]}", command=safety.join(argv),
    )
    return RenderedJob(name=hv["name"], script=script, log=hv["log"], kind="command", array=hv["array"])
