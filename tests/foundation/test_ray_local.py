"""`start_ray` without RAY_ADDRESS starts a cluster of its own, even where a `ray start` cluster left its address."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def test_a_local_start_ignores_another_clusters_address_file():
    # a short folder: Ray's socket paths under it must stay below the 107-character limit of AF_UNIX
    tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    try:
        (tmp / "ray").mkdir()
        (tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")   # what `ray start` leaves behind
        code = ("from latxa.ray_local import start_ray\n"
                "assert start_ray(num_cpus=1, quiet=True, log_to_driver=False)\n"
                "import ray\n"
                "print('gcs', ray.get_runtime_context().gcs_address)\n"
                "ray.shutdown()\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "RAY_TMPDIR": str(tmp), "RAY_ADDRESS": ""})
        assert res.returncode == 0, res.stderr[-2000:]
        gcs = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("gcs ")]
        assert gcs and gcs[0] != "127.0.0.1:9"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
