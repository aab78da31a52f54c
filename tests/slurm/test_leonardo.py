"""The Leonardo profiles as rendered: state off $HOME, the reference's headers, command jobs on their own
allocation, the 17 + 1 study chains with the 70B under its own names. No cluster needed: this is the text."""

from __future__ import annotations

import re

import pytest

from latxa.components.registry import TRAINED_8B
from latxa.errors import LatxaError
from latxa.slurm.chain import build_chain, local_stand_in, smoke_on_cluster
from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import load_profile
from latxa.slurm.render import render_command, render_train

LEONARDO = ("leonardo", "leonardo-8b", "leonardo-70b")
HOME_RE = re.compile(r'(\$\{?HOME\b|(^|[\s=:"\'(])~(/|\s|$)|/home/)', re.M)


def _scripts(name: str) -> list[str]:
    prof = load_profile(name)
    variants = ["exp_2_101"] if prof.study_profile == "leonardo-70b" else ["exp_0_010", "exp_1_101", "exp_2_101"]
    out = [j.job.script for j in build_chain(prof, variants).jobs]
    out += [j.job.script for j in build_chain(prof, variants, array=len(variants) > 1).jobs]
    out += [j.job.script for j in build_chain(smoke_on_cluster(prof), variants, mode="smoke").jobs]
    out.append(render_train(prof, variants[:1], out="$CINECA_SCRATCH/latxa/runs/x").script)
    out += [render_command(prof, ["latxa", "data", "show", "x"], name="c", kind=k).script
            for k in ("command", "prep", "export", "eval", "register")]
    return out


@pytest.mark.parametrize("name", LEONARDO)
def test_no_rendered_path_of_a_leonardo_profile_points_into_home(name):
    for script in _scripts(name):
        body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("# "))
        assert not HOME_RE.search(body), HOME_RE.search(body).group(0) + "\n" + body[:3000]
        for var, where in (("LATXA_HOME", "WORK"), ("HF_HOME", "WORK"), ("LATXA_DATA_ROOT", "WORK"),
                           ("XDG_CACHE_HOME", "CINECA_SCRATCH"), ("TRITON_CACHE_DIR", "CINECA_SCRATCH"),
                           ("TORCH_EXTENSIONS_DIR", "CINECA_SCRATCH"), ("HF_DATASETS_CACHE", "CINECA_SCRATCH"),
                           ("TMPDIR", "CINECA_SCRATCH")):
            assert f'export {var}="${{{where}}}"/latxa/' in script, var
        assert 'export MLFLOW_TRACKING_URI=file:"${WORK}"/latxa/mlruns' in script
        assert "sqlite" not in script and 'source "${WORK}"/latxa/venv/bin/activate' in script
        assert 'cd "${WORK}"/latxa/latxa-mlops' in script


def test_the_study_chains_for_the_18_runs():
    p8, p70 = load_profile("leonardo-8b"), load_profile("leonardo-70b")
    chain = build_chain(p8, list(TRAINED_8B))
    steps = [j.step for j in chain.jobs]
    assert steps.count("prep") == steps.count("train") == steps.count("register") == 17
    for j in chain.jobs:
        if j.step == "train":
            assert [d[0] for d in j.after] == [f"prep-{j.variants[0]}"]
            assert "#SBATCH --nodes=32" in j.job.script and "--no-export" in j.job.script
            assert "--pg-timeout 14400" in j.job.script and "--heldout" in j.job.script
        else:   # command jobs: one node, their own time, never the training allocation
            assert "#SBATCH --nodes=1" in j.job.script and "--signal" not in j.job.script
    by_name = {j.name: j for j in chain.jobs}
    assert "#SBATCH --time=05:00:00" in by_name["prep-exp_0_010"].job.script
    assert "#SBATCH --gres=gpu:1" in by_name["eval-exp_0_010"].job.script
    assert "#SBATCH --partition=lrd_all_serial" in by_name["register-exp_0_010"].job.script
    assert "--gres" not in by_name["register-exp_0_010"].job.script
    seeds = {p.variant: p for p in chain.variants}
    assert seeds["exp_2_010"].model == "meta-llama/Llama-3.1-8B-Instruct"
    assert seeds["exp_0_010"].model == "meta-llama/Llama-3.1-8B" and seeds["exp_1_110"].model == "HiTZ/Latxa-Llama-3.1-8B"
    assert "MODELS=( HiTZ/Latxa-Llama-3.1-8B )" in by_name["train-exp_1_110"].job.script
    assert "--config production" in by_name["prep-exp_0_010"].job.script
    # the reference's per-run node exclusions
    assert "lrdn1480" in by_name["train-exp_1_111"].job.script and "lrdn1480" not in by_name["train-exp_0_010"].job.script
    # the 70B: its backbone, its data config, its own names and folders, 64 nodes, its lead
    (v,) = build_chain(p70, ["exp_2_101"]).variants
    c70 = build_chain(p70, ["exp_2_101"])
    assert v.variant == "70b-exp_2_101" and v.model == "meta-llama/Llama-3.1-70B-Instruct"
    assert v.run.endswith("/runs/Latxa-Llama-3.1-70B-Instruct-exp_2_101")
    assert v.export.endswith("/models/Latxa-Llama-3.1-70B-Instruct-exp_2_101")
    train70 = next(j for j in c70.jobs if j.step == "train").job.script
    assert "#SBATCH --nodes=64" in train70 and "#SBATCH --signal=B:USR1@1800" in train70 and "#SBATCH --mem=494000M" in train70
    assert "--config production-70b" in next(j for j in c70.jobs if j.step == "prep").job.script
    assert "#SBATCH --gres=gpu:3" in next(j for j in c70.jobs if j.step == "eval").job.script
    assert "latxa-70b-exp_2_101" not in train70   # registered by the register job (latxa model register)
    with pytest.raises(LatxaError, match="exp_0_101 has no 70B form"):
        build_chain(p70, ["exp_0_101"])          # no 70B form of backbone 0
    with pytest.raises(SlurmError, match="duplicates"):
        build_chain(p8, ["exp_2_101", "exp_2_101"])


def test_smoke_and_local_stand_ins_keep_the_profile_but_not_its_allocation(tmp_path):
    p70 = load_profile("leonardo-70b")
    smoke = smoke_on_cluster(p70)
    assert (smoke.qos, smoke.nodes, smoke.time) == ("boost_qos_dbg", 2, "00:30:00")
    job = next(j for j in build_chain(smoke, ["exp_2_101"], mode="smoke").jobs if j.step == "train").job.script
    assert "#SBATCH --qos=boost_qos_dbg" in job and "--num-workers=8" in job and "--smoke" in job
    local = local_stand_in(p70, tmp_path, hf_home="/h", data_root="/d")
    assert (local.nodes, local.gpus_per_node, local.transport.kind, local.study_profile) == (1, 0, "local", "leonardo-70b")
    assert local.backbones == p70.backbones and local.data_configs == p70.data_configs and local.requeue
    job = next(j for j in build_chain(local, ["exp_2_101"], mode="local").jobs if j.step == "train").job.script
    assert "--backend=cpu" in job and "--num-workers=2" in job and "export HF_HOME=/h" in job


def test_cli_submit_gives_command_jobs_their_own_allocation(cli):
    res = cli("slurm", "render", "--profile", "leonardo-8b", "--kind", "prep", "--", "latxa", "data", "show", "x")
    assert res.returncode == 0 and "#SBATCH --nodes=1\n" in res.stdout and "#SBATCH --time=05:00:00" in res.stdout
    res = cli("slurm", "render", "--profile", "leonardo-8b", "--nodes", "2", "--gpus", "0", "--qos", "boost_qos_dbg",
              "--time", "00:10:00", "--", "hostname")
    assert res.returncode == 0 and "#SBATCH --nodes=2" in res.stdout and "--gres" not in res.stdout
    assert "#SBATCH --qos=boost_qos_dbg" in res.stdout and "#SBATCH --time=00:10:00" in res.stdout
    res = cli("slurm", "render", "--profile", "leonardo-8b", "--variant", "exp_2_101", "--nodes", "2")
    assert res.returncode == 2 and "for command jobs" in res.stderr
    res = cli("slurm", "render", "--profile", "leonardo-70b", "--variant", "exp_2_101")
    assert 'OUTS=( "${CINECA_SCRATCH}"/latxa/runs/Latxa-Llama-3.1-70B-Instruct-exp_2_101 )' in res.stdout
    for verb in ("prepare", "rehearse", "submit"):
        res = cli("study", verb, "--help")
        assert res.returncode == 0 and "Example" in res.stdout


def test_wait_backs_off_on_leonardo_and_polls_often_on_the_local_cluster(monkeypatch):
    """A waiting client spares Leonardo's shared slurmctld (the caller's backoff up to 30-60 s); the local test
    cluster caps the interval (its squeue/sacct answer at once)."""
    from latxa.slurm.bridge import JobStatus, SlurmBridge

    assert all(load_profile(n).max_poll_s is None for n in LEONARDO)
    assert load_profile("local").max_poll_s == 3
    sleeps: list[float] = []

    class Done(Exception):
        pass

    bridge = SlurmBridge(load_profile("local"))
    bridge.status = lambda job_id: JobStatus(job_id=job_id, state="RUNNING", source="squeue")

    def fake_sleep(s):
        sleeps.append(s)
        if len(sleeps) == 12:
            raise Done

    import latxa.slurm.bridge as mod

    monkeypatch.setattr(mod.time, "sleep", fake_sleep)
    with pytest.raises(Done):
        bridge.wait("123", poll=1.0, max_poll=30.0)
    assert max(sleeps) == 3 and sleeps[0] == 1.0
