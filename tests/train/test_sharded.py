"""FSDP2 on 2 CPU ranks (gloo, torchrun): sharded loading, training, sharded checkpoints, the streamed bf16 export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from latxa.components.train.plan import TrainJob, plan_training
from latxa.net import free_port

VARIANT = "exp_1_010"
HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


def torchrun(mode: str, plan, out: Path, **env) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan.to_dict()))
    exe = Path(sys.executable).with_name("torchrun")
    r = subprocess.run([str(exe), "--nproc_per_node", str(plan.world_size), "--master_port", str(free_port()),
                        str(HERE / "ranks_worker.py"), mode, str(out / "plan.json"), str(out)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])


@pytest.fixture(scope="module")
def plans(packed_data, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    base = dict(variant=VARIANT, data_dir=packed_data, model_dir=tiny_model, num_workers=2, max_steps=4,
                checkpoint_every=2, track=False)
    fsdp = plan_training(TrainJob(out_dir=out / "fsdp", fsdp="full_shard", **base))
    ddp = plan_training(TrainJob(out_dir=out / "ddp", **base))
    assert (fsdp.fsdp, fsdp.fsdp_shard_size, ddp.fsdp) == ("full_shard", 2, "none")
    return {"root": out, "fsdp": fsdp, "ddp": ddp}


def test_two_ranks_load_the_same_weights_as_a_plain_load(plans, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    out = plans["root"] / "load"
    torchrun("load", plans["fsdp"], out)
    got = torch.load(out / "loaded.pt", weights_only=True)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).state_dict()
    full = got["state"]
    assert set(full) <= set(plain) and len(full) >= len(plain) - 1          # a tied head may be listed once
    for name, tensor in full.items():
        assert torch.equal(tensor, plain[name]), name
    # each rank held about half of every parameter, not the model
    total = sum(full[n].numel() for n in got["local_numel"])
    assert sum(got["local_numel"].values()) <= total / 2 + 64 * len(got["local_numel"])


def test_hybrid_shard_on_four_ranks_loads_a_shard_per_node_group(plans, tiny_model):
    """Mesh (2 replicas x 2 shards), as leonardo-8b's (32 x 4): each rank holds half of the model, weights exact."""
    import torch
    from transformers import AutoModelForCausalLM

    plan = replace(plans["fsdp"], fsdp="hybrid_shard", fsdp_shard_size=2, world_size=4)
    out = plans["root"] / "hybrid"
    torchrun("load", plan, out)
    got = torch.load(out / "loaded.pt", weights_only=True)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).state_dict()
    for name, tensor in got["state"].items():
        assert torch.equal(tensor, plain[name]), name
    total = sum(got["state"][n].numel() for n in got["local_numel"])
    assert total / 2 - 64 * 21 <= sum(got["local_numel"].values()) <= total / 2 + 64 * 21


@pytest.fixture(scope="module")
def trained(plans):
    runs = {}
    for kind in ("fsdp", "ddp"):
        out = plans["root"] / f"train-{kind}"
        torchrun("train", plans[kind], out)
        runs[kind] = out
    return runs


def test_fsdp_training_matches_ddp_and_exports_bf16_shards(trained, tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from latxa.components.train.export import export_checkpoint

    fsdp_ckpt, ddp_ckpt = trained["fsdp"] / "step-00000004", trained["ddp"] / "step-00000004"
    assert sorted(p.name for p in (fsdp_ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    a = json.loads((trained["fsdp"] / "report.json").read_text())
    b = json.loads((trained["ddp"] / "report.json").read_text())
    assert a["step"] == b["step"] == 4 and a["loss"] == pytest.approx(b["loss"], abs=1e-5)

    f32 = export_checkpoint(fsdp_ckpt, tmp_path / "fsdp32", base_model=tiny_model, dtype="float32")
    d32 = export_checkpoint(ddp_ckpt, tmp_path / "ddp32", base_model=tiny_model, dtype="float32")
    wa, wb = load_file(str(f32 / "model.safetensors")), load_file(str(d32 / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5        # same maths, other sharding

    # bf16 by default, in shards of at most max_shard_size, loadable by transformers, equal to the trained weights
    out = export_checkpoint(fsdp_ckpt, tmp_path / "bf16", base_model=tiny_model, max_shard_size="100KB")
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    info = json.loads((out / "latxa_export.json").read_text())
    assert info["dtype"] == "bfloat16" and info["largest_shard_bytes"] <= 100_000 + max(
        v.numel() * 2 for v in wa.values())
    model = AutoModelForCausalLM.from_pretrained(out)
    assert next(model.parameters()).dtype == torch.bfloat16
    loaded = model.state_dict()
    for name, tensor in wa.items():
        assert torch.equal(loaded[name], tensor.to(torch.bfloat16)), name


def test_fsdp_resume_continues_exactly(plans, trained, tmp_path):
    """Resumed from the step-2 FSDP checkpoint (sharded model + optimizer), 2 more steps give the same weights."""
    from safetensors.torch import load_file

    from latxa.components.train.export import export_checkpoint

    out = tmp_path / "resumed"
    torchrun("train", replace(plans["fsdp"]), out, LATXA_TEST_RESUME=str(trained["fsdp"] / "step-00000002"))
    report = json.loads((out / "report.json").read_text())
    assert report["step"] == 4 and report["timed_steps"] == 2
    base = plans["fsdp"].model_dir
    x = load_file(str(export_checkpoint(out / "step-00000004", tmp_path / "x", base_model=base, dtype="float32")
                      / "model.safetensors"))
    y = load_file(str(export_checkpoint(trained["fsdp"] / "step-00000004", tmp_path / "y", base_model=base,
                                        dtype="float32") / "model.safetensors"))
    assert max(float((x[k] - y[k]).abs().max()) for k in x) <= 1e-6


@pytest.mark.parametrize("wrap", [{"fsdp": "full_shard"}, {"deepspeed_stage": 3}, {}], ids=["fsdp", "zero3", "ddp"])
def test_heldout_loss_runs_through_the_wrapped_model(wrap, plans, tiny_model, latxa_home, tmp_path):
    """The held-out loss goes through the wrapped model as training does: under FSDP2 the root module's hooks
    unshard the embeddings, final norm and LM head, under ZeRO-3 each module gathers its own. On 2 ranks it equals
    the loss of the plain, unsharded model computed in this process."""
    import torch
    from transformers import AutoModelForCausalLM

    from latxa.components.data import prepare
    from latxa.components.train.data import packed_attention_mask
    from latxa.components.train.heldout import HeldoutEval, token_losses
    from latxa.components.train.loss import shifted_targets
    from latxa.paths import SAMPLE_DATA

    assert latxa_home.is_dir()
    cfg = tmp_path / "data.yaml"
    eu = SAMPLE_DATA / "instructions" / "eu.jsonl"
    cfg.write_text(f"sources:\n  inst_eu: {{kind: chat, files: ['{eu}']}}\n"
                   f"heldout:\n  aya_eu: {{kind: chat, files: ['{eu}']}}\n")
    sets = tmp_path / "heldout"
    prepare("exp_1_010", sets / "aya_eu", config=cfg, tokenizer=tiny_model, sources=["aya_eu"], num_proc=1,
            progress=False, seq_len=plans["fsdp"].seq_len)
    plan = plan_training(TrainJob(variant=VARIANT, data_dir=plans["fsdp"].data_dir, model_dir=tiny_model,
                                  num_workers=2, max_steps=4, track=False, heldout=sets, evals_per_epoch=2,
                                  out_dir=tmp_path / "run", **wrap))
    assert plan.heldout
    assert (plan.fsdp, plan.deepspeed_stage) == (wrap.get("fsdp", "none"), wrap.get("deepspeed_stage", 0))
    out = tmp_path / "ranks"
    torchrun("heldout", plan, out)
    got = json.loads((out / "heldout.json").read_text())

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")

    def losses_of(batch):
        pos = batch["position_ids"]
        hidden = model.model(input_ids=batch["input_ids"], attention_mask=packed_attention_mask(pos, torch.float32),
                             position_ids=pos).last_hidden_state
        targets = shifted_targets(batch["labels"]).reshape(-1)
        return token_losses(hidden.reshape(-1, hidden.shape[-1]), model.lm_head, targets, 0), targets

    want = HeldoutEval(plan, 0, 1, torch.device("cpu"), reduce=lambda v: v).run(model, losses_of)
    assert set(got) == set(want) == {"eval_loss", "eval_loss.aya_eu", "eval_token_loss.aya_eu"}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
