"""When the loop checkpoints, and when it stops to be requeued: one decision per step, the same on every rank.

Checkpoints are taken

- ``saves_per_epoch`` times per epoch, as the reference (Axolotl/HF Trainer: every ``ceil(steps_per_epoch / n)``
  steps; a run shorter than an epoch spreads them over its steps), and every ``checkpoint_every`` steps if set;
- every ``checkpoint_minutes`` of training wall time (ours: a 24 h job, or one cut short, never loses more);
- at once when a **stop request** arrives: the SLURM job script turns ``--signal=B:USR1@<lead>`` into a request
  file (``out/control/stop-and-requeue``, on the shared filesystem every rank's node sees), and ``latxa train``
  does the same for a SIGUSR1 it receives itself. The loop then saves, stops, and the run exits with
  :data:`REQUEUE_EXIT_CODE` so the job script requeues the job (``scontrol requeue``) and the next start resumes;
- at the last step.

Rank 0 reads the clock and the request file; one small all-reduce per step makes every rank take the same
decision at the same step (ZeRO-3 and DDP must save together).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REQUEST_FILE = "stop-and-requeue"
REQUEUE_EXIT_CODE = 75          # EX_TEMPFAIL: "checkpoint saved on request; requeue me" (the job script's contract)
KEEP_BONUS = 10 ** 9            # checkpoint score bonus: epoch saves outrank time-based / requested ones


def request_path(control_dir: str | Path) -> Path:
    return Path(control_dir) / REQUEST_FILE


def request_stop(control_dir: str | Path, reason: str = "signal") -> Path:
    """Ask a running training to checkpoint now and stop (what SIGUSR1 does). Atomic; idempotent."""
    path = request_path(control_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"reason": reason, "time": time.time(), "pid": os.getpid()}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def pending_request(control_dir: str | Path | None) -> str | None:
    """The reason of a pending stop request, or None."""
    if not control_dir:
        return None
    path = request_path(control_dir)
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("reason") or "request"
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "request"


def clear_request(control_dir: str | Path | None) -> None:
    if control_dir:
        try:
            request_path(control_dir).unlink()
        except FileNotFoundError:
            pass


def install_stop_handler(control_dir: str | Path, signals: tuple[int, ...] = (signal.SIGUSR1,)) -> None:
    """In the driver: SIGUSR1 (SLURM's --signal, or a user's ``kill -USR1``) files a stop request for the workers."""
    def handler(signum, _frame):
        request_stop(control_dir, reason=signal.Signals(signum).name)
        print(f"[train] {signal.Signals(signum).name}: checkpoint requested; training stops after it to be requeued",
              flush=True)

    for sig in signals:
        signal.signal(sig, handler)


def every_n_steps(per_epoch: int | None, steps_per_epoch: int, total_steps: int) -> int | None:
    """Interval of an event that happens ``per_epoch`` times per epoch (or over the run, if shorter than an epoch)."""
    if not per_epoch:
        return None
    return max(1, math.ceil(min(steps_per_epoch, total_steps) / per_epoch))


@dataclass(frozen=True)
class Decision:
    save: bool
    stop: bool
    reasons: tuple[str, ...]
    keep_score: float            # Ray keeps the best `keep_checkpoints` by this score (plus always the latest)


class CheckpointPolicy:
    """Per-step checkpoint/stop decisions (see the module docstring). ``reduce`` sums a list over ranks."""

    def __init__(self, plan, rank: int, reduce: Callable[[list[float]], list[float]],
                 clock: Callable[[], float] = time.monotonic):
        self.rank = rank
        self.reduce = reduce
        self.clock = clock
        self.total = plan.total_steps
        self.every_epoch = every_n_steps(plan.saves_per_epoch, plan.steps_per_epoch, plan.total_steps)
        self.every = plan.checkpoint_every or None
        self.seconds = plan.checkpoint_minutes * 60 if plan.checkpoint_minutes else None
        self.control_dir = plan.control_dir
        self.last_save = clock()

    def decide(self, step: int) -> Decision:
        timed = stop = 0.0
        if self.rank == 0:
            timed = float(self.seconds is not None and self.clock() - self.last_save >= self.seconds)
            stop = float(pending_request(self.control_dir) is not None)
        timed, stop = (v > 0 for v in self.reduce([timed, stop]))
        final = step >= self.total
        reasons = [name for name, on in (
            ("final", final), ("epoch", bool(self.every_epoch and step % self.every_epoch == 0)),
            ("interval", bool(self.every and step % self.every == 0)), ("time", timed), ("stop", stop)) if on]
        scheduled = any(r in ("final", "epoch") for r in reasons)
        return Decision(save=bool(reasons), stop=stop and not final, reasons=tuple(reasons),
                        keep_score=float(step + (KEEP_BONUS if scheduled else 0)))

    def saved(self) -> None:
        self.last_save = self.clock()
