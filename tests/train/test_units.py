"""Fast tests of the training pieces: packed attention, schedule, batch order, DeepSpeed config, validation, publish."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from latxa.components.train.plan import TrainConfigError, TrainJob, plan_training

VARIANT = "exp_1_010"


# ----------------------------------------------------------------------------------------------------------
# Packed rows: documents must not attend to each other.
# ----------------------------------------------------------------------------------------------------------
def test_packed_row_equals_documents_run_separately(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from latxa.components.train.data import packed_attention_mask

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(10, 2000, (n,), generator=g) for n in (7, 12, 5)]
    ids = torch.cat(docs)[None]
    pos = torch.cat([torch.arange(len(d)) for d in docs])[None]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, attention_mask=packed_attention_mask(pos, torch.float32)).logits[0]
        alone = torch.cat([model(input_ids=d[None]).logits[0] for d in docs])
        leaky = model(input_ids=ids, position_ids=pos).logits[0]   # plain causal mask over the whole row
    assert torch.allclose(packed, alone, atol=1e-5), (packed - alone).abs().max()
    # without the block-diagonal mask the 2nd and 3rd documents see the 1st: outputs differ
    assert not torch.allclose(leaky[7:], alone[7:], atol=1e-3)


def test_mask_blocks_across_documents_and_future():
    import torch

    from latxa.components.train.data import packed_attention_mask

    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])
    m = packed_attention_mask(pos, torch.float32)[0, 0] == 0   # True = may attend
    assert m[4, 3] and m[4, 4] and not m[4, 2] and not m[4, 5]
    assert m[2].tolist() == [True, True, True, False, False, False, False]


# ----------------------------------------------------------------------------------------------------------
# Schedule and batch order
# ----------------------------------------------------------------------------------------------------------
def test_cosine_schedule_with_warmup_and_min_lr():
    from latxa.components.train.optim import lr_factor

    total, warm = 100, 10
    f = [lr_factor(s, total, warm, "cosine", 0.33) for s in range(total + 1)]
    assert f[0] == 0 and f[5] == pytest.approx(0.5) and f[warm] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[warm:], f[warm + 1:], strict=False))          # monotone decay after warm-up
    assert f[total] == pytest.approx(0.33)
    assert f[55] == pytest.approx(0.33 + 0.67 * 0.5, abs=1e-9)           # half-way: cosine at pi/2
    assert lr_factor(50, total, warm, "linear", 0.0) == pytest.approx(1 - 40 / 90)


def test_epoch_order_is_deterministic_complete_and_split_by_rank():
    from latxa.components.train.data import Schedule, epoch_order, rank_micro_batches

    a = epoch_order(10, 4, seed=33, epoch=0, shuffle=True)
    assert a.shape == (3, 4)
    assert np.array_equal(a, epoch_order(10, 4, seed=33, epoch=0, shuffle=True))
    assert not np.array_equal(a, epoch_order(10, 4, seed=33, epoch=1, shuffle=True))
    flat = a.ravel()
    assert set(flat[:10]) == set(range(10))                              # every row once, then 2 repeated
    assert Schedule.build(10, 4, epochs=1, max_steps=None).padded_rows_per_epoch == 2
    r0 = rank_micro_batches(a[0], 0, 2, 1)
    r1 = rank_micro_batches(a[0], 1, 2, 1)
    assert len(r0) == 2 and not set(np.concatenate(r0)) & set(np.concatenate(r1))
    assert Schedule.build(10, 4, epochs=2.5, max_steps=None).total_steps == math.ceil(2.5 * 3)


def test_deepspeed_config_matches_batch_arithmetic():
    from types import SimpleNamespace

    from latxa.components.config import load_config
    from latxa.components.train.optim import deepspeed_config

    for profile in ("leonardo-8b", "leonardo-70b"):
        r = load_config().resolve(profile)
        plan = SimpleNamespace(deepspeed_stage=3, backend="gpu", offload_optimizer=profile == "leonardo-70b",
                               global_batch=r.global_batch_size, bucket_mb=r.target.bucket_mb,
                               micro_batch_size=r.study.train.micro_batch_size, grad_accum=r.study.train.grad_accum,
                               max_grad_norm=r.study.train.max_grad_norm, precision=r.study.train.precision)
        cfg = deepspeed_config(plan)
        assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * r.world_size
        assert cfg["zero_optimization"]["stage"] == 3 and cfg["bf16"]["enabled"]
        assert cfg["zero_optimization"]["reduce_bucket_size"] == r.target.bucket_mb * 1e6     # the profile's, not 5e7
        assert ("offload_optimizer" in cfg["zero_optimization"]) == (profile == "leonardo-70b")


def test_leonardo_profiles_shard_as_the_reference():
    """8B: FSDP hybrid shard inside a node (mesh 32 x 4); 70B: full shard over 256 ranks, no offload."""
    from latxa.components.config import load_config
    from latxa.components.train.sharding import mesh_shape

    cfg = load_config()
    p8, p70 = cfg.resolve("leonardo-8b").target, cfg.resolve("leonardo-70b").target
    assert (p8.fsdp, p8.deepspeed_stage, p8.shard_group_size) == ("hybrid_shard", 0, 4)
    assert mesh_shape(p8.fsdp, p8.num_workers, p8.shard_group_size) == (32, 4)
    assert (p70.fsdp, p70.offload_optimizer, p70.shard_group_size) == ("full_shard", False, 256)
    assert mesh_shape(p70.fsdp, p70.num_workers, p70.shard_group_size) == (1, 256)
    assert p8.bucket_mb != 50 and p70.bucket_mb != 50
    # Ray on each node offers the SLURM task's CPUs (the reference's --cpus-per-task 16): the node's workers fit
    from latxa.slurm.profiles import load_profile

    for target, name in ((p8, "leonardo-8b"), (p70, "leonardo-70b")):
        site = load_profile(name)
        assert target.cpus_per_worker * site.gpus_per_node <= site.cpus_per_task and target.cpus_per_worker > 1, name


# ----------------------------------------------------------------------------------------------------------
# Validation before any worker starts
# ----------------------------------------------------------------------------------------------------------
def _job(tmp_path, packed_data, tiny_model, **kw):
    return TrainJob(variant=kw.pop("variant", VARIANT), data_dir=kw.pop("data_dir", packed_data),
                    out_dir=kw.pop("out_dir", tmp_path / "out"), model_dir=tiny_model, **kw)


def test_valid_job_plans(tmp_path, packed_data, tiny_model):
    plan = plan_training(_job(tmp_path, packed_data, tiny_model, max_steps=5, global_batch_size=8))
    assert plan.world_size == 2 and plan.grad_accum == 2 and plan.global_batch == 8 and plan.total_steps == 5
    assert plan.precision == "fp32" and plan.seq_len == 256 and plan.lr == pytest.approx(1e-3)
    assert not (tmp_path / "out").exists()      # planning writes nothing


@pytest.mark.parametrize("kw, fragment", [
    ({"variant": "exp_7_000"}, "is not a variant code"),
    ({"global_batch_size": 6}, "not divisible by world size 2"),
    ({"num_workers": 3, "global_batch_size": 8}, "not divisible by world size 3"),
    ({"data_dir": Path("/nonexistent/data")}, "does not exist"),
    ({"variant": "exp_2_101"}, "was prepared for exp_1_010"),
    ({"profile": "leonardo-8b"}, "has none"),
])
def test_bad_jobs_fail_with_one_sentence(tmp_path, packed_data, tiny_model, kw, fragment):
    from latxa.errors import LatxaError

    with pytest.raises(LatxaError) as err:
        plan_training(_job(tmp_path, packed_data, tiny_model, **kw))
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_existing_run_needs_resume(tmp_path, packed_data, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"variant": VARIANT}))
    with pytest.raises(TrainConfigError, match="pass --resume"):
        plan_training(_job(tmp_path, packed_data, tiny_model))
    assert plan_training(_job(tmp_path, packed_data, tiny_model, resume=True)).variant == VARIANT


def test_malformed_shard_names_file_and_row(tmp_path, packed_data, tiny_model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "bad"
    shutil.copytree(packed_data, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    shard = bad / manifest["shards"][0]
    t = pq.read_table(shard)
    rows = t.to_pylist()
    rows[2]["labels"] = rows[2]["labels"][:-1]                          # row 3 one token short
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), shard)
    from latxa.errors import LatxaError

    with pytest.raises(LatxaError) as err:
        plan_training(_job(tmp_path, packed_data, tiny_model, data_dir=bad))
    assert f"{shard}:3 has labels of length 255" in str(err.value)


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000, "manifest.json:1: JSON nested deeper than 64 levels"),                      # was a RecursionError
    ('{"seq_len": ' + "7" * 5000 + "}", "manifest.json:1: an integer with more than"),          # was a ValueError
    ('{\n"seq_len": 256,\n}', "manifest.json:3: malformed JSON (Expecting property name"),
    ("[1, 2]", "manifest.json is not a packed dataset's manifest"),
])
def test_a_hostile_manifest_is_one_sentence(tmp_path, packed_data, tiny_model, text, reason):
    from latxa.errors import LatxaError

    bad = tmp_path / "bad"
    shutil.copytree(packed_data, bad)
    (bad / "manifest.json").write_text(text)
    with pytest.raises(LatxaError) as err:
        plan_training(_job(tmp_path, packed_data, tiny_model, data_dir=bad))
    assert reason in str(err.value) and "\n" not in str(err.value), str(err.value)[:300]


def test_cli_rejects_bad_config_before_starting_ray(cli, tmp_path, packed_data, tiny_model):
    out = tmp_path / "out"
    r = cli("train", "--variant", VARIANT, "--data", str(packed_data), "--out", str(out), "--model", str(tiny_model),
            "--global-batch-size", "6", "--no-track")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: Global batch size 6 is not divisible by world size 2 x micro batch 2 = 4; "
                                "choose a multiple of 4.")
    assert "Ray" not in r.stdout + r.stderr and not out.exists()
    r = cli("train", "--variant", "exp_1_01", "--data", str(packed_data), "--out", str(out))
    assert r.returncode == 2 and r.stderr.startswith("error: 'exp_1_01' is not a variant code")


# ----------------------------------------------------------------------------------------------------------
# Publish
# ----------------------------------------------------------------------------------------------------------
def test_publish_copies_and_verifies_checksums(tmp_path):
    from latxa.components.train.export import write_checksums
    from latxa.components.train.publish import PublishError, publish, verify

    src = tmp_path / "model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"\x00" * 1000)
    write_checksums(src)
    info = publish(src, str(tmp_path / "dest"))
    assert info["files"] == 2 and verify(tmp_path / "dest") == 2
    with pytest.raises(PublishError, match="already exists"):
        publish(src, str(tmp_path / "dest"))
    (tmp_path / "dest" / "model.safetensors").write_bytes(b"\x01" * 1000)
    with pytest.raises(PublishError, match="does not match its checksum"):
        verify(tmp_path / "dest")


# ----------------------------------------------------------------------------------------------------------
# System metrics: a run shorter than MLflow's sampling interval still records one sample.
# ----------------------------------------------------------------------------------------------------------
def test_short_run_still_logs_system_metrics(tmp_path):
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from latxa.components.train.loop import _Metrics

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("short"))
    metrics = _Metrics(SimpleNamespace(mlflow_run_id=run.info.run_id, tracking_uri=uri), rank=0)
    metrics.add(1, {"loss": 1.5})
    metrics.close()                     # well inside the 2 s sampling interval
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["loss"] == 1.5
    assert any(k.startswith("system/cpu") for k in logged), sorted(logged)


# ----------------------------------------------------------------------------------------------------------
# `latxa train plan`: the memory and time plan with the real Llama-3.1 shapes
# ----------------------------------------------------------------------------------------------------------
def test_real_llama_shapes_give_the_published_parameter_counts():
    from latxa.components.train.memory import model_shape

    assert model_shape("meta-llama/Llama-3.1-8B-Instruct").params == 8_030_261_248
    assert model_shape("meta-llama/Llama-3.1-70B-Instruct").params == 70_553_706_496


@pytest.mark.parametrize("profile, model", [("leonardo-8b", "meta-llama/Llama-3.1-8B-Instruct"),
                                            ("leonardo-70b", "meta-llama/Llama-3.1-70B-Instruct")])
def test_plan_accepts_both_leonardo_profiles(cli, profile, model):
    r = cli("train", "plan", "--variant", "exp_2_101", "--profile", profile, "--rows", "100000", "--format", "json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["model"] == model and p["gpu_budget_gib"] == 64 and p["host_budget_gib"] == 482
    assert 0 < p["gpu_gib_per_device"] <= 64 and 0 < p["host_gib_per_node"] <= 482
    assert sum(p["gpu"].values()) == pytest.approx(p["gpu_gib_per_device"], abs=0.05)
    assert set(p["gpu"]) == {"weights", "gradients", "optimizer", "activations", "logits", "buffers"}
    assert p["tokens_per_step"] == p["global_batch_rows"] * 8192 and p["steps"] and p["step_time_s"] > 0


def test_plan_refuses_what_does_not_fit_in_one_sentence(cli):
    r = cli("train", "plan", "--profile", "leonardo-70b", "--no-gradient-checkpointing")
    assert r.returncode == 2
    msg = r.stderr.strip()
    assert msg.startswith("error: Profile 'leonardo-70b' does not fit") and "budget of 64 GiB" in msg
    assert "largest term being activations" in msg and msg.count("\n") == 0
    # the old layout (whole fp32 model on each of 4 ranks per node, plain DDP) fails on host memory
    r = cli("train", "plan", "--profile", "leonardo-70b", "--fsdp", "none")
    assert r.returncode == 2 and "GiB per GPU" in r.stderr and "largest term being optimizer" in r.stderr
