"""Wait until a Ray cluster started inside a SLURM allocation has all its nodes (used by the sbatch script).

    python -m latxa.slurm.raywait --address 10.0.0.1:20100 --nodes 32 --timeout 600

Exits 0 once ``--nodes`` nodes are alive, 1 with a one-line reason on timeout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _alive(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by the job script) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _raylet_crash(ray_tmp: str | None) -> str | None:
    """The raylet's fatal line when it aborted (e.g. its agents missed the start-up window), else None."""
    if not ray_tmp:
        return None
    for name in ("raylet.out", "raylet.err"):
        path = os.path.join(ray_tmp, "session_latest", "logs", name)
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    if "Check failed" in line or ") FATAL" in line:
                        return line.strip()[:300]
        except OSError:
            continue
    return None


def wait_for_nodes(address: str, nodes: int, timeout: float, watch_pid: int | None = None,
                   ray_tmp: str | None = None) -> int:
    import threading

    import ray

    def watchdog() -> None:  # ray.init can block for minutes on a dead head: leave as soon as we know
        while True:
            reason = None
            if not _alive(watch_pid):
                reason = f"the Ray head (pid {watch_pid}) exited before the cluster came up; see the lines above"
            else:
                crash = _raylet_crash(ray_tmp)
                if crash:
                    reason = f"the raylet aborted: {crash}"
            if reason:
                print(f"[latxa-slurm] {reason}", file=sys.stderr, flush=True)
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watchdog, daemon=True).start()
    deadline = time.monotonic() + timeout
    last_err = ""
    while time.monotonic() < deadline:
        if not _alive(watch_pid):
            print(f"[latxa-slurm] the Ray head (pid {watch_pid}) exited before the cluster came up; see the lines above",
                  file=sys.stderr)
            return 1
        crash = _raylet_crash(ray_tmp)
        if crash:
            print(f"[latxa-slurm] the raylet aborted: {crash}", file=sys.stderr)
            return 1
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            break
        except Exception as err:  # GCS not up yet
            last_err = str(err).splitlines()[0] if str(err) else type(err).__name__
            time.sleep(1.0)
    else:
        print(f"[latxa-slurm] Ray head at {address} did not come up within {timeout:.0f} s ({last_err})", file=sys.stderr)
        return 1
    try:
        alive = 0
        while time.monotonic() < deadline:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= nodes:
                print(f"[latxa-slurm] Ray cluster ready: {alive}/{nodes} node(s) joined", flush=True)
                return 0
            time.sleep(1.0)
        print(f"[latxa-slurm] only {alive}/{nodes} Ray node(s) joined within {timeout:.0f} s", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--watch-pid", type=int, default=None, help="give up early when this process (the head) exits")
    parser.add_argument("--ray-tmp", default=None, help="the head's --temp-dir: give up early when its raylet aborted")
    args = parser.parse_args(argv)
    return wait_for_nodes(args.address, args.nodes, args.timeout, args.watch_pid, args.ray_tmp)


if __name__ == "__main__":
    sys.exit(main())
