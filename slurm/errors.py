"""Errors of the SLURM bridge: each message is one readable sentence (see latxa.errors)."""

from __future__ import annotations

from latxa.errors import LatxaError


class SlurmError(LatxaError):
    """A SLURM command failed, or the bridge was given something it cannot use."""


class TransportError(SlurmError):
    """The cluster could not be reached (ssh exit 255, a timeout): worth retrying, unlike a SLURM answer."""


class CertificateExpired(SlurmError):
    """The SSH certificate (CINECA: 12 h, smallstep) has expired or is missing; `latxa slurm login` renews it."""


class UnsafeValueError(SlurmError, ValueError):
    """A user-supplied value that could change the meaning of a script or a remote command."""


class WaitTimeoutError(SlurmError):
    """`wait` ran out of time before the job reached a final state."""

    exit_code = 3


class JobFailedError(SlurmError):
    """The job ended in a state other than COMPLETED; carries the final status and the log tail."""

    exit_code = 1

    def __init__(self, message: str, status=None, log_tail: str = ""):
        super().__init__(message)
        self.status = status
        self.log_tail = log_tail
