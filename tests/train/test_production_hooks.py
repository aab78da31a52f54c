"""The production pieces around the training loop (issue: the study's jobs on Leonardo): the checkpoint policy
(saves per epoch, time-based, stop requests), the held-out loss (the reference's per-example mean), the refusal to
resume a 70B run from an 8B checkpoint, per-variant seeds, and planning against the Ray cluster's resources."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from latxa.components.train.checkpointing import (
    KEEP_BONUS,
    CheckpointPolicy,
    every_n_steps,
    pending_request,
    request_stop,
)


def _plan(**kw):
    base = dict(total_steps=20, steps_per_epoch=10, saves_per_epoch=4, checkpoint_every=0, checkpoint_minutes=None,
                control_dir=None)
    return SimpleNamespace(**{**base, **kw})


def test_saves_per_epoch_time_based_and_requested_checkpoints(tmp_path):
    def run(plan, stop_at=None):
        now = [0.0]
        policy = CheckpointPolicy(plan, 0, reduce=lambda v: v, clock=lambda: now[0])
        saves = []
        for step in range(1, plan.total_steps + 1):
            now[0] += 7.0                             # a step takes 7 s
            if step == stop_at:
                request_stop(tmp_path, "SIGUSR1")
            d = policy.decide(step)
            if d.save:
                saves.append((step, d.reasons, d.stop))
                policy.saved()
                if d.stop:
                    break
        return saves

    # the reference's 4 saves per epoch of 10 steps: every 3 steps (HF Trainer's ceil), and the last step
    assert [s[0] for s in run(_plan())] == [3, 6, 9, 12, 15, 18, 20]
    # every 60 s of training (7-s steps: the 9th step after the last save), then a stop request at step 13
    saves = run(_plan(saves_per_epoch=None, checkpoint_minutes=1, control_dir=str(tmp_path)), stop_at=13)
    assert saves == [(9, ("time",), False), (13, ("stop",), True)] and pending_request(tmp_path) == "SIGUSR1"
    # a stop request at the last step just finishes the run
    final = CheckpointPolicy(_plan(control_dir=str(tmp_path)), 0, reduce=lambda v: v).decide(20)
    assert final.save and not final.stop and "final" in final.reasons
    # scheduled saves outrank time-based/requested ones for Ray's keep_checkpoints (the latest is kept anyway)
    assert final.keep_score == 20 + KEEP_BONUS
    assert CheckpointPolicy(_plan(control_dir=str(tmp_path)), 0, reduce=lambda v: v).decide(13).keep_score == 13
    # every rank takes rank 0's decision (the all-reduce): rank 1 does not read the clock or the file itself
    seen = []
    CheckpointPolicy(_plan(control_dir=str(tmp_path)), 1, reduce=lambda v: seen.append(v) or [0.0, 1.0]).decide(14)
    assert seen == [[0.0, 0.0]]


def test_every_n_steps_follows_hf_trainer_and_short_runs():
    assert every_n_steps(4, 10, 40) == 3 and every_n_steps(5, 100, 400) == 20
    assert every_n_steps(2, 1000, 6) == 3              # a smoke run shorter than an epoch still evaluates twice
    assert every_n_steps(None, 10, 40) is None and every_n_steps(0, 10, 40) is None


def test_heldout_loss_is_the_per_example_mean_of_unpacked_examples(tiny_model, latxa_home, tmp_path):
    """Packed held-out rows (attention isolated per example) give each example's own loss, unpacked."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from latxa.components.data import prepare
    from latxa.components.train.data import open_packed, packed_attention_mask
    from latxa.components.train.heldout import HeldoutEval
    from latxa.paths import SAMPLE_DATA

    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"sources:\n  inst_en: {{kind: chat, files: ['{SAMPLE_DATA / 'instructions' / 'en.jsonl'}']}}\n"
                   f"heldout:\n  ultra: {{kind: chat, files: ['{SAMPLE_DATA / 'instructions' / 'en.jsonl'}']}}\n")
    res = prepare("exp_2_101", tmp_path / "h", config=cfg, tokenizer=tiny_model, sources=["ultra"], num_proc=1,
                  progress=False, seq_len=512)
    assert res.manifest["variant"] is None and res.stats["examples"] == 65
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")

    def losses_of(batch):
        from latxa.components.train.heldout import token_losses
        from latxa.components.train.loss import shifted_targets

        pos = batch["position_ids"]
        hidden = model.model(input_ids=batch["input_ids"], attention_mask=packed_attention_mask(pos, torch.float32),
                             position_ids=pos).last_hidden_state
        targets = shifted_targets(batch["labels"]).reshape(-1)
        return token_losses(hidden.reshape(-1, hidden.shape[-1]), model.lm_head, targets, 7), targets

    plan = SimpleNamespace(heldout={"ultra": str(res.out_dir)}, evals_per_epoch=2, steps_per_epoch=10, total_steps=10)
    got = HeldoutEval(plan, 0, 1, torch.device("cpu"), reduce=lambda v: v).run(model, losses_of)
    # the same, one example at a time, each alone in its own sequence
    ds = open_packed(res.out_dir)
    per_example, tok_sum, toks = [], 0.0, 0
    with torch.no_grad():
        for i in range(len(ds)):
            ids, labels, pos = (np.asarray(ds[i][k]) for k in ("input_ids", "labels", "position_ids"))
            starts = list(np.nonzero(pos == 0)[0]) + [len(pos)]
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                x = torch.as_tensor(ids[a:b])[None]
                y = torch.as_tensor(labels[a:b])[None]
                if (y[:, 1:] != -100).sum() == 0:
                    continue
                loss = torch.nn.functional.cross_entropy(model(input_ids=x).logits[0, :-1], y[0, 1:], ignore_index=-100,
                                                         reduction="none")
                mask = y[0, 1:] != -100
                per_example.append(float(loss[mask].mean()))
                tok_sum += float(loss[mask].sum())
                toks += int(mask.sum())
    # a conversation the packer split across rows counts once per part with assistant tokens, here as in HeldoutEval
    assert 65 <= len(per_example) <= 65 + res.stats["split_documents"]
    assert got["eval_loss.ultra"] == pytest.approx(sum(per_example) / len(per_example), abs=1e-5)
    assert got["eval_token_loss.ultra"] == pytest.approx(tok_sum / toks, abs=1e-5)
    assert got["eval_loss"] == pytest.approx(got["eval_loss.ultra"])
    # two ranks split the rows and agree with one rank (padding rows count for nothing)
    halves = [HeldoutEval(plan, r, 2, torch.device("cpu"), reduce=lambda v: v)._one_set(ds, losses_of) for r in (0, 1)]
    total = [a + b for a, b in zip(*halves, strict=True)]
    assert total[2] / total[3] == pytest.approx(got["eval_loss.ultra"], abs=1e-6)


def _prepared(tiny_model, tmp_path, variant="exp_2_101"):
    from latxa.components.data import prepare

    return prepare(variant, tmp_path / f"d-{variant}", tokenizer=tiny_model, num_proc=1, progress=False,
                   seq_len=8192).out_dir


def test_a_70b_run_refuses_to_resume_from_an_8b_checkpoint(tiny_model, latxa_home, tmp_path):
    from latxa.components.train.plan import TrainJob, plan_training
    from latxa.components.train.resume_guard import ResumeMismatch

    data = _prepared(tiny_model, tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"variant": "exp_2_101", "status": "stopped",
                                              "plan": {"model_size": "8b", "model_name": "meta-llama/Llama-3.1-8B-Instruct"}}))
    job = dict(variant="exp_2_101", data_dir=data, out_dir=out, model=str(tiny_model), backend="cpu", num_workers=1,
               resume=True)
    with pytest.raises(ResumeMismatch, match=r"holds a 8B run of exp_2_101, so a 70B run cannot resume from its "
                                             r"checkpoints; choose another --out"):
        plan_training(TrainJob(profile="leonardo-70b", **job))
    # the other way, from the checkpoint alone (no run.json): what Ray left in out/ray/<run>/step-N
    (out / "run.json").unlink()
    step = out / "ray" / "Latxa-Llama-3.1-70B-Instruct-exp_2_101" / "step-00000004"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text(json.dumps({"variant": "70b-exp_2_101", "model_size": "70b"}))
    with pytest.raises(ResumeMismatch, match="holds a 70B run of exp_2_101, so a 8B run"):
        plan_training(TrainJob(profile="leonardo-8b", **job))
    plan = plan_training(TrainJob(profile="leonardo-70b", **job))
    assert (plan.variant, plan.run_name, plan.model_size) == ("70b-exp_2_101", "Latxa-Llama-3.1-70B-Instruct-exp_2_101", "70b")
    assert (plan.saves_per_epoch, plan.keep_checkpoints) == (5, 20)   # the reference's 70B settings


def test_exp_2_010_trains_with_seed_42_as_the_reference(tiny_model, latxa_home, tmp_path):
    from latxa.components.train.plan import TrainJob, plan_training

    for variant, seed in (("exp_2_010", 42), ("exp_2_011", 33)):
        data = _prepared(tiny_model, tmp_path, variant)
        plan = plan_training(TrainJob(variant=variant, data_dir=data, out_dir=tmp_path / variant, model=str(tiny_model),
                                      profile="leonardo-8b", backend="cpu", num_workers=1))
        assert plan.seed == seed and json.loads((data / "manifest.json").read_text())["seed"] == seed
        assert (plan.saves_per_epoch, plan.keep_checkpoints, plan.checkpoint_minutes) == (4, 4, 60)


def test_the_plan_is_checked_against_the_ray_clusters_resources():
    from latxa.components.train.cluster import ClusterTooSmall, check_resources

    plan = SimpleNamespace(world_size=8, gpus_per_worker=1.0, cpus_per_worker=4, backend="gpu")
    check_resources(plan, {"GPU": 8.0, "CPU": 64.0})           # a GPU-less head and GPU workers: fine
    with pytest.raises(ClusterTooSmall, match=r"has 4 GPU\(s\) but the plan needs 8"):
        check_resources(plan, {"GPU": 4.0, "CPU": 64.0})
    with pytest.raises(ClusterTooSmall, match=r"has 16 CPU\(s\) but the plan needs 32"):
        check_resources(plan, {"GPU": 8.0, "CPU": 16.0})
