"""Validation and quoting for every user-supplied value that reaches an sbatch script or a remote shell.

Two rules:
1. Values that land on ``#SBATCH`` lines (sbatch parses them itself, no shell) must match a strict
   pattern: a newline there would start a new script line, so nothing outside the pattern is accepted.
2. Values that land in the script body or in a remote command line are validated for the two characters
   no quoting can carry safely (newline, NUL) and then quoted with :func:`shlex.quote`, so ``$(...)``,
   backticks and ``;`` stay literal text. The quoting itself is :mod:`latxa.shell` (publish uses it too).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable

from latxa import shell
from latxa.slurm.errors import UnsafeValueError

JOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Characters allowed in paths that go onto #SBATCH lines (log files, working directory).
SBATCH_PATH_RE = re.compile(r"^/[A-Za-z0-9._/%@+=,-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE_RE = re.compile(r"^[A-Za-z0-9._/+-]+$")
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
SLURM_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:-]+$")  # account, partition, qos, gres, memory
TIME_RE = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
ARRAY_RE = re.compile(r"^\d+(-\d+)?(:\d+)?(,\d+(-\d+)?(:\d+)?)*(%\d+)?$")
DEPENDENCY_RE = re.compile(
    r"^(singleton|(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)(:\d+(_\d+)?(\+\d+)?)+)"
    r"([,?](singleton|(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)(:\d+(_\d+)?(\+\d+)?)+))*$"
)
JOB_ID_RE = re.compile(r"^\d+(_\d+)?$")


def _show(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def job_name(value: str) -> str:
    if not isinstance(value, str) or not JOB_NAME_RE.fullmatch(value):
        raise UnsafeValueError(
            f"Job name {_show(str(value))} is not allowed: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return value


def profile_name(value: str) -> str:
    """A cluster profile's name (it is written into the script's header comment): the job-name characters."""
    if not isinstance(value, str) or not JOB_NAME_RE.fullmatch(value):
        raise UnsafeValueError(
            f"Profile name {_show(str(value))} is not allowed: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return value


def job_id(value: str | int) -> str:
    text = str(value).strip()
    if not JOB_ID_RE.fullmatch(text):
        raise UnsafeValueError(f"Job id {_show(text)} is not a SLURM job id (digits, or ARRAYID_TASK like 12_3).")
    return text


def text_arg(value: str, what: str = "value") -> str:
    """A value for the script body or a remote command: anything but newline and NUL (it is quoted later)."""
    return shell.check_line(value, what, UnsafeValueError)


def body_path(value: str, what: str = "path") -> str:
    text_arg(value, what)
    if not value:
        raise UnsafeValueError(f"The {what} is empty.")
    return value


def sbatch_path(value: str, what: str = "path") -> str:
    """An absolute path that goes onto an #SBATCH line: strict characters, no '..' tricks needed."""
    value = str(value)
    if not SBATCH_PATH_RE.fullmatch(value):
        raise UnsafeValueError(
            f"The {what} {_show(value)} must be an absolute path of letters, digits and . _ / % @ + = , - only "
            "(it is written onto an #SBATCH line)."
        )
    return str(PurePosixPath(value))


def env_name(value: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise UnsafeValueError(f"Environment variable name {_show(value)} is not valid (letters, digits and _).")
    return value


def module_name(value: str) -> str:
    if not MODULE_RE.fullmatch(value):
        raise UnsafeValueError(f"Module name {_show(value)} is not valid (letters, digits and . _ / + -).")
    return value


def node_name(value: str) -> str:
    if not NODE_NAME_RE.fullmatch(value):
        raise UnsafeValueError(f"Node name {_show(value)} is not valid (letters, digits and . _ -).")
    return value


def slurm_token(value: str, what: str) -> str:
    if not SLURM_TOKEN_RE.fullmatch(str(value)):
        raise UnsafeValueError(f"The {what} {_show(str(value))} is not valid (letters, digits and . _ : - only).")
    return str(value)


def time_limit(value: str) -> str:
    if not TIME_RE.fullmatch(str(value)):
        raise UnsafeValueError(
            f"Time limit {_show(str(value))} is not a SLURM time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)."
        )
    return str(value)


def array_spec(value: str) -> str:
    if not ARRAY_RE.fullmatch(str(value)):
        raise UnsafeValueError(f"Array spec {_show(str(value))} is not valid (e.g. 0-7, 1,3,5 or 0-15%4).")
    return str(value)


def dependency(value: str) -> str:
    if not DEPENDENCY_RE.fullmatch(str(value)):
        raise UnsafeValueError(f"Dependency {_show(str(value))} is not valid (e.g. afterok:123 or afterok:123:124).")
    return str(value)


def quote(value: object) -> str:
    """Shell-quote a validated value (the Jinja filter ``q``)."""
    return shell.quote(value, error=UnsafeValueError)


def join(argv: Iterable[object]) -> str:
    """A command line from argv, every element quoted."""
    return shell.join(argv, error=UnsafeValueError)
