"""The bridge against the real local SLURM cluster: states, logs, failures, cancel, arrays, afterok chains."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from latxa.slurm.errors import JobFailedError, SlurmError, WaitTimeoutError
from latxa.slurm.render import render_command

pytestmark = pytest.mark.slurm


def sh(bridge, code: str, name: str, **kw) -> str:
    return bridge.submit(render_command(bridge.profile, ["bash", "-c", code], name=name, time=kw.pop("time", "5")), **kw)


def test_job_goes_to_completed_and_its_log_is_readable(bridge, tmp_path):
    seen = []
    job = sh(bridge, f"echo started; sleep 2; echo 'kaixo mundua' > {tmp_path}/out.txt; echo done", "ok-job")
    st = bridge.wait(job, timeout=120, poll=0.3, on_update=lambda s: seen.append(s.state))
    followed = list(bridge.follow(job, poll_s=0.3))   # `logs --follow`: whole log, ends once the job is final
    assert followed.index("started") < followed.index("done") and followed[-1].endswith("command exited with status 0")
    assert st.state == "COMPLETED" and st.exit_code == 0 and st.terminal
    assert seen[-1] == "COMPLETED" and set(seen[:-1]) <= {"PENDING", "RUNNING"} and len(seen) >= 2
    assert (tmp_path / "out.txt").read_text() == "kaixo mundua\n"
    log = bridge.logs(job)
    assert "started" in log and "done" in log and "command exited with status 0" in log
    rec = bridge.record(job)
    assert rec.name == "ok-job" and rec.script.endswith("job.sbatch") and st.log == rec.log_for(job)


def test_failed_job_is_reported_with_its_log_tail(bridge):
    job = sh(bridge, "echo 'about to fail: missing shard'; exit 3", "bad-job")
    with pytest.raises(JobFailedError) as err:
        bridge.wait(job, timeout=120, poll=0.3)
    assert err.value.status.state == "FAILED" and err.value.status.exit_code == 3
    assert "about to fail: missing shard" in err.value.log_tail
    assert str(err.value) == f"Job {job} ended FAILED (exit code 3)."
    # the same job is not resubmitted: FAILED is not a resumable state
    assert bridge.record(job).next is None


def test_cli_status_json_wait_and_logs(bridge, cli):
    job = sh(bridge, "echo from-cli; exit 4", "cli-job")
    res = cli("slurm", "wait", job, "--timeout", "120", "--poll", "0.3")
    assert res.returncode == 1
    assert f"error: Job {job} ended FAILED (exit code 4)." in res.stderr and "from-cli" in res.stderr
    res = cli("slurm", "status", job, "--format", "json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["job_id"] == job and data["state"] == "FAILED" and data["exit_code"] == 4
    res = cli("slurm", "logs", job, "--tail", "5")
    assert res.returncode == 0 and "from-cli" in res.stdout
    res = cli("slurm", "status", "999999")
    assert res.returncode == 2 and "unknown to SLURM" in res.stderr
    res = cli("slurm", "status", "1;id")
    assert res.returncode == 2 and "not a SLURM job id" in res.stderr


def test_cli_submit_prints_the_job_id_last(bridge, cli, tmp_path):
    res = cli("slurm", "submit", "--profile", "local", "--name", "cli-submit", "--time", "2", "--",
              "bash", "-c", f"echo $SLURM_JOB_ID > {tmp_path}/id")
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().splitlines()[-1]
    assert job.isdigit()
    res = cli("slurm", "wait", job, "--timeout", "120", "--poll", "0.3", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["state"] == "COMPLETED"
    assert (tmp_path / "id").read_text().strip() == job


def test_cancel(bridge):
    job = sh(bridge, "echo sleeping; sleep 300", "cancel-me")
    deadline = time.monotonic() + 60
    while bridge.status(job).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.3)
    bridge.cancel(job)
    st = bridge.wait(job, timeout=60, poll=0.3, raise_on_failure=False)
    assert st.state == "CANCELLED"
    slow = sh(bridge, "sleep 300", "too-slow")
    try:
        with pytest.raises(WaitTimeoutError, match=f"Job {slow} is still (PENDING|RUNNING) after waiting 1 s"):
            bridge.wait(slow, timeout=1, poll=0.3)
    finally:
        bridge.cancel(slow)


def test_job_array(bridge, tmp_path):
    job = bridge.submit(render_command(bridge.profile, ["bash", "-c", f"echo task=$SLURM_ARRAY_TASK_ID > {tmp_path}/t$SLURM_ARRAY_TASK_ID"],
                                       name="arr", time="2", array="0-2"))
    st = bridge.wait(job, timeout=120, poll=0.3)
    assert st.state == "COMPLETED"
    assert sorted(t.job_id for t in st.tasks) == [f"{job}_0", f"{job}_1", f"{job}_2"]
    assert all(t.state == "COMPLETED" for t in st.tasks)
    assert sorted(p.read_text() for p in tmp_path.glob("t*")) == ["task=0\n", "task=1\n", "task=2\n"]
    assert "command exited with status 0" in bridge.logs(f"{job}_1")
    with pytest.raises(SlurmError, match="is an array"):
        bridge.logs(job)
    # one failing task makes the array FAILED, and the status names it
    bad = bridge.submit(render_command(bridge.profile, ["bash", "-c", "exit $SLURM_ARRAY_TASK_ID"], name="arr-bad",
                                       time="2", array="0-1"))
    st = bridge.wait(bad, timeout=120, poll=0.3, raise_on_failure=False, resubmit=2)
    assert st.state == "FAILED" and {t.job_id: t.state for t in st.tasks} == {f"{bad}_0": "COMPLETED", f"{bad}_1": "FAILED"}
    assert st.attempts == []   # a task that failed is not resubmitted: a rerun would fail the same way


def test_array_tasks_lost_to_a_node_failure_are_resubmitted_alone(bridge, tmp_path):
    """A sweep whose one task dies with its node (NODE_FAIL) reruns that task only; the finished ones stay done.

    This is the client-side fallback (`wait --resubmit`) for jobs SLURM does not requeue itself: the profile here
    has `requeue: false` (the shipped profiles say true, and SLURM then requeues a node failure on its own)."""
    from latxa.slurm.bridge import SlurmBridge

    bridge = SlurmBridge(bridge.profile.model_copy(update={"requeue": False}))
    marker = tmp_path / "task1-started"
    code = (f"if [ $SLURM_ARRAY_TASK_ID = 1 ] && [ ! -e {marker} ]; then touch {marker}; sleep 600; fi; "
            f"echo ran >> {tmp_path}/ran$SLURM_ARRAY_TASK_ID")
    first = bridge.submit(render_command(bridge.profile, ["bash", "-c", code], name="arr-nodefail", time="10",
                                         array="0-2%3"))
    deadline = time.monotonic() + 120
    while not (marker.exists() and (tmp_path / "ran0").exists() and (tmp_path / "ran2").exists()):
        assert time.monotonic() < deadline, bridge.status(first).as_dict()
        time.sleep(0.2)
    try:   # the node goes down under the running task: SLURM ends it NODE_FAIL
        subprocess.run(["scontrol", "update", "NodeName=localhost", "State=DOWN", "Reason=latxa-test"], check=True,
                       capture_output=True)
        while not bridge.status(first).terminal:
            assert time.monotonic() < deadline, bridge.status(first).as_dict()
            time.sleep(0.2)
    finally:
        subprocess.run(["scontrol", "update", "NodeName=localhost", "State=RESUME"], capture_output=True)
    lost = bridge.status(first)
    assert lost.state == "NODE_FAIL", lost.as_dict()
    assert {t.job_id: t.state for t in lost.tasks} == {f"{first}_0": "COMPLETED", f"{first}_1": "NODE_FAIL",
                                                       f"{first}_2": "COMPLETED"}
    st = bridge.wait(first, timeout=180, poll=0.3, resubmit=1)
    assert st.state == "COMPLETED" and st.attempts == [first] and st.job_id != first
    assert [t.job_id for t in st.tasks] == [f"{st.job_id}_1"]          # only the lost task ran again
    assert bridge.record(st.job_id).array == "1%3"                      # with the sweep's parallelism limit
    assert [(tmp_path / f"ran{i}").read_text() for i in range(3)] == ["ran\n"] * 3


def test_afterok_chain(bridge, tmp_path):
    """prep -> train -> eval: each step starts only after the previous one succeeded, and sees its output."""
    prep = sh(bridge, f"sleep 2; echo prepared > {tmp_path}/prep.txt", "chain-prep")
    train = sh(bridge, f"test -f {tmp_path}/prep.txt && cat {tmp_path}/prep.txt > {tmp_path}/train.txt", "chain-train",
               dependency=f"afterok:{prep}")
    evaluate = sh(bridge, f"grep -q prepared {tmp_path}/train.txt", "chain-eval", dependency=f"afterok:{train}")
    assert bridge.wait(evaluate, timeout=180, poll=0.3).state == "COMPLETED"
    assert bridge.status(prep).state == bridge.status(train).state == "COMPLETED"
    # a step after a failed one never runs
    broken = sh(bridge, "exit 1", "chain-broken")
    after = sh(bridge, f"touch {tmp_path}/never", "chain-after", dependency=f"afterok:{broken}")
    bridge.wait(broken, timeout=120, poll=0.3, raise_on_failure=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = bridge.status(after)
        if st.reason == "DependencyNeverSatisfied" or st.state == "CANCELLED":
            break
        time.sleep(0.5)
    assert st.state in ("PENDING", "CANCELLED") and st.reason == "DependencyNeverSatisfied"
    bridge.cancel(after)
    assert not (tmp_path / "never").exists()


def test_status_falls_back_to_sacct_after_the_controller_forgets(bridge):
    """Finished jobs leave squeue/scontrol after MinJobAge; sacct -c (jobcomp/filetxt) still knows them."""
    job = sh(bridge, "exit 5", "old-job")
    bridge.wait(job, timeout=120, poll=0.3, raise_on_failure=False)
    st = bridge._from_sacct(job)
    assert st is not None and st.source == "sacct" and st.state == "FAILED" and st.exit_code == 5
