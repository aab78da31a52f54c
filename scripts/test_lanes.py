"""`make test`'s runner: the whole suite as two pytest sessions ("lanes") running side by side.

The jobs lane holds every test that uses the local SLURM cluster and the pipeline tests (``tests/conftest.py``
marks them ``lane_jobs`` at collection). The SLURM tests spend much of their time waiting on the scheduler, on
job start-up and on requeue holds, and the sequential suite kept the 2 cores about 65 % busy, so the rest of the
suite runs beside them in the main lane; the pipeline tests join the jobs lane so that both lanes take about as
long. Each lane is a complete pytest session of its own (its own numbered temporary folder, session fixtures and
cache); no test runs twice and none is left out: a test is in the jobs lane iff ``-m lane_jobs`` selects it.

The main lane prints as it goes. The jobs lane writes to ``test-artifacts/lanes/jobs.log``, which is printed
whole when both lanes are done, so each lane's report reads in one piece. The exit status is the first non-zero
status of the two (pytest's 5, "no tests collected", counts as success when the other lane ran tests).

    python scripts/test_lanes.py [PYTEST ARGS...]      # what `make test` runs, with $(PYTEST_ARGS)
    LATXA_TEST_LANES=1 python scripts/test_lanes.py    # one session (no lanes)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "test-artifacts" / "lanes"
NO_TESTS = 5   # pytest's exit status when a selection collects nothing


def _lane_args(args: list[str], lane: str) -> list[str]:
    """The user's pytest arguments for one lane: a report file named by the user gets the lane in its name."""
    out = []
    for arg in args:
        if arg.startswith("--junitxml=") and lane != "main":
            path = Path(arg.split("=", 1)[1])
            arg = f"--junitxml={path.with_name(f'{path.stem}.{lane}{path.suffix}')}"
        out.append(arg)
    return out


def _has_marker_option(args: list[str]) -> bool:
    return any(a.startswith("-m") for a in args)   # "-m EXPR" or "-mEXPR"


def _pytest(args: list[str], lane: str, marker: str, log: Path | None) -> subprocess.Popen:
    # pytest's numbered temporary folders are safe for concurrent sessions (each holds a lock on its own)
    cmd = [sys.executable, "-m", "pytest", "-m", marker, "-o", f"cache_dir=.pytest_cache/{lane}",
           *_lane_args(args, lane)]
    out = log.open("w") if log else None
    return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT if out else None)


def _combined(statuses: dict[str, int]) -> int:
    ran = [s for s in statuses.values() if s != NO_TESTS]
    if not ran:
        return NO_TESTS
    return next((s for s in ran if s != 0), 0)


def main(argv: list[str]) -> int:
    if os.environ.get("LATXA_TEST_LANES") == "1" or _has_marker_option(argv):
        # one session: asked for, or the caller selects by marker itself (lanes would intersect its selection)
        return subprocess.call([sys.executable, "-m", "pytest", *argv], cwd=REPO)
    LOGS.mkdir(parents=True, exist_ok=True)
    jobs_log = LOGS / "jobs.log"
    start = time.monotonic()
    lanes = {"jobs": _pytest(argv, "jobs", "lane_jobs", jobs_log), "main": _pytest(argv, "main", "not lane_jobs", None)}

    def stop(signum, _frame):   # CI cancelling the job: stop both sessions, then report what the jobs lane had
        for proc in lanes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    statuses = {name: proc.wait() for name, proc in lanes.items()}
    print(f"\n{'=' * 30} jobs lane ({jobs_log.relative_to(REPO)}) {'=' * 30}", flush=True)
    sys.stdout.write(jobs_log.read_text(errors="replace"))
    took = time.monotonic() - start
    print(f"\nlanes: main exited {statuses['main']}, jobs exited {statuses['jobs']}; "
          f"{took // 60:.0f} min {took % 60:.0f} s in all", flush=True)
    return _combined(statuses)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
