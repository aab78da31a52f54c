"""SLURM bridge: run the study's Ray Train jobs on Leonardo (or any SLURM cluster) from a laptop or Kubeflow.

- :mod:`latxa.slurm.profiles`: typed cluster profiles (``local``, ``leonardo-8b``, ``leonardo-70b`` or a YAML file).
- :mod:`latxa.slurm.render`: Jinja2 sbatch scripts (Ray cluster inside the allocation, training, teardown).
- :mod:`latxa.slurm.transport`: where SLURM commands run (this host, or a login node over OpenSSH).
- :mod:`latxa.slurm.bridge`: submit / status / logs / cancel / wait, arrays, ``afterok`` chains, resubmission.
"""

from latxa.slurm.errors import JobFailedError, SlurmError, UnsafeValueError, WaitTimeoutError

__all__ = ["SlurmError", "UnsafeValueError", "JobFailedError", "WaitTimeoutError"]
