"""Packaging: one import root, ``latxa``, over the repository's layer folders.

The top-level folders stay where users expect them (``components/``, ``pipelines/``, ...); setuptools'
package-dir mapping installs each as a subpackage of ``latxa`` (``components/`` -> ``latxa.components``), so
the distribution owns exactly one top-level name. Data folders (``data/`` -> ``latxa.sample_data``,
``mlflow/`` -> ``latxa.mlflow_config``) travel as package data; ``mlflow/`` is never importable as ``mlflow``.
Everything else (metadata, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

# import name under latxa -> folder in the repository
LAYERS = {
    "components": "components",
    "pipelines": "pipelines",
    "slurm": "slurm",
    "serving": "serving",
    "arena_ui": "arena_ui",
    "sample_data": "data",
    "mlflow_config": "mlflow",
}
SKIP = ["*__pycache__*", "*.web*", "*node_modules*", "*.states*"]


def packages() -> list[str]:
    found = ["latxa", *(f"latxa.{p}" for p in find_namespace_packages("latxa", exclude=SKIP))]
    for name, folder in LAYERS.items():
        found += [f"latxa.{name}", *(f"latxa.{name}.{p}" for p in find_namespace_packages(folder, exclude=SKIP))]
    return found


setup(
    packages=packages(),
    package_dir={"latxa": "latxa", **{f"latxa.{name}": folder for name, folder in LAYERS.items()}},
)
