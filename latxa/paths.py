"""Where things live: the shipped resources (package data), the local state folder, and a checkout if there is one.

Resources (sample data, configs, task YAMLs, templates) are read through the installed package, so the same
code runs from a checkout (editable install) and from a wheel in site-packages. The state folder is
``$LATXA_HOME``, else ``.latxa/`` in a checkout, else the user's cache folder (``$XDG_CACHE_HOME/latxa`` or
``~/.cache/latxa``), which every user can write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from latxa.errors import LatxaError

PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_root() -> Path | None:
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "components").is_dir() and (root / "latxa").is_dir():
        return root
    return None


CHECKOUT = _checkout_root()  # the repository this package runs from, or None when installed from a wheel


# Data folders that travel as package data: name under ``latxa`` -> folder in the repository (setup.py maps the
# same; a test checks the two agree).
DATA_FOLDERS = {"sample_data": "data", "mlflow_config": "mlflow"}


def resource_dir(name: str) -> Path:
    """The folder of a shipped data package (``"sample_data"``, ``"mlflow_config"``): the repository's folder in a
    checkout, the installed package data otherwise. (Resolved by path rather than by import: the folders are not
    Python packages, and ``mlflow/`` must never become one.)"""
    path = CHECKOUT / DATA_FOLDERS[name] if CHECKOUT is not None else PACKAGE_DIR / name
    if not path.is_dir():
        raise LatxaError(f"The package data folder {path} is missing from this installation.")
    return path


SAMPLE_DATA = resource_dir("sample_data")  # data/ in the repository


def state_dir() -> Path:
    """Local state (models, caches, MLflow store, SLURM records), created on first use."""
    if os.environ.get("LATXA_HOME"):
        path = Path(os.environ["LATXA_HOME"]).expanduser()
    elif CHECKOUT is not None:
        path = CHECKOUT / ".latxa"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache) / "latxa"
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LatxaError(f"The state folder {path} cannot be created ({err.strerror}); set LATXA_HOME to a "
                         "folder you can write.") from None
    return path


def tiny_model_dir() -> Path:
    """Default location of the tiny offline model built by `latxa model tiny`."""
    return state_dir() / "models" / "tiny"


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand(text: str, *, what: str = "path", env: bool = True) -> str:
    """The one expansion of user-written paths and values: ``{state}`` (the state folder), ``{sample_data}``
    (the shipped samples), ``{repo}`` (the checkout; an error outside one), ``$VAR`` / ``${VAR}`` (an error when
    unset, never silently left in) and a leading ``~``. ``what`` names the value in the error. With
    ``env=False`` only the placeholders are replaced (values that the cluster's shell expands, such as $WORK)."""
    out = text
    if "{state}" in out:
        out = out.replace("{state}", str(state_dir()))
    out = out.replace("{sample_data}", str(SAMPLE_DATA))
    if "{repo}" in out:
        if CHECKOUT is None:
            raise LatxaError(f"The {what} '{text}' uses {{repo}}, but this installation is not a checkout; "
                             "use {sample_data} for the shipped samples or an absolute path.")
        out = out.replace("{repo}", str(CHECKOUT))

    def var(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            raise LatxaError(f"The {what} '{text}' uses the environment variable ${name}, which is not set.")
        return os.environ[name]

    return os.path.expanduser(_VAR.sub(var, out)) if env else out
