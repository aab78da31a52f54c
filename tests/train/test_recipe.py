"""The worker recipe (`latxa.components.train.loop.TrainRecipe`) in one plain process: report, hooks, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from latxa.components.train.loop import LocalContext, TrainRecipe, run_worker
from latxa.components.train.plan import TrainJob, plan_training

VARIANT = "exp_1_010"


class SavingContext(LocalContext):
    """A one-process context that keeps every checkpoint folder it is handed (as Ray's storage would)."""

    def __init__(self, store: Path, resume_from: Path | None = None) -> None:
        super().__init__(resume_from)
        self.checkpoints = True
        self.store = store
        self.saved: list[Path] = []

    def report(self, metrics: dict, checkpoint_dir: Path | None, name: str | None) -> None:
        super().report(metrics, checkpoint_dir, name)
        if checkpoint_dir is not None:
            dest = self.store / name
            shutil.copytree(checkpoint_dir, dest)
            self.saved.append(dest)


@pytest.fixture(scope="module")
def plan(packed_data, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "out"
    return plan_training(TrainJob(variant=VARIANT, data_dir=packed_data, out_dir=out, model_dir=tiny_model,
                                  num_workers=1, max_steps=3, checkpoint_every=2, track=False))


def test_report_is_the_same_whether_trained_or_resumed_at_the_end(plan, tmp_path):
    ctx = SavingContext(tmp_path)
    trained = run_worker(plan, ctx)
    assert [p.name for p in ctx.saved] == ["step-00000002", "step-00000003"]
    assert trained["step"] == 3 and trained["timed_steps"] == 3
    # resuming from the final checkpoint trains nothing, but reports the same metrics (the same keys)
    again = SavingContext(tmp_path / "again", resume_from=ctx.saved[-1])
    resumed = run_worker(plan, again)
    assert resumed.keys() == trained.keys()
    assert resumed["step"] == 3 and resumed["loss"] == trained["loss"] and resumed["timed_steps"] == 0
    assert again.reports == [resumed]
    state = json.loads((ctx.saved[0] / "trainer_state.json").read_text())
    assert state["checkpoint_reason"] == "interval"
    assert json.loads((ctx.saved[1] / "trainer_state.json").read_text())["checkpoint_reason"] == "final"


class StopAtOne(TrainRecipe):
    """What a preemption signal handler does: checkpoint now (reason 'signal') and stop."""

    seen: list[int]

    def on_step_end(self, step, stats):
        self.seen = [*getattr(self, "seen", []), step]
        assert stats.global_tokens > 0 and stats.tokens > 0

    def should_checkpoint(self, step):
        if step == 1:
            self.request_stop()
            return "signal"
        return super().should_checkpoint(step)


def test_hooks_checkpoint_on_request_and_stop(plan, tmp_path):
    ctx = SavingContext(tmp_path)
    recipe = StopAtOne(plan, ctx).setup()
    report = recipe.train()
    assert recipe.seen == [1] and report["step"] == 1
    assert [p.name for p in ctx.saved] == ["step-00000001"]
    assert json.loads((ctx.saved[0] / "trainer_state.json").read_text())["checkpoint_reason"] == "signal"
    # a plain recipe resumed from it runs the remaining steps
    rest = run_worker(plan, SavingContext(tmp_path / "rest", resume_from=ctx.saved[0]))
    assert rest["step"] == 3 and rest["timed_steps"] == 2
