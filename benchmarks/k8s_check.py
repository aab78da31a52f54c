"""How long `make k8s-check` takes, phase by phase, and the Python builder against `kubectl kustomize`.

Every figure is the median of --repeat runs in this process; ratios are against the kubectl build of the
same overlay in the same run (the baseline), so they hold across machines.

    .venv/bin/python benchmarks/k8s_check.py --repeat 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    check = _load("latxa_k8s_check", REPO / "k8s" / "check.py")
    lite = _load("kustomize_lite", REPO / "k8s" / "kustomize_lite.py")
    schemas = check.DEFAULT_KUBERAY_SCHEMAS
    if check.kubectl_usable() is None:
        print("kubectl with Kustomize v5 is needed for the baseline", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    check._crd_schemas(str(schemas))
    crd_load = time.perf_counter() - t0
    print(f"KubeRay CRD schemas parsed once (libyaml): {crd_load:.2f} s")
    print("| overlay | objects | kubectl kustomize (baseline) | Python builder | kubernetes-validate --strict "
          "| KubeRay CRDs | policy |")
    print("|---|---|---|---|---|---|---|")
    for overlay in check.default_overlays():
        base, objs = median_time(lambda o=overlay: check.build(o, "kubectl"), args.repeat)
        py, _ = median_time(lambda o=overlay: lite.build(o), args.repeat)
        core, _ = median_time(lambda b=objs: check.validate_core("b", b, check.KUBERNETES_VERSION), args.repeat)
        crd, _ = median_time(lambda b=objs: check.validate_kuberay("b", b, schemas, check.KUBERNETES_VERSION),
                             args.repeat)
        pol, _ = median_time(lambda b=objs: check.check_policy("b", b), args.repeat)
        print(f"| {overlay.name} | {len(objs)} | {base:.3f} s (1.00x) | {py:.3f} s ({py / base:.2f}x) | "
              f"{core:.3f} s ({core / base:.2f}x) | {crd:.3f} s ({crd / base:.2f}x) | {pol:.4f} s ({pol / base:.3f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
