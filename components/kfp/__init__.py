"""KFP v2 components: thin wrappers over the library functions, one module per step.

Components import the project lazily inside their function bodies, so they run both in
the project's container image (cluster) and with kfp.local's SubprocessRunner(use_venv=False).
"""
