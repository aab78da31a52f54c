"""Latxa-Instruct MLOps: one import root over the stack's layers.

- foundation (imported by every layer): :mod:`latxa.errors`, :mod:`latxa.paths`, :mod:`latxa.yamlfile`
- :mod:`latxa.components` (core library: registry, config, data, train, eval, tracking)
- :mod:`latxa.slurm` (SLURM bridge) and :mod:`latxa.pipelines` (KFP v2 pipelines and components)
- :mod:`latxa.serving` (Ray Serve, the arena API, ratings) and :mod:`latxa.arena_ui` (the Reflex UI, HTTP only)
- :mod:`latxa.cli` (the ``latxa`` command, on top; nothing imports it)

The folders of the repository map onto these subpackages (see setup.py); the layer rules are import-linter
contracts in pyproject.toml.
"""
