"""Starting Ray for this process: the one helper training and serving share (foundation: imports Ray lazily)."""

from __future__ import annotations

import os
import time

from latxa.errors import LatxaError

ATTEMPTS = 5


def start_ray(*, num_cpus: int | None = None, log_to_driver: bool = True, object_store_mb: int = 200,
              quiet: bool = False) -> bool:
    """Join ``$RAY_ADDRESS`` if set, else start a small local Ray; True if this call did either (so the caller
    shuts it down), False if Ray was already up in this process.

    A local start is retried: Ray gives its raylet a fixed 30 s to register, which a loaded 2-core machine can
    miss. Any other failure, or the last attempt's, is one sentence (:class:`~latxa.errors.LatxaError`).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=log_to_driver)
        return True
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # "local": always a new cluster. Without it Ray joins the last `ray start` cluster of this machine (its
            # address file in the Ray temp folder), someone else's on a shared login node, and refuses num_cpus
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=object_store_mb * 1024**2, log_to_driver=log_to_driver,
                     configure_logging=False)
            return True
        except Exception as err:  # Ray raises a bare Exception here
            ray.shutdown()
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if "timed out during startup" not in str(err) or attempt == ATTEMPTS:
                raise LatxaError(f"Ray could not start a local cluster ({first}).") from None
            if not quiet:
                print(f"local Ray did not start in time (attempt {attempt}/{ATTEMPTS}, machine overloaded?); "
                      "retrying", flush=True)
            time.sleep(5 * attempt)
    return True
