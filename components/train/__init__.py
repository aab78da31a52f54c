"""Training: causal-LM fine-tuning of a variant on Ray Train (DDP or DeepSpeed ZeRO), tracked in MLflow.

Public entry points (everything else is an implementation detail):

- :func:`latxa.components.train.plan.plan_training` validates a :class:`~latxa.components.train.plan.TrainJob` (variant,
  data, model, profile, batch arithmetic, output folder) before any worker starts and returns the
  :class:`~latxa.components.train.plan.TrainPlan` the workers run.
- :func:`latxa.components.train.runner.train` runs a job end to end: plan, Ray Train ``TorchTrainer``, checkpoints,
  exact resume, export to a Hugging Face folder, MLflow run + registered model. Returns a
  :class:`~latxa.components.train.runner.TrainResult`.
- :func:`latxa.components.train.export.export_checkpoint` turns a (DDP or ZeRO-sharded) checkpoint into a standard
  Hugging Face folder; :func:`latxa.components.train.publish.publish` copies it somewhere and verifies checksums.
"""

from __future__ import annotations


def __getattr__(name: str):  # lazy: importing the package must not import torch/ray
    if name in ("TrainJob", "TrainPlan", "plan_training", "TrainConfigError"):
        from latxa.components.train import plan

        return getattr(plan, name)
    if name in ("train", "TrainResult"):
        from latxa.components.train import runner

        return getattr(runner, name)
    if name == "export_checkpoint":
        from latxa.components.train.export import export_checkpoint

        return export_checkpoint
    if name == "publish":
        from latxa.components.train.publish import publish

        return publish
    raise AttributeError(name)
