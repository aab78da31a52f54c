"""Plan against the Ray cluster's resources, not the driver host's: a KubeRay head pod or a SLURM head node may
have no GPU while its workers have many. Called by the runner once it is connected to the cluster."""

from __future__ import annotations

from latxa.errors import LatxaError


class ClusterTooSmall(LatxaError):
    """The Ray cluster cannot place the plan's workers (one sentence with the numbers)."""


def check_resources(plan, resources: dict | None = None) -> None:
    """Raise :class:`ClusterTooSmall` unless the cluster has the GPUs and CPUs the plan's workers reserve."""
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    need_gpu = plan.world_size * plan.gpus_per_worker
    need_cpu = plan.world_size * plan.cpus_per_worker
    have_gpu, have_cpu = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if plan.backend == "gpu" and have_gpu + 1e-9 < need_gpu:
        raise ClusterTooSmall(
            f"The Ray cluster has {have_gpu:g} GPU(s) but the plan needs {need_gpu:g} ({plan.world_size} workers x "
            f"{plan.gpus_per_worker:g}); give the cluster more GPU workers or lower --num-workers.")
    if have_cpu + 1e-9 < need_cpu:
        raise ClusterTooSmall(
            f"The Ray cluster has {have_cpu:g} CPU(s) but the plan needs {need_cpu:g} ({plan.world_size} workers x "
            f"{plan.cpus_per_worker}); give the cluster more CPUs or lower --num-workers.")
