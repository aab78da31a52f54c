"""Rendered sbatch scripts: profiles, #SBATCH lines, arrays, and multi-node behaviour (32 and 64 nodes).

Only one node exists here, so the multi-node checks execute the rendered script with bash against stand-ins
for the commands only a real Leonardo allocation has (scontrol, srun, module, the IB address lookup):
the script's own node-list handling, srun-per-node loop, port arithmetic and exit-code propagation run for real.
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latxa.slurm.errors import SlurmError
from latxa.slurm.profiles import available_profiles, load_profile
from latxa.slurm.render import render_command, render_train

STUBS = {
    # scontrol show hostnames <list>: the node names the test chose
    "scontrol": '#!/bin/bash\nif [ "$1" = requeue ]; then printf "%s\\n" "scontrol $*" >> "$CALLS"; exit 0; fi\n'
                'for n in $FAKE_NODES; do echo "$n"; done\n',
    # srun: record the call, then block like `ray start --block` until the script's cleanup kills it
    "srun": '#!/bin/bash\nprintf "%s\\n" "srun $*" >> "$CALLS"\nexec sleep 60\n',
    "module": '#!/bin/bash\nprintf "%s\\n" "module $*" >> "$CALLS"\n',
    "hostname": '#!/bin/bash\necho 10.1.2.3\n',
    # python: the token one-liner, or latxa.slurm.raywait, which (like the real one) returns only once --nodes N nodes
    # joined, i.e. N srun stubs recorded themselves (without this, cleanup can kill a stub before it writes)
    "python": '#!/bin/bash\nif [ "$1" = -c ]; then echo faketoken; exit 0; fi\n'
              'if [ "$2" = latxa.slurm.failures ]; then exec "$REAL_PYTHON" "$@"; fi\n'
              'printf "%s\\n" "python $*" >> "$CALLS"\n'
              'if [ "$2" = latxa.slurm.raywait ]; then\n'
              '  n=$(printf "%s\\n" "$*" | sed -n "s/.*--nodes \\([0-9]*\\).*/\\1/p")\n'
              '  for i in $(seq 1 400); do [ "$(grep -c "^srun " "$CALLS")" -ge "$n" ] && exit 0; sleep 0.1; done\n'
              '  exit 1\nfi\n',
    "latxa": '#!/bin/bash\nprintf "%s\\n" "latxa $*" >> "$CALLS"\nfor a in "$@"; do printf "ARG<%s>\\n" "$a" >> "$CALLS"; done\n'
             'if [ -n "${FAKE_TRAIN_SAYS:-}" ]; then echo "$FAKE_TRAIN_SAYS"; fi\n'
             'env | grep -E "^(RAY_ADDRESS|RAY_AUTH_MODE|NCCL_TIMEOUT|HF_HUB_OFFLINE|LATXA_HOME|HF_HOME|TMPDIR|XDG_CACHE_HOME|'
             'MLFLOW_TRACKING_URI)=" >> "$CALLS"\nexit "${FAKE_TRAIN_RC:-0}"\n',
}


def run_script(tmp_path: Path, script: str, nodes: list[str], job_id: int = 4242, train_rc: int = 0,
               extra_env: dict | None = None, log: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a rendered script with the stubs; with ``log``, its output is appended there as SLURM would (the
    requeue logic reads the job's own log) and also returned in ``stdout``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        p = bin_dir / name
        p.write_text(body)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "latxa" / "venv" / "bin").mkdir(parents=True, exist_ok=True)      # the profiles keep both off $HOME
    (work / "latxa" / "venv" / "bin" / "activate").write_text("")
    (work / "latxa" / "latxa-mlops").mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    calls = tmp_path / f"calls-{job_id}.txt"
    calls.write_text("")
    path = tmp_path / f"job-{job_id}.sbatch"
    path.write_text(script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "CALLS": str(calls), "FAKE_NODES": " ".join(nodes),
           "WORK": str(work), "FAST": str(tmp_path / "fast"), "CINECA_SCRATCH": str(tmp_path / "scratch"),
           "REAL_PYTHON": sys.executable,
           "SLURM_JOB_ID": str(job_id), "SLURM_JOB_NAME": "t", "SLURM_JOB_NODELIST": "lrdn[...]",
           "SLURM_CPUS_PER_TASK": "32", "FAKE_TRAIN_RC": str(train_rc), **(extra_env or {})}
    if log is None:
        res = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    else:
        start = log.stat().st_size if log.exists() else 0
        with log.open("a") as fh:
            res = subprocess.run(["bash", str(path)], stdout=fh, stderr=subprocess.STDOUT, text=True, timeout=60,
                                 env=env, cwd=tmp_path)
        res.stdout = log.read_text()[start:]
    return res, calls.read_text().splitlines()


def test_shipped_profiles_load_and_match_the_study():
    names = available_profiles()
    assert {"local", "leonardo", "leonardo-8b", "leonardo-70b"} <= set(names)
    for name in names:
        prof = load_profile(name)
        prof.check_against_study()
    p8, p70 = load_profile("leonardo-8b"), load_profile("leonardo-70b")
    assert (p8.nodes, p8.gpus_per_node, p8.partition) == (32, 4, "boost_usr_prod")
    assert (p70.nodes, p70.gpus_per_node) == (64, 4)
    assert p8.transport.kind == "ssh" and p8.transport.host_key_checking == "yes"
    assert p8.env["HF_HUB_OFFLINE"] == "1" and p8.env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"


def test_bad_profiles_are_one_sentence_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_profile: local\nnodes: 0\n")
    with pytest.raises(SlurmError, match=r"Invalid value for 'nodes'"):
        load_profile(bad)
    bad.write_text("study_profile: local\npartitoin: x\n")
    with pytest.raises(SlurmError, match=r"Unknown key 'partitoin'"):
        load_profile(bad)
    bad.write_text("study_profile: local\nenv: {'A;B': x}\n")
    with pytest.raises(SlurmError, match="not valid"):
        load_profile(bad)
    with pytest.raises(SlurmError, match="Unknown cluster profile 'nope'"):
        load_profile("nope")
    mismatch = tmp_path / "m.yaml"
    mismatch.write_text("study_profile: leonardo-8b\nnodes: 16\ngpus_per_node: 4\n")
    with pytest.raises(SlurmError, match="expects 32 x 4"):
        load_profile(mismatch).check_against_study()


def test_leonardo_header_has_the_reference_allocation(tmp_path):
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"))
    lines = job.script.splitlines()
    sb = {l.split("=", 1)[0].split()[1]: (l.split("=", 1)[1] if "=" in l else "") for l in lines if l.startswith("#SBATCH")}
    assert sb["--account"] == "EUHPC_E04_042" and sb["--partition"] == "boost_usr_prod"
    assert sb["--nodes"] == "32" and sb["--gres"] == "gpu:4" and sb["--ntasks-per-node"] == "1"
    assert sb["--time"] == "24:00:00" and "lrdn0310" in sb["--exclude"]
    assert sb["--output"].endswith("/logs/train-exp_2_101-%j.out")
    # Nothing executable before the #SBATCH block ends (sbatch stops reading directives at the first command).
    first_cmd = next(i for i, l in enumerate(lines) if l and not l.startswith("#"))
    assert all(not l.startswith("#SBATCH") for l in lines[first_cmd:])
    assert "module load" not in job.script            # the reference loaded no modules (a venv)
    assert "--profile leonardo-8b" in job.script and "--model \"${MODEL}\"" in job.script
    assert "MODELS=( meta-llama/Llama-3.1-8B-Instruct )" in job.script


def test_study_profile_retargets_the_site_profile(tmp_path):
    prof = load_profile("leonardo").for_study("leonardo-70b")
    job = render_train(prof, ["exp_2_101"], out=str(tmp_path))
    assert "#SBATCH --nodes=64" in job.script and "--profile leonardo-70b" in job.script


def test_sweep_renders_a_job_array(tmp_path):
    job = render_train(load_profile("leonardo-8b"), ["exp_0_010", "exp_1_101", "exp_2_111"], out=str(tmp_path),
                       max_parallel=2)
    assert job.array == "0-2%2" and "#SBATCH --array=0-2%2" in job.script
    assert "VARIANTS=( exp_0_010 exp_1_101 exp_2_111 )" in job.script
    assert "MODELS=( meta-llama/Llama-3.1-8B HiTZ/Latxa-Llama-3.1-8B meta-llama/Llama-3.1-8B-Instruct )" in job.script
    assert job.log.endswith("sweep-3-%A_%a.out") and job.log_for("77_2").endswith("sweep-3-77_2.out")
    with pytest.raises(SlurmError, match="duplicates"):
        render_train(load_profile("local"), ["exp_2_101", "exp_2_101"], out=str(tmp_path))


@pytest.mark.parametrize("profile,nodes", [("leonardo-8b", 32), ("leonardo-70b", 64)])
def test_multinode_script_starts_one_ray_worker_per_node(tmp_path, profile, nodes):
    job = render_train(load_profile(profile), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "data"),
                       train_args=["--max-steps", "10"])
    names = [f"lrdn{i:04d}" for i in range(1, nodes + 1)]
    res, calls = run_script(tmp_path, job.script, names, job_id=4242, train_rc=0)
    assert res.returncode == 0, res.stderr
    sruns = [c for c in calls if c.startswith("srun ")]
    assert len(sruns) == nodes                                    # head + one per other node
    # srun calls run in the background, so they are logged in any order
    head = [c for c in sruns if "--head" in c]
    workers = [c for c in sruns if "--head" not in c]
    assert len(head) == 1 and re.search(r"-w (\S+)", head[0]).group(1) == names[0]      # head on the first node
    assert sorted(re.search(r"-w (\S+)", c).group(1) for c in workers) == names[1:]      # one worker per other node
    sruns = head + workers
    base = 20000 + (4242 % 400) * 100
    assert f"--address=10.1.2.3:{base}" in sruns[1] and f"--port={base}" in sruns[0]
    ports = [int(p) for c in sruns for p in re.findall(r"-port=(\d+)", c)]
    assert ports and all(base <= p < base + 100 for p in ports)
    assert "--num-gpus=4" in sruns[1] and "--num-cpus=32" in sruns[1]
    assert any(c.startswith("python -m latxa.slurm.raywait") and f"--nodes {nodes}" in c for c in calls)
    train = [c for c in calls if c.startswith("latxa train")]
    assert len(train) == 1 and f"--profile {profile}" in train[0] and "--resume" in train[0]
    assert f"RAY_ADDRESS=10.1.2.3:{base}" in calls and "RAY_AUTH_MODE=token" in calls
    assert "HF_HUB_OFFLINE=1" in calls
    # NCCL_TIMEOUT is read by neither NCCL nor torch: the real process-group timeout is latxa train --pg-timeout
    assert not any(c.startswith("NCCL_TIMEOUT=") for c in calls) and "ARG<--pg-timeout>" in calls and "ARG<14400>" in calls
    assert "--cpus-per-task=32" in sruns[0] and "--cpus-per-task=32" in sruns[1]        # srun -c (Slurm >= 22.05)
    # state off $HOME: the profile's storage on $WORK / $CINECA_SCRATCH, as the job's shell expands them
    assert f"LATXA_HOME={tmp_path}/work/latxa/state" in calls and f"HF_HOME={tmp_path}/work/latxa/hf" in calls
    assert f"TMPDIR={tmp_path}/scratch/latxa/tmp" in calls and f"MLFLOW_TRACKING_URI=file:{tmp_path}/work/latxa/mlruns" in calls
    assert "Ray stopped" in res.stdout


def test_two_jobs_on_shared_nodes_use_disjoint_ports(tmp_path):
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "d"))
    used = []
    for jid in (1000, 1001):
        _, calls = run_script(tmp_path, job.script, [f"n{i}" for i in range(32)], job_id=jid)
        used.append({int(p) for c in calls if c.startswith("srun") for p in re.findall(r"-port=(\d+)", c)})
    assert used[0] and used[1] and not (used[0] & used[1])


def test_job_exit_code_is_the_training_exit_code(tmp_path):
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "d"))
    res, calls = run_script(tmp_path, job.script, [f"n{i}" for i in range(32)], train_rc=7)
    assert res.returncode == 7 and "training exited with status 7" in res.stdout
    assert "not retried: exit status 7 and no transient failure in the log" in res.stdout


def test_wrong_node_count_fails_before_starting_ray(tmp_path):
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "d"))
    res, calls = run_script(tmp_path, job.script, [f"n{i}" for i in range(31)])
    assert res.returncode == 1 and "expected 32 nodes, SLURM gave 31" in res.stderr
    assert not [c for c in calls if c.startswith("srun") or c.startswith("latxa")]


def test_scripts_are_valid_bash():
    for prof in ("local", "leonardo-8b"):
        for job in (render_train(load_profile(prof), ["exp_2_101"], out="/tmp/x"),
                    render_command(load_profile(prof), ["echo", "hi"], name="c")):
            res = subprocess.run(["bash", "-n"], input=job.script, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr


def test_cli_render_prints_the_script(cli):
    res = cli("slurm", "render", "--variant", "exp_2_101", "--profile", "leonardo-8b")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("#!/bin/bash") and "#SBATCH --nodes=32" in res.stdout
    res = cli("slurm", "render", "--variant", "exp_9_101", "--profile", "local")
    assert res.returncode == 2 and res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    res = cli("slurm", "render", "--help")
    assert res.returncode == 0 and "Example" in res.stdout


def test_kfp_component_compiles_with_its_outputs(tmp_path):
    import yaml
    from kfp import compiler

    from latxa.pipelines.steps import slurm_train_model

    path = tmp_path / "slurm_train.yaml"
    compiler.Compiler().compile(slurm_train_model, str(path))
    spec = yaml.safe_load(path.read_text())
    comp = spec["components"]["comp-slurm-train-model"]
    assert set(comp["outputDefinitions"]["parameters"]) == {"Output"}  # the MLflow run id
    assert set(comp["outputDefinitions"]["artifacts"]) == {"model", "metrics"}
    assert {"variant", "cluster", "profile", "base_model", "max_steps"} <= set(comp["inputDefinitions"]["parameters"])
    assert set(comp["inputDefinitions"]["artifacts"]) == {"data"}


# ---------------------------------------------------------------------------------------------------------------
# Surviving SLURM with nobody watching: the script's own requeue logic, with the stubs (the real cluster runs it in
# tests/slurm/test_requeue.py)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rc,says,restarts,want_rc,requeued", [
    (75, "", 0, 0, True),                                            # checkpointed on USR1: requeue, resume
    (75, "", 3, 75, False),                                          # ... unless the budget of 3 is spent
    (1, "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error", 0,
     0, True),                                                       # transient: requeued
    (1, "[rank0]: NVCC timeout while compiling", 1, 0, True),        # the reference's start-up failures
    (1, "TypeError: unsupported operand type(s) for +: 'int' and 'str'", 0, 1, False),   # a code error
    (1, "torch.OutOfMemoryError: CUDA out of memory. NCCL error follows", 0, 1, False),  # fatal beats transient
    (2, "error: NCCL error: Dataset /x has no manifest.json", 0, 2, False),              # bad input: exit status 2
])
def test_the_job_requeues_itself_on_request_and_on_transient_failures(tmp_path, rc, says, restarts, want_rc, requeued):
    logs = tmp_path / "logs"
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "d"),
                       log_dir=str(logs))
    logs.mkdir()
    log = logs / "train-exp_2_101-4242.out"
    log.write_text("an earlier attempt: NCCL error (this part of the log is not this attempt's)\n")
    res, calls = run_script(tmp_path, job.script, [f"n{i}" for i in range(32)], train_rc=rc, log=log,
                            extra_env={"FAKE_TRAIN_SAYS": says, "SLURM_RESTART_COUNT": str(restarts)})
    assert res.returncode == want_rc, res.stdout[-3000:]
    assert ("scontrol requeue 4242" in calls) == requeued, res.stdout[-3000:]
    if requeued:
        assert f"requeue {restarts + 1}/3:" in res.stdout
    elif rc == 75:
        assert "the budget of 3 requeue(s) is spent" in res.stdout
    else:
        assert "not retried" in res.stdout


def test_usr1_becomes_a_stop_request_for_the_training(tmp_path):
    """--signal=B:USR1@<lead> reaches only the batch shell: it must leave the request file the workers poll."""
    job = render_train(load_profile("leonardo-8b"), ["exp_2_101"], out=str(tmp_path / "out"), data=str(tmp_path / "d"))
    assert "#SBATCH --signal=B:USR1@900" in job.script and "#SBATCH --requeue" in job.script
    assert "#SBATCH --signal=B:USR1@1800" in render_train(load_profile("leonardo-70b"), ["exp_2_101"],
                                                          out=str(tmp_path / "o70")).script
    bin_dir = tmp_path / "bin"
    res, _ = run_script(tmp_path, job.script, [f"n{i}" for i in range(32)])   # writes the stubs
    # a training stub that waits for the request, as the real workers do, then exits 75 like latxa train
    (bin_dir / "latxa").write_text('#!/bin/bash\necho training-started >> "$CALLS"\nfor i in $(seq 200); do [ -f "$OUTDIR/control/stop-and-requeue" ] && '
                                   '{ cat "$OUTDIR/control/stop-and-requeue"; exit 75; }; sleep 0.05; done\nexit 9\n')
    script = tmp_path / "job.sbatch"
    script.write_text(job.script)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "CALLS": str(tmp_path / "c.txt"),
           "FAKE_NODES": " ".join(f"n{i}" for i in range(32)), "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "t",
           "SLURM_JOB_NODELIST": "x", "SLURM_CPUS_PER_TASK": "16", "WORK": str(tmp_path / "work"),
           "FAST": str(tmp_path / "f"), "CINECA_SCRATCH": str(tmp_path / "s"), "OUTDIR": str(tmp_path / "out"),
           "REAL_PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    calls = tmp_path / "c.txt"
    while not calls.exists() or "training-started" not in calls.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=30)
    assert "caught USR1: checkpoint requested" in out and '"reason": "SIGUSR1"' in out
    assert "training exited with status 75" in out and "requeue 1/3: checkpoint saved on request" in out
    assert proc.returncode == 0 and "scontrol requeue 77" in (tmp_path / "c.txt").read_text()
