"""The bridge: submit, status, logs, cancel and wait for SLURM jobs, over any transport.

State comes from ``squeue --json`` while the controller knows the job, then ``scontrol show job``, then
``sacct`` (``sacct -c`` on clusters without slurmdbd). The bridge keeps a small record per submitted job
on the client (``<state>/slurm/records/<job id>.json``: script, log pattern, profile, resubmission chain)
so ``logs`` and resubmission work after the job left the controller.

Resilience: jobs requeue themselves inside the cluster (USR1 before the time limit -> checkpoint -> ``scontrol
requeue``; transient failures), so nothing needs to watch them. On top of that, :meth:`SlurmBridge.wait` with
``resubmit=N`` resubmits the same script (its training call has ``--resume``) when a job ends TIMEOUT, PREEMPTED or
NODE_FAIL, up to N times; on any other failure it raises :class:`~latxa.slurm.errors.JobFailedError` carrying the
log tail. ``wait`` rides out dropped connections (the profile's ``transport.retries``) and follows the job by id, and
``submit(..., key=K)`` re-attaches to the job already submitted under ``K`` (a re-run KFP step never submits a
second job for the same run).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from latxa.slurm import safety
from latxa.slurm.errors import JobFailedError, SlurmError, TransportError, WaitTimeoutError
from latxa.slurm.profiles import ClusterProfile, load_profile
from latxa.slurm.render import RenderedJob
from latxa.slurm.transport import Transport, make_transport

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
          "OUT_OF_MEMORY")
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
                      "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"})
RETRYABLE = frozenset({"TIMEOUT", "PREEMPTED", "NODE_FAIL"})
# How SLURM's many states map onto the ones the bridge reports.
_ALIASES = {"COMPLETING": "RUNNING", "CONFIGURING": "RUNNING", "SUSPENDED": "RUNNING", "STOPPED": "RUNNING",
            "RESIZING": "RUNNING", "SIGNALING": "RUNNING", "STAGE_OUT": "RUNNING", "REQUEUED": "PENDING",
            "REQUEUE_HOLD": "PENDING", "REQUEUE_FED": "PENDING", "RESV_DEL_HOLD": "PENDING", "REVOKED": "CANCELLED",
            "OOM": "OUT_OF_MEMORY", "CA": "CANCELLED", "CD": "COMPLETED", "F": "FAILED", "TO": "TIMEOUT",
            "PR": "PREEMPTED", "NF": "NODE_FAIL", "PD": "PENDING", "R": "RUNNING", "CG": "RUNNING"}
# Which task state names an array's overall state when tasks differ (first match wins).
_SEVERITY = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "TIMEOUT", "PREEMPTED", "DEADLINE", "CANCELLED",
             "SPECIAL_EXIT")


def normalize_state(raw: str | list | None) -> str:
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    if not raw:
        return "UNKNOWN"
    word = str(raw).strip().split()[0].rstrip("+").upper()
    return _ALIASES.get(word, word)


@dataclass
class TaskStatus:
    job_id: str
    state: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None


@dataclass
class JobStatus:
    """Where a job (or a whole array) stands; ``as_dict`` is the JSON the CLI prints."""

    job_id: str
    state: str
    source: str                       # squeue | scontrol | sacct
    name: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    nodes: str | None = None
    log: str | None = None
    restarts: int = 0
    tasks: list[TaskStatus] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)   # job ids of earlier attempts (resubmissions)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def as_dict(self) -> dict:
        d = asdict(self)
        d["terminal"] = self.terminal
        return d


@dataclass
class JobRecord:
    """What the bridge remembers about a job it submitted (client side)."""

    job_id: str
    name: str
    profile: str
    kind: str
    script: str                       # path of the staged script on the cluster
    log: str                          # log pattern (%j / %A_%a)
    jobdir: str
    submitted_at: str
    array: str | None = None
    dependency: str | None = None
    variants: list[str] = field(default_factory=list)
    out: str | None = None
    previous: list[str] = field(default_factory=list)   # earlier attempts, oldest first
    next: str | None = None                              # the resubmission that replaced this job
    key: str | None = None                               # the caller's idempotency key (a KFP run + task)

    def log_for(self, job_id: str | None = None) -> str:
        return RenderedJob(self.name, "", self.log, self.kind, self.array).log_for(job_id or self.job_id)


def _decode_exit(value) -> tuple[int | None, int | None]:
    """squeue --json exit codes: a raw wait status (22.05) or {status, return_code, signal} (23+)."""
    if value is None:
        return None, None
    if isinstance(value, dict):
        rc = value.get("return_code")
        if isinstance(rc, dict):
            rc = rc.get("number") if rc.get("set", True) else None
        sig = value.get("signal", {})
        sig = sig.get("id", {}).get("number") if isinstance(sig, dict) and isinstance(sig.get("id"), dict) else None
        return rc, sig or None
    if isinstance(value, int):
        return (value >> 8) & 0xFF, (value & 0x7F) or None
    return None, None


def _parse_exit_pair(text: str | None) -> tuple[int | None, int | None]:
    """``3:0`` (exit status:signal) as printed by scontrol and sacct."""
    if not text or ":" not in text:
        return None, None
    a, b = text.split(":", 1)
    try:
        return int(a), (int(b) or None)
    except ValueError:
        return None, None


def _aggregate(tasks: list[TaskStatus]) -> tuple[str, int | None, int | None, str | None]:
    states = [t.state for t in tasks]
    if any(s not in TERMINAL for s in states):
        state = "RUNNING" if "RUNNING" in states else ("PENDING" if "PENDING" in states else states[0])
        return state, None, None, None
    for s in _SEVERITY:
        bad = [t for t in tasks if t.state == s]
        if bad:
            return s, bad[0].exit_code, bad[0].signal, bad[0].reason
    return states[0], max((t.exit_code or 0) for t in tasks), None, None


def _retry_tasks(st: JobStatus) -> list[int] | None:
    """What to resubmit after a terminal status: None (nothing: it completed, or failed for a reason a rerun will
    not fix), [] (the whole job) or an array's task indices that hit TIMEOUT/PREEMPTED/NODE_FAIL. An array with
    any task FAILED, OUT_OF_MEMORY or CANCELLED is not resubmitted: that needs a person."""
    if not st.tasks:
        return [] if st.state in RETRYABLE else None
    bad = [t for t in st.tasks if t.state != "COMPLETED"]
    if not bad or any(t.state not in RETRYABLE for t in bad):
        return None
    return [int(t.job_id.rsplit("_", 1)[1]) for t in bad]


class SlurmBridge:
    """Submit and follow jobs on one cluster profile."""

    def __init__(self, profile: ClusterProfile | str, transport: Transport | None = None,
                 records_dir: str | Path | None = None):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.transport = transport or make_transport(self.profile)
        if records_dir is None:
            from latxa.paths import state_dir

            records_dir = state_dir() / "slurm" / "records"
        self.records_dir = Path(records_dir)

    # ------------------------------------------------------------------------------------------ records
    def _record_path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id.split('_')[0]}.json"

    def record(self, job_id: str) -> JobRecord | None:
        p = self._record_path(safety.job_id(job_id))
        if not p.is_file():
            return None
        return JobRecord(**json.loads(p.read_text()))

    def _save(self, rec: JobRecord) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._record_path(rec.job_id).write_text(json.dumps(asdict(rec), indent=2))
        if rec.key:
            keyfile = self._key_path(rec.key)
            keyfile.parent.mkdir(parents=True, exist_ok=True)
            tmp = keyfile.with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": rec.key, "job_id": rec.job_id}) + "\n")
            tmp.replace(keyfile)

    def _key_path(self, key: str) -> Path:
        import hashlib

        return self.records_dir / "keys" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def job_for_key(self, key: str) -> str | None:
        """The job id last submitted under ``key`` (following resubmissions), or None."""
        path = self._key_path(key)
        if not path.is_file():
            return None
        job_id = json.loads(path.read_text())["job_id"]
        rec = self.record(job_id)
        while rec is not None and rec.next:
            job_id, rec = rec.next, self.record(rec.next)
        return job_id

    def attach(self, key: str) -> str | None:
        """Re-attach: the job already submitted under ``key`` if SLURM still runs it or it completed, else None
        (never submitted, or it failed, so a re-run should submit again)."""
        job_id = self.job_for_key(key)
        if job_id is None:
            return None
        try:
            st = self.status(job_id)
        except TransportError:
            raise
        except SlurmError:          # forgotten by SLURM (and its accounting): treat as never submitted
            return None
        if not st.terminal or st.state == "COMPLETED" or _retry_tasks(st) is not None:
            return job_id
        return None

    # ------------------------------------------------------------------------------------------ submit
    def submit(self, job: RenderedJob, *, dependency: str | None = None, stage: dict[str, str | Path] | None = None,
               hold: bool = False, key: str | None = None, kill_on_invalid_dep: bool = False) -> str:
        """Stage the script (and ``stage`` files: remote name -> local path) into a fresh job folder and sbatch it.

        With ``key``, a job already submitted under that key that is still pending, running or completed is
        returned instead of submitting a second one (:meth:`attach`)."""
        if key:
            existing = self.attach(key)
            if existing is not None:
                return existing
        if dependency:
            safety.dependency(dependency)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        jobdir = f"{self.profile.workdir_path}/jobs/{job.name}-{stamp}-{secrets.token_hex(3)}"
        script = f"{jobdir}/job.sbatch"
        self.transport.stage_script(job.script, script, extra_dirs=(str(Path(job.log).parent),))
        for remote_name, local in (stage or {}).items():
            if "/" in remote_name or remote_name in ("", ".", ".."):
                raise SlurmError(f"Staged file name '{remote_name}' must be a plain file name.")
            if not Path(local).is_file():
                raise SlurmError(f"File to stage {local} does not exist.")
            self.transport.put_file(local, f"{jobdir}/{remote_name}")
        job_id = self._sbatch(script, jobdir, dependency, hold, kill_on_invalid_dep=kill_on_invalid_dep)
        self._save(JobRecord(job_id=job_id, name=job.name, profile=self.profile.name, kind=job.kind, script=script,
                             log=job.log, jobdir=jobdir, submitted_at=stamp, array=job.array, dependency=dependency,
                             variants=list(job.variants), out=job.out, key=key))
        return job_id

    def _sbatch(self, script: str, jobdir: str, dependency: str | None, hold: bool, array: str | None = None,
                *, kill_on_invalid_dep: bool = False) -> str:
        argv = ["sbatch", "--parsable", f"--chdir={jobdir}"]
        if array:   # overrides the script's own #SBATCH --array (a resubmission of some tasks only)
            argv.append(f"--array={array}")
        if dependency:
            argv.append(f"--dependency={dependency}")
            if kill_on_invalid_dep:   # a chain step whose predecessor failed is cancelled, not left pending
                argv.append("--kill-on-invalid-dep=yes")
        if hold:
            argv.append("--hold")
        argv.append(script)
        res = self.transport.run(argv, timeout=120)
        if res.returncode != 0:
            err = (res.stderr or res.stdout).strip().splitlines()
            raise SlurmError(f"sbatch refused the job: {err[-1] if err else 'exit status ' + str(res.returncode)}")
        job_id = res.stdout.strip().split(";")[0]
        return safety.job_id(job_id)

    def resubmit(self, job_id: str, tasks: list[int] | None = None) -> str:
        """Submit a finished job's staged script again (training resumes from its latest checkpoint).

        ``tasks``: for an array, only these task indices run again (the array's %N limit is kept), so a sweep
        whose variant 3 hit the time limit retrains variant 3 alone."""
        rec = self.record(job_id)
        if rec is None:
            raise SlurmError(f"Job {job_id} was not submitted through this bridge, so it cannot be resubmitted.")
        array = None
        if tasks:
            if not rec.array:
                raise SlurmError(f"Job {job_id} is not an array, so it has no tasks to resubmit.")
            limit = rec.array.partition("%")[2]
            array = ",".join(str(int(t)) for t in sorted(set(tasks))) + (f"%{int(limit)}" if limit else "")
        new_id = self._sbatch(rec.script, rec.jobdir, None, False, array=array)
        rec.next = new_id
        self._save(rec)
        self._save(JobRecord(**{**asdict(rec), "job_id": new_id, "previous": [*rec.previous, rec.job_id], "next": None,
                                "dependency": None, "array": array or rec.array}))
        return new_id

    # ------------------------------------------------------------------------------------------ status
    def status(self, job_id: str) -> JobStatus:
        job_id = safety.job_id(job_id)
        st = self._from_squeue(job_id) or self._from_scontrol(job_id) or self._from_sacct(job_id)
        if st is None:
            raise SlurmError(f"Job {job_id} is unknown to SLURM (not in squeue, scontrol or sacct).")
        rec = self.record(job_id)
        if rec is not None:
            st.attempts = list(rec.previous)
            if st.log is None or "%" in (st.log or ""):
                st.log = rec.log_for(job_id if "_" in job_id or not rec.array else None)
        return st

    def _from_squeue(self, job_id: str) -> JobStatus | None:
        res = self.transport.run(["squeue", "--json", f"--jobs={job_id}"], timeout=60)
        if res.returncode != 0:
            return None
        try:
            data = json.loads(res.stdout)
        except json.JSONDecodeError:
            return None
        base, _, task = job_id.partition("_")
        rows = []
        for j in data.get("jobs", []):
            jid, arr, tid = str(j.get("job_id")), str(j.get("array_job_id") or 0), j.get("array_task_id")
            if isinstance(tid, dict):
                tid = tid.get("number") if tid.get("set") else None
            if task:
                if arr == base and tid is not None and str(tid) == task:
                    rows.append(j)
            elif jid == base and arr in ("0", base) or arr == base:
                rows.append(j)
        if not rows:
            return None
        tasks = []
        for j in rows:
            rc, sig = _decode_exit(j.get("exit_code"))
            tid = j.get("array_task_id")
            if isinstance(tid, dict):
                tid = tid.get("number") if tid.get("set") else None
            arr = str(j.get("array_job_id") or 0)
            label = str(j.get("job_id")) if arr == "0" else (
                f"{arr}_{tid}" if tid is not None else f"{arr}_[{j.get('array_task_string', '')}]")
            tasks.append(TaskStatus(label, normalize_state(j.get("job_state")), rc, sig, j.get("state_reason")))
        first = rows[0]
        if len(rows) == 1 and not tasks[0].job_id.endswith("]") and "_" not in tasks[0].job_id:
            t = tasks[0]
            return JobStatus(job_id, t.state, "squeue", first.get("name"), t.exit_code, t.signal, t.reason,
                             first.get("nodes") or None, first.get("standard_output") or None,
                             int(first.get("restart_cnt") or 0))
        state, rc, sig, reason = _aggregate(tasks)
        if task:
            t = tasks[0]
            state, rc, sig, reason = t.state, t.exit_code, t.signal, t.reason
        return JobStatus(job_id, state, "squeue", first.get("name"), rc, sig, reason, first.get("nodes") or None,
                         None, 0, tasks if not task else [])

    def _from_scontrol(self, job_id: str) -> JobStatus | None:
        res = self.transport.run(["scontrol", "show", "job", "-o", job_id], timeout=60)
        if res.returncode != 0 or "JobId=" not in res.stdout:
            return None
        tasks, first = [], None
        for line in res.stdout.strip().splitlines():
            kv = {}
            for token in line.split():
                if "=" in token:
                    k, v = token.split("=", 1)
                    kv.setdefault(k, v)
            first = first or kv
            rc, sig = _parse_exit_pair(kv.get("ExitCode"))
            label = kv.get("JobId", job_id)
            if kv.get("ArrayJobId") and kv.get("ArrayTaskId"):
                label = f"{kv['ArrayJobId']}_{kv['ArrayTaskId']}"
            tasks.append(TaskStatus(label, normalize_state(kv.get("JobState")), rc, sig, kv.get("Reason")))
        if len(tasks) == 1:
            t = tasks[0]
            return JobStatus(job_id, t.state, "scontrol", first.get("JobName"), t.exit_code, t.signal, t.reason,
                             first.get("NodeList"), first.get("StdOut"), int(first.get("Restarts", 0) or 0))
        state, rc, sig, reason = _aggregate(tasks)
        return JobStatus(job_id, state, "scontrol", first.get("JobName"), rc, sig, reason, first.get("NodeList"),
                         None, 0, tasks)

    def _from_sacct(self, job_id: str) -> JobStatus | None:
        fields = "JobID,JobName,State,ExitCode,NodeList"
        argv = ["sacct", "-c"] if self.profile.sacct_completion else ["sacct", "-X"]
        argv += ["-P", "-n", "-j", job_id, "-o", fields]
        res = self.transport.run(argv, timeout=60)
        if res.returncode != 0:
            return None
        rows = [line.split("|") for line in res.stdout.strip().splitlines() if line.count("|") >= 4]
        if not rows:
            return None
        # A requeued job has one record per attempt (jobcomp writes a REQUEUED one each time): the last one counts.
        last: dict[str, list[str]] = {}
        for r in rows:
            last.pop(r[0], None)
            last[r[0]] = r
        rows = list(last.values())
        tasks = []
        for r in rows:
            rc, sig = _parse_exit_pair(r[3])
            tasks.append(TaskStatus(r[0], normalize_state(r[2]), rc, sig, None))
        if len(tasks) == 1:
            t = tasks[0]
            return JobStatus(job_id, t.state, "sacct", rows[0][1], t.exit_code, t.signal, None, rows[0][4] or None)
        state, rc, sig, reason = _aggregate(tasks)
        return JobStatus(job_id, state, "sacct", rows[0][1], rc, sig, reason, rows[0][4] or None, None, 0, tasks)

    # ------------------------------------------------------------------------------------------ paths
    def cluster_path(self, path: str) -> str:
        """A profile path with its leading cluster variable ($WORK, ${FAST}, ~) expanded as the cluster sees it."""
        import re

        m = re.match(r"^\$(\{)?([A-Za-z_][A-Za-z0-9_]*)(?(1)\})(/.*)?$", path)
        if path.startswith("~/") or path == "~":
            name, rest = "HOME", path[1:]
        elif m:
            name, rest = m.group(2), m.group(3) or ""
        else:
            return path
        cache = self.__dict__.setdefault("_cluster_env", {})
        if name not in cache:
            res = self.transport.run(["printenv", name], timeout=60)
            value = res.stdout.strip() if res.returncode == 0 else ""
            if not value:
                raise SlurmError(f"${name} is not set on {self.transport.describe()}, so {path} has no location there.")
            cache[name] = value
        return cache[name] + rest

    # ------------------------------------------------------------------------------------------ logs
    def log_path(self, job_id: str) -> str:
        job_id = safety.job_id(job_id)
        rec = self.record(job_id)
        if rec is not None:
            if rec.array and "_" not in job_id:
                raise SlurmError(f"Job {job_id} is an array; ask for one task's log, e.g. {job_id}_0.")
            return rec.log_for(job_id)
        st = self.status(job_id)
        if not st.log:
            raise SlurmError(f"SLURM does not say where job {job_id} writes its log.")
        return st.log.replace("%j", job_id)

    def logs(self, job_id: str, tail: int | None = 50) -> str:
        path = self.log_path(job_id)
        text = self.transport.read_text(path, tail_lines=tail)
        if text is None:
            raise SlurmError(f"The log of job {job_id} ({path}) does not exist yet (the job may still be pending).")
        return text

    def follow(self, job_id: str, poll_s: float = 1.0) -> Iterator[str]:
        """Yield log lines as they are written, until the job reaches a final state (then the rest of the log)."""
        import os
        import select

        path = self.log_path(job_id)
        proc = self.transport.popen(["tail", "-n", "+1", "-F", path])
        fd = proc.stdout.fileno()
        buf = b""
        last_check = 0.0
        done_at = None
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], poll_s)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace")
                    continue
                now = time.monotonic()
                if done_at is not None:
                    break            # the job ended and tail has been quiet for a poll interval
                if now - last_check >= poll_s:
                    last_check = now
                    if self.status(job_id).terminal:
                        done_at = now
            if buf:
                yield buf.decode("utf-8", errors="replace")
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    # ------------------------------------------------------------------------------------------ cancel / wait
    def cancel(self, job_id: str) -> None:
        job_id = safety.job_id(job_id)
        res = self.transport.run(["scancel", job_id], timeout=60)
        if res.returncode != 0:
            err = (res.stderr or res.stdout).strip().splitlines()
            raise SlurmError(f"scancel {job_id} failed: {err[-1] if err else 'exit status ' + str(res.returncode)}")

    def wait(self, job_id: str, *, timeout: float | None = None, poll: float = 1.0, max_poll: float = 30.0,
             resubmit: int | None = None, on_update: Callable[[JobStatus], None] | None = None,
             raise_on_failure: bool = True) -> JobStatus:
        """Poll (with backoff) until the job is final; resubmit on TIMEOUT/PREEMPTED/NODE_FAIL up to ``resubmit`` times.

        Returns the final status (``attempts`` lists replaced job ids). Raises :class:`WaitTimeoutError` when
        ``timeout`` passes, and :class:`JobFailedError` (with the log tail) when the job does not complete.
        """
        job_id = safety.job_id(job_id)
        resubmit = self.profile.max_resubmits if resubmit is None else resubmit
        if self.profile.max_poll_s is not None:
            max_poll = min(max_poll, self.profile.max_poll_s)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempts: list[str] = []
        delay = poll
        last_state = None
        failures = 0
        retries = getattr(self.profile.transport, "retries", 0)
        retry_delay = getattr(self.profile.transport, "retry_delay_s", 5.0)
        while True:
            try:
                st = self.status(job_id)
                failures = 0
            except TransportError as err:
                # a dropped SSH connection (or an expired ControlMaster): the job runs on; poll it again by id
                failures += 1
                if failures > retries:
                    raise SlurmError(f"Lost the connection to the cluster {failures} times in a row while waiting for "
                                     f"job {job_id} (it may still run; `latxa slurm wait {job_id}` re-attaches): "
                                     f"{err}") from None
                print(f"[slurm] {err} (retry {failures}/{retries} in {retry_delay:.0f} s)", flush=True)
                time.sleep(retry_delay)
                continue
            st.attempts = attempts + [a for a in st.attempts if a not in attempts]
            if st.state != last_state:
                last_state = st.state
                delay = poll
                if on_update:
                    on_update(st)
            if st.terminal:
                retry = _retry_tasks(st)
                if retry is not None and len(attempts) < resubmit:
                    new_id = self.resubmit(job_id, tasks=retry or None)
                    attempts.append(job_id)
                    job_id, last_state, delay = new_id, None, poll
                    continue
                st.attempts = attempts
                if st.state != "COMPLETED" and raise_on_failure:
                    tail = self._tail_quietly(st)
                    extra = f" after {len(attempts)} resubmission(s)" if attempts else ""
                    code = f" (exit code {st.exit_code})" if st.exit_code else ""
                    raise JobFailedError(f"Job {job_id} ended {st.state}{code}{extra}.", st, tail)
                return st
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(f"Job {job_id} is still {st.state} after waiting {timeout:.0f} s.")
            sleep = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            time.sleep(sleep)
            delay = min(max_poll, delay * 1.5)

    def _tail_quietly(self, st: JobStatus, lines: int = 40) -> str:
        try:
            target = st.job_id
            if st.tasks:
                bad = [t for t in st.tasks if t.state != "COMPLETED"]
                target = bad[0].job_id if bad else st.tasks[0].job_id
            return self.logs(target, tail=lines)
        except SlurmError:
            return ""
