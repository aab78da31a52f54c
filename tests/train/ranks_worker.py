"""Run under torchrun (2 ranks, gloo): sharded loading or a short training run of the real recipe.

    torchrun --nproc_per_node 2 ranks_worker.py load  PLAN_JSON OUT
    torchrun --nproc_per_node 2 ranks_worker.py train PLAN_JSON OUT
    torchrun --nproc_per_node 2 ranks_worker.py heldout PLAN_JSON OUT

``load`` writes the full (gathered) state dict of the FSDP-loaded model to OUT/loaded.pt; ``train`` runs the
plan with :class:`~latxa.components.train.loop.TrainRecipe` and merges every rank's checkpoint folders into
OUT/step-N (as Ray Train's storage does); ``heldout`` sets the recipe up and runs its step-end hook once at a step
where the held-out loss is due, writing the metrics it produced to OUT/heldout.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path


class TorchrunContext:
    checkpoints = True

    def __init__(self, out: Path) -> None:
        import torch.distributed as dist

        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.out = out
        self.reports: list[dict] = []

    def device(self):
        import torch

        return torch.device("cpu")

    @contextmanager
    def latest_checkpoint(self):
        resume = os.environ.get("LATXA_TEST_RESUME")
        yield Path(resume) if resume else None

    def report(self, metrics: dict, checkpoint_dir, name) -> None:
        import torch.distributed as dist

        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            shutil.copytree(checkpoint_dir, self.out / name, dirs_exist_ok=True)
        dist.barrier()


def main() -> None:
    import torch
    import torch.distributed as dist

    mode, plan_json, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    dist.init_process_group("gloo")
    from latxa.components.train.loop import TrainRecipe, build_sharded_model
    from latxa.components.train.plan import TrainPlan

    plan = TrainPlan.from_dict(json.loads(plan_json.read_text()))
    ctx = TorchrunContext(out)
    if mode == "load":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        model = build_sharded_model(plan, torch.device("cpu"), rank=ctx.rank, world=ctx.world_size,
                                    attn_implementation="sdpa")
        local = {n: p.to_local().numel() for n, p in model.named_parameters()}
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if ctx.rank == 0:
            torch.save({"state": full, "local_numel": local}, out / "loaded.pt")
    elif mode == "heldout":
        recipe = TrainRecipe(plan, ctx).setup()
        seen: dict = {}
        recipe.metrics.add = lambda _step, values: seen.update(values)
        recipe.on_step_end(recipe.heldout.every, None)
        if ctx.rank == 0:
            (out / "heldout.json").write_text(json.dumps(seen))
    else:
        report = TrainRecipe(plan, ctx).setup().train()
        if ctx.rank == 0:
            (out / "report.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
