"""The study's job chain on a SLURM cluster: prep -> train -> export -> eval -> register, linked by ``afterok``.

One chain covers one or more variants of one size (a cluster profile: ``leonardo-8b`` for the 17 8B variants,
``leonardo-70b`` for the 70B one):

- **prep** (one-node CPU job, the profile's ``jobs.prep``): ``latxa study prepare``: the mixture, the held-out
  sets and their memory-mapped copies. Variants with the same mixture, backbone and seed share one prep job and
  one prepared set.
- **train** (the profile's allocation): one job, or a job array for several variants, each task from its own
  backbone (``backbones`` of the profile, by HF name), ``latxa train --no-export --resume`` with the held-out
  loss; USR1 before the limit -> checkpoint -> requeue; transient failures requeued.
- **export**, **eval**, **register** (one-node jobs each, per variant): ``latxa train export`` into the profile's
  ``storage.models``, ``latxa eval run`` logged under the variant's MLflow run, ``latxa model register``.

Modes: ``production`` (the real run), ``smoke`` (the same chain on the profile's debug QoS, a few steps: the
rehearsal on Leonardo) and ``local`` (:func:`local_stand_in`: the same chain on the single-node test cluster,
CPU workers, stand-in models and data: the rehearsal here).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import ClusterProfile, JobResources, load_profile
from latxa.slurm.render import RenderedJob, join_path, render_command, render_train

Mode = Literal["production", "smoke", "local"]
STEPS = ("prep", "train", "export", "eval", "register")


@dataclass
class ChainJob:
    step: str                          # prep | train | export | eval | register
    name: str
    job: RenderedJob
    after: list[tuple[str, int | None]] = field(default_factory=list)   # (job name, array task or None)
    variants: list[str] = field(default_factory=list)
    job_id: str | None = None


@dataclass
class VariantPaths:
    variant: str                        # key (exp_2_101, 70b-exp_2_101)
    run_name: str
    model: str                          # backbone reference (HF name[@rev] or folder)
    data: str                           # the prepared set folder (train/ and heldout/ inside)
    run: str                            # latxa train --out
    export: str                         # the exported model folder
    task: int | None                    # its task in the train array


@dataclass
class StudyChain:
    profile: ClusterProfile
    mode: str
    jobs: list[ChainJob]
    variants: list[VariantPaths]

    def by_name(self, name: str) -> ChainJob:
        return next(j for j in self.jobs if j.name == name)

    def summary(self) -> list[dict]:
        return [{"step": j.step, "name": j.name, "job_id": j.job_id, "variants": j.variants,
                 "after": [f"{n}" + (f"_{t}" if t is not None else "") for n, t in j.after]} for j in self.jobs]

    def as_dict(self) -> dict:
        return {"profile": self.profile.name, "mode": self.mode, "jobs": self.summary(),
                "variants": [asdict(v) for v in self.variants]}


def _base(profile: ClusterProfile, key: str, fallback: str) -> str:
    return getattr(profile.storage, key) or f"{profile.workdir_path}/{fallback}"


def local_stand_in(profile: ClusterProfile, root: str | Path, *, hf_home: str | None = None,
                   data_root: str | None = None) -> ClusterProfile:
    """``profile`` as the single-node local test cluster runs it: its study profile, environment, backbones, data
    configs, requeue and failure handling kept; the allocation, transport, paths and storage moved to this machine
    (everything under ``root``; the models from ``hf_home``, the raw data from ``data_root``)."""
    local = load_profile("local")
    root = str(Path(root).resolve())
    small = JobResources(nodes=1, gpus_per_node=0, cpus_per_task=1, mem="3G", time="00:20:00")
    env = {**{k: v for k, v in profile.env.items() if not k.startswith(("NCCL_", "TORCH_NCCL", "PYTORCH_CUDA"))},
           **local.env}
    for k in ("LC_ALL", "LANG", "LANGUAGE"):   # this machine may lack en_US.UTF-8; the C locale is always there
        if k in env:
            env[k] = "C.UTF-8"
    storage = profile.storage.model_copy(update={
        "latxa_home": f"{root}/state", "hf_home": hf_home or profile.storage.hf_home,
        "data_root": data_root or profile.storage.data_root, "data": f"{root}/prepared", "runs": f"{root}/runs",
        "models": f"{root}/models", "cache": f"{root}/cache", "tmp": f"{root}/tmp"})
    tracking = f"file:{root}/mlruns" if (profile.tracking_uri or "file:").startswith("file:") else profile.tracking_uri
    return profile.model_copy(update={
        "name": f"{profile.name}@local", "description": f"{profile.name} on the local test cluster (rehearsal)",
        "transport": local.transport, "slurm_conf": local.slurm_conf, "account": None, "partition": local.partition,
        "qos": None, "nodes": 1, "gpus_per_node": 0, "cpus_per_task": 2, "mem": "6G", "time": "00:30:00",
        "exclude": [], "exclude_per_variant": {}, "modules": [], "python_env": "auto", "repo": "{repo}",
        "workdir": f"{root}/slurm", "node_ip_command": local.node_ip_command,
        "ray_object_store_mb": local.ray_object_store_mb, "ray_join_timeout_s": local.ray_join_timeout_s,
        "ray_head_attempts": local.ray_head_attempts, "sacct_completion": True, "env": env, "storage": storage,
        "tracking_uri": tracking, "jobs": {k: small for k in ("command", "prep", "export", "eval", "register")},
        # the real lead (15-30 min) would fire at once in a 30-min job: keep the --signal line, 60 s before the end
        "signal_lead_s": 60 if profile.signal_lead_s else None})


def smoke_on_cluster(profile: ClusterProfile) -> ClusterProfile:
    """``profile`` for a smoke run on the cluster itself: its ``smoke`` settings (debug QoS, nodes, time)."""
    sm = profile.smoke
    if sm is None:
        raise SlurmError(f"Cluster profile '{profile.name}' has no smoke section (qos, nodes, time) for a rehearsal.")
    upd: dict = {"nodes": sm.nodes or 1, "time": sm.time or "00:30:00"}
    if sm.qos:
        upd["qos"] = sm.qos
    if sm.partition:
        upd["partition"] = sm.partition
    jobs = {k: profile.job_resources(k).model_copy(update={"time": sm.time or "00:30:00", "qos": sm.qos})
            for k in ("command", "prep", "export", "eval", "register")}
    return profile.model_copy(update={**upd, "jobs": jobs, "name": f"{profile.name}@smoke"})


def build_chain(profile: ClusterProfile, variants: Sequence[str], *, mode: Mode = "production",
                data_config: str | None = None, eval_suite: str = "eu-mini",
                eval_limit: int | None = None, max_steps: int | None = None, models: dict[str, str] | None = None,
                array: bool = False, max_parallel: int | None = None) -> StudyChain:
    """The chain's rendered jobs (not submitted). ``profile`` is already the profile the jobs run with
    (:func:`local_stand_in` / :func:`smoke_on_cluster` for the rehearsals). ``models`` overrides a variant's backbone.

    Training is one job per variant, each after its own prep job (``array``: one job array over all of them, after
    every prep job, at most ``max_parallel`` tasks at once)."""
    from latxa.components.config import load_config
    from latxa.components.registry import parse

    if not variants:
        raise SlurmError("Give at least one variant for the chain.")
    resolved = load_config().resolve(profile.study_profile, smoke=mode != "production")
    size = resolved.target.model_size
    parsed = [parse(v, size=size) for v in variants]
    if len({v.code for v in parsed}) != len(parsed):
        raise SlurmError("The variant list has duplicates.")
    smoke = mode != "production"
    sub = "smoke" if smoke else ""
    data_base = join_path(_base(profile, "data", "prepared"), sub)
    runs_base = join_path(_base(profile, "runs", "runs"), sub)
    models_base = join_path(_base(profile, "models", "models"), sub)
    data_cfg = data_config or profile.data_configs.get(size)
    study = load_config()
    # one prep job per (mixture, backbone, seed)
    groups: dict[tuple, str] = {}
    paths: list[VariantPaths] = []
    jobs: list[ChainJob] = []
    for i, v in enumerate(parsed):
        model = (models or {}).get(v.key) or (models or {}).get(v.code) or profile.backbone_model(v)
        group = (tuple(sorted(v.sources)), model, study.seed_for(v.code))
        if group not in groups:
            label = v.run_name
            groups[group] = label
            argv = ["latxa", "study", "prepare", "--variant", v.key, "--profile", profile.study_profile,
                    "--tokenizer", model, "--out", join_path(data_base, label), "--quiet"]
            if data_cfg:
                argv += ["--config", data_cfg]
            if smoke:
                argv.append("--smoke")
            jobs.append(ChainJob("prep", f"prep-{label}", render_command(profile, argv, name=f"prep-{label}",
                                                                          kind="prep"), variants=[v.key]))
        else:
            next(j for j in jobs if j.name == f"prep-{groups[group]}").variants.append(v.key)
        task = i if array and len(parsed) > 1 else None
        paths.append(VariantPaths(v.key, v.run_name, model, join_path(data_base, groups[group]),
                                  join_path(runs_base, v.run_name), join_path(models_base, v.run_name), task))
    # the study's MLflow experiment (latxa-instruct), where `latxa eval run --variant` finds the variant's run
    train_args = ["--no-export"]
    steps = max_steps or (profile.smoke.max_steps if smoke and profile.smoke else None)
    if steps:
        train_args.append(f"--max-steps={steps}")
    if mode == "local":
        train_args += ["--backend=cpu", "--num-workers=2"]
    elif mode == "smoke":
        train_args.append(f"--num-workers={profile.nodes * profile.gpus_per_node}")
    def train_job(members: list[int], name: str) -> ChainJob:
        ps = [paths[i] for i in members]
        job = render_train(
            profile, [parsed[i].key for i in members], out=ps[0].run if len(ps) == 1 else runs_base,
            models=[p.model for p in ps], datas=[join_path(p.data, "train") for p in ps],
            heldouts=[join_path(p.data, "heldout") for p in ps], name=name, train_args=train_args,
            check_study=mode == "production", smoke=smoke, max_parallel=max_parallel)
        preps = [f"prep-{groups[g]}" for g in groups if any(paths[i].data.endswith("/" + groups[g]) for i in members)]
        return ChainJob("train", name, job, after=[(n, None) for n in dict.fromkeys(preps)],
                        variants=[p.variant for p in ps])

    trains: dict[str, str] = {}           # variant -> its training job's name
    if array and len(parsed) > 1:
        name = f"sweep-{size}-{len(parsed)}"
        jobs.append(train_job(list(range(len(parsed))), name))
        trains = {p.variant: name for p in paths}
    else:
        for i, p in enumerate(paths):
            jobs.append(train_job([i], f"train-{p.run_name}"))
            trains[p.variant] = f"train-{p.run_name}"
    device = "cpu" if mode == "local" or not profile.job_resources("eval").gpus_per_node else "cuda"
    for p in paths:
        train_name = trains[p.variant]
        export = render_command(profile, ["latxa", "train", "export", "--run", p.run, "--out", p.export],
                                name=f"export-{p.run_name}", kind="export")
        eval_argv = ["latxa", "eval", "run", "--model", p.export, "--suite", eval_suite, "--out",
                     join_path(p.run, "eval"), "--name", p.variant, "--variant", p.variant, "--device", device,
                     "--format", "json"]
        if eval_limit:
            eval_argv += ["--limit", str(eval_limit)]
        evaluate = render_command(profile, eval_argv, name=f"eval-{p.run_name}", kind="eval")
        register = render_command(profile, ["latxa", "model", "register", "--run", p.run, "--model", p.export],
                                  name=f"register-{p.run_name}", kind="register")
        jobs += [ChainJob("export", export.name, export, after=[(train_name, p.task)], variants=[p.variant]),
                 ChainJob("eval", evaluate.name, evaluate, after=[(export.name, None)], variants=[p.variant]),
                 ChainJob("register", register.name, register, after=[(evaluate.name, None)], variants=[p.variant])]
    return StudyChain(profile, mode, jobs, paths)


def submit_chain(bridge, chain: StudyChain, *, key: str | None = None) -> StudyChain:
    """Submit every job in order with ``afterok`` dependencies (a job whose dependency failed is cancelled by
    SLURM: ``--kill-on-invalid-dep``). With ``key``, already submitted jobs of the same chain are re-attached."""
    ids: dict[str, str] = {}
    for j in chain.jobs:
        deps = []
        for name, task in j.after:
            deps.append(ids[name] + (f"_{task}" if task is not None else ""))
        dependency = "afterok:" + ":".join(deps) if deps else None
        j.job_id = bridge.submit(j.job, dependency=dependency, key=f"{key}/{j.name}" if key else None,
                                 kill_on_invalid_dep=True)
        ids[j.name] = j.job_id
    return chain


def wait_chain(bridge, chain: StudyChain, *, timeout: float | None = None, poll: float = 2.0,
               on_update: Callable[[ChainJob, str], None] | None = None) -> dict[str, str]:
    """Follow every job of the chain to its end; returns name -> final state. Stops early (and cancels what is
    left) when a job fails for good: its dependents would never run."""
    deadline = None if timeout is None else time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        done = True
        for j in chain.jobs:
            if states.get(j.name) in ("COMPLETED",) or (j.name in states and states[j.name] in _FINAL_BAD):
                continue
            st = bridge.status(j.job_id)
            if states.get(j.name) != st.state and on_update:
                on_update(j, st.state)
            states[j.name] = st.state
            if not st.terminal:
                done = False
            elif st.state != "COMPLETED":
                for other in chain.jobs:
                    if other.job_id and other.name not in states or states.get(other.name) in ("PENDING", "RUNNING"):
                        try:
                            bridge.cancel(other.job_id)
                        except SlurmError:
                            pass
                return states
        if done:
            return states
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(f"The chain did not finish within {timeout:.0f} s: "
                             + ", ".join(f"{n} {s}" for n, s in states.items()) + ".")
        time.sleep(poll)


_FINAL_BAD = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                        "DEADLINE", "SPECIAL_EXIT"})
