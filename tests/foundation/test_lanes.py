"""`make test`'s two lanes (scripts/test_lanes.py): every test in exactly one, the SLURM tests in the jobs lane."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _lanes_module():
    spec = importlib.util.spec_from_file_location("test_lanes_script", REPO / "scripts" / "test_lanes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _collect(marker: str) -> set[str]:
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marker, "tests/slurm",
                          "tests/pipelines", "tests/k8s"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {line.strip() for line in res.stdout.splitlines() if "::" in line}


def test_the_lanes_split_the_suite_and_the_cluster_tests_go_to_the_jobs_lane():
    jobs, main = _collect("lane_jobs"), _collect("not lane_jobs")
    assert jobs and main and not jobs & main
    # a module without the slurm marker whose tests use the cluster fixture, and a whole area moved for balance
    assert any(t.startswith("tests/slurm/test_pipeline_slurm.py::") for t in jobs)
    assert any(t.startswith("tests/pipelines/") for t in jobs) and not any(t.startswith("tests/pipelines/") for t in main)
    assert any(t.startswith("tests/slurm/test_render.py::") for t in main)   # no cluster: main lane
    assert any(t.startswith("tests/k8s/") for t in main)


def test_exit_status_and_report_names():
    lanes = _lanes_module()
    assert lanes._combined({"jobs": 0, "main": 0}) == 0
    assert lanes._combined({"jobs": 5, "main": 0}) == 0           # a selection with nothing in one lane
    assert lanes._combined({"jobs": 0, "main": 1}) == 1
    assert lanes._combined({"jobs": 2, "main": 5}) == 2
    assert lanes._combined({"jobs": 5, "main": 5}) == 5
    assert lanes._lane_args(["--junitxml=out/r.xml", "-q"], "jobs") == ["--junitxml=out/r.jobs.xml", "-q"]
    assert lanes._lane_args(["--junitxml=out/r.xml"], "main") == ["--junitxml=out/r.xml"]
    assert lanes._has_marker_option(["-m", "not slow"]) and not lanes._has_marker_option(["--maxfail=1"])
