"""`latxa study rehearse`: the real profile's job chain, end to end, in minutes, before spending 32 or 64 nodes.

- Here (default): :func:`latxa.slurm.chain.local_stand_in` moves the profile onto the single-node test cluster
  (``make slurm-up``): CPU workers, a few steps at a short sequence length, the models from a stand-in ``HF_HOME``
  (small random Llamas under the real names) and the data from a stand-in data root (the production config's real
  file names). Everything else is the profile's own: study profile, backbones, data config, held-out sets,
  requeue and failure handling, storage layout, afterok chain.
- On the cluster (``--on-cluster``): the same chain with the profile's ``smoke`` settings (Leonardo's debug QoS,
  one or two nodes, 30 minutes), real models and data, a few steps.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from latxa.slurm.chain import StudyChain, build_chain, local_stand_in, smoke_on_cluster, submit_chain, wait_chain
from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import ClusterProfile, load_profile

DEFAULT_VARIANT = "exp_2_101"


@dataclass
class RehearsalResult:
    profile: str
    mode: str
    root: str | None
    ok: bool
    seconds: float
    states: dict[str, str]
    chain: dict
    runs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@contextmanager
def _env(**values: str | None):
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is not None:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_stand_ins(profile: ClusterProfile, variants: Sequence[str], data_config: str | None = None) -> None:
    """Fail fast, here, in one sentence: every backbone resolves from the profile's HF_HOME and every file of the
    data config exists under its data root (what the jobs would otherwise find out one by one)."""
    from latxa.components.config import load_config
    from latxa.components.data.sources import DataError, load_data_config, resolve_sources
    from latxa.components.hub import ModelNotFound, resolve_model
    from latxa.components.registry import parse
    from latxa.components.study_data import data_config_path

    size = load_config().resolve(profile.study_profile).target.model_size
    with _env(HF_HOME=profile.storage.hf_home, HF_HUB_CACHE=None, LATXA_DATA_ROOT=profile.storage.data_root):
        os.environ.pop("HF_HUB_CACHE", None)
        for code in variants:
            v = parse(code, size=size)
            try:
                resolve_model(profile.backbone_model(v))
            except ModelNotFound as err:
                raise SlurmError(f"Rehearsal of {v.key}: {err}") from None
            cfg, path = load_data_config(data_config_path(data_config or profile.data_configs.get(size)))
            try:
                resolve_sources(cfg, path, list(v.sources) + sorted(cfg.heldout))
            except DataError as err:
                raise SlurmError(f"Rehearsal of {v.key}: {err}") from None


def rehearse(profile_name: str, variants: Sequence[str] | None = None, *, on_cluster: bool = False,
             root: str | Path | None = None, hf_home: str | None = None, data_root: str | None = None,
             eval_suite: str = "eu-mini", eval_limit: int | None = 2, max_steps: int | None = None,
             timeout: float | None = 3600, poll: float = 2.0, array: bool = False, max_parallel: int | None = None,
             on_update: Callable[[str, str], None] | None = None) -> RehearsalResult:
    """Run the chain of ``profile_name`` for ``variants`` (default exp_2_101) here or on the cluster; wait for it."""
    from latxa.slurm.bridge import SlurmBridge

    real = load_profile(profile_name)
    variants = list(variants or [DEFAULT_VARIANT])
    t0 = time.monotonic()
    if on_cluster:
        prof, mode, root_s = smoke_on_cluster(real), "smoke", None
    else:
        if root is None:
            from latxa.paths import state_dir

            root = state_dir() / "rehearsals" / f"{real.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        hf_home = hf_home or os.environ.get("HF_HOME")
        data_root = data_root or os.environ.get("LATXA_DATA_ROOT")
        if not hf_home or not data_root:
            raise SlurmError("A local rehearsal needs the stand-in models and data: give --hf-home and --data-root (or "
                             "set HF_HOME and LATXA_DATA_ROOT).")
        prof = local_stand_in(real, root, hf_home=str(Path(hf_home).resolve()), data_root=str(Path(data_root).resolve()))
        check_stand_ins(prof, variants)
        mode, root_s = "local", str(root)
    chain = build_chain(prof, variants, mode=mode, eval_suite=eval_suite, eval_limit=eval_limit, max_steps=max_steps,
                        array=array, max_parallel=max_parallel)
    bridge = SlurmBridge(prof, records_dir=(Path(root_s) / "records") if root_s else None)
    submit_chain(bridge, chain)
    if on_update:
        for j in chain.jobs:
            on_update(j.name, f"submitted as job {j.job_id}" + (f" after {', '.join(n for n, _ in j.after)}"
                                                                  if j.after else ""))
    states = wait_chain(bridge, chain, timeout=timeout, poll=poll,
                        on_update=(lambda j, s: on_update(j.name, s)) if on_update else None)
    ok = all(s == "COMPLETED" for s in states.values()) and len(states) == len(chain.jobs)
    return RehearsalResult(real.name, mode, root_s, ok, round(time.monotonic() - t0, 1), states, chain.as_dict(),
                           _runs(bridge, chain))


def _runs(bridge, chain: StudyChain) -> list[dict]:
    out = []
    for p in chain.variants:
        text = bridge.transport.read_text(f"{bridge.cluster_path(p.run)}/run.json")
        info = json.loads(text) if text else {}
        plan = info.get("plan") or {}
        out.append({"variant": p.variant, "run": p.run, "export": p.export, "status": info.get("status"),
                    "registered_model": info.get("registered_model"), "model_version": info.get("model_version"),
                    "mlflow_run_id": info.get("mlflow_run_id"), "tracking_uri": info.get("tracking_uri"),
                    "model_name": plan.get("model_name"), "model_revision": plan.get("model_revision"),
                    "model_dir": plan.get("model_dir"), "steps": (info.get("metrics") or {}).get("step")})
    return out
