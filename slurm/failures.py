"""Is a failed attempt worth running again? Used inside the job script (no client needed).

    python -m latxa.slurm.failures --log JOB.out --offset BYTES --exit-code 1 --patterns '{"transient": [...], ...}'

Reads the job's log from ``--offset`` (the start of this attempt: logs are appended across requeues) and exits 0,
printing the matching line, when the failure is transient: a line matches one of the profile's ``transient``
patterns (NCCL errors, node failures, the reference's "NVCC timeout" / "Unsupported device" / "Unable to setup
node") and none of its ``fatal`` ones (deterministic out-of-memory, an explicit fatal marker). Exit status 2 (the
project's "bad input" status) is never transient. Otherwise it exits 1 and prints why.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BAD_INPUT_EXIT = 2          # latxa.errors.LatxaError: one readable sentence; a rerun gives the same sentence
MAX_BYTES = 8 << 20         # read at most this much of an attempt's log (its end, where the failure is)


def classify(text: str, exit_code: int, transient: list[str], fatal: list[str]) -> tuple[bool, str]:
    """(transient?, the line or reason that decided)."""
    if exit_code == BAD_INPUT_EXIT:
        return False, f"exit status {BAD_INPUT_EXIT} (bad input)"
    lines = text.splitlines()
    fatal_res = [re.compile(p) for p in fatal]
    for line in lines:
        for rx in fatal_res:
            if rx.search(line):
                return False, f"fatal: {line.strip()[:200]}"
    transient_res = [re.compile(p) for p in transient]
    for line in reversed(lines):            # the last matching line is the closest to the failure
        for rx in transient_res:
            if rx.search(line):
                return True, line.strip()[:200]
    return False, f"exit status {exit_code} and no transient failure in the log"


def read_attempt(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            start = max(offset, size - MAX_BYTES) if offset <= size else 0   # a rotated or truncated log: all of it
            fh.seek(start)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--exit-code", type=int, required=True)
    parser.add_argument("--patterns", required=True, help='JSON: {"transient": [...], "fatal": [...]}')
    args = parser.parse_args(argv)
    patterns = json.loads(args.patterns)
    ok, why = classify(read_attempt(Path(args.log), args.offset), args.exit_code, patterns.get("transient", []),
                       patterns.get("fatal", []))
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
