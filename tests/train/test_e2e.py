"""End-to-end training through the real `latxa train` CLI: Ray Train with 2 CPU workers (gloo), MLflow, export.

- an uninterrupted DDP run: loss goes down, the exported folder loads in transformers, MLflow (SQLite) holds the
  run with params, per-step and system metrics, artifacts and the registered model version with its tags;
- the same run SIGKILLed (the whole process group, as SLURM preemption does) after a checkpoint and resumed with
  --resume, tracked on a real `mlflow server` over HTTP: its final weights equal the uninterrupted run's;
- DeepSpeed ZeRO-3 on CPU: trains, its sharded checkpoint is consolidated with zero_to_fp32 on export, and the
  weights match the DDP run's after the same steps (same maths, different sharding).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

VARIANT = "exp_1_010"
STEPS = 8
pytestmark = pytest.mark.slow


def _train_args(data: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["train", "--variant", VARIANT, "--data", str(data), "--out", str(out), "--model", str(model),
            "--max-steps", str(STEPS), "--format", "json", *extra]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict, atol: float) -> None:
    import torch

    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, f"weights differ by up to {worst}"
    assert all(torch.isfinite(v).all() for v in a.values())


@pytest.fixture(scope="module")
def ddp_run(latxa_run, packed_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    r = latxa_run(*_train_args(packed_data, root / "out", tiny_model, "--checkpoint-every", "4", "--tracking-uri", uri))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    result = json.loads(r.stdout[r.stdout.index("{\n"):])
    return {"root": root, "out": root / "out", "uri": uri, "result": result, "stdout": r.stdout, "stderr": r.stderr}


def test_ddp_run_learns_exports_and_tracks(ddp_run, tiny_model):
    import torch
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latxa.components.tracking import registered_model_name

    res = ddp_run["result"]
    m = res["metrics"]
    assert m["step"] == STEPS
    assert m["loss"] < m["first_loss"] - 0.05, m                           # it learns

    # the export is a standard HF folder that transformers loads and generates with
    model_dir = Path(res["model_dir"])
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "SHA256SUMS"):
        assert (model_dir / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.chat_template and "start_header_id" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)   # trained weights
    prompt = tok.apply_chat_template([{"role": "user", "content": "Kaixo!"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 5 or tok.eos_token_id in out[0].tolist()

    # MLflow: one run named after the variant, params, per-step metrics, system metrics, artifacts, registry
    client = MlflowClient(tracking_uri=ddp_run["uri"])
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.run_name == VARIANT and run.info.status == "FINISHED"
    p = run.data.params
    assert p["variant"] == VARIANT and p["world_size"] == "2" and float(p["lr"]) == pytest.approx(1e-3)
    assert p["git_commit"] and p["paper_name"] and p["data_cache_key"] and p["betas"] == "0.9,0.95"
    assert run.data.tags["variant"] == VARIANT and run.data.tags["latxa.stage"] == "train"
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted({h.step for h in losses}) == [1, 5, 8]                    # log_every 5, plus first and last
    assert {"lr", "grad_norm", "tokens_per_s", "tokens_seen", "final_loss"} <= set(run.data.metrics)
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert {"config/resolved_config.json", "config/train_plan.json", "config/data_manifest.json"} <= arts
    name = registered_model_name(VARIANT)
    assert res["registered_model"] == name
    mv = client.get_model_version(name, res["model_version"])
    assert mv.run_id == run.info.run_id
    assert mv.tags["data_hash"] == p["data_cache_key"] and mv.tags["git_commit"] == p["git_commit"]


def test_checkpoints_keep_last_k(ddp_run):
    ckpts = sorted(p.name for p in (ddp_run["out"] / "ray" / VARIANT).glob("step-*"))
    assert ckpts == ["step-00000004", "step-00000008"]                      # keep_checkpoints: 2
    state = json.loads((ddp_run["out"] / "ray" / VARIANT / "step-00000008" / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2


def test_export_cli_reproduces_the_run_export(cli, ddp_run, tmp_path):
    r = cli("train", "export", "--run", str(ddp_run["out"]), "--out", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    _assert_same_weights(_weights(tmp_path / "hf"), _weights(ddp_run["out"] / "model"), atol=0.0)
    r = cli("train", "publish", str(tmp_path / "hf"), str(tmp_path / "published"))
    assert r.returncode == 0 and "files verified" in r.stdout, r.stderr


def _snapshot_steps(out: Path) -> list[str]:
    snap = out / "ray" / VARIANT / "checkpoint_manager_snapshot.json"
    try:
        text = snap.read_text()
    except OSError:
        return []
    import re

    return re.findall(r"step-\d{8}", text)


def test_sigkill_then_resume_matches_uninterrupted_run(cli, ddp_run, packed_data, tiny_model, tmp_path,
                                                      mlflow_http_server):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    args = _train_args(packed_data, out, tiny_model, "--checkpoint-every", "2", "--tracking-uri", mlflow_http_server)
    exe = Path(sys.executable).with_name("latxa")
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([str(exe), *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=os.environ.copy())
    deadline = time.time() + 600
    try:
        while not _snapshot_steps(out):
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
    finally:
        # SIGKILL the whole tree at once, as SLURM does with a job's cgroup: the driver, the Ray head (GCS,
        # raylet) and the Ray workers (controller, training workers), which raylet starts in their own sessions.
        import psutil

        tree = [psutil.Process(proc.pid)]
        try:
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not alive, alive                           # nothing of the killed run survives
    saved = _snapshot_steps(out)
    assert not (out / "model").exists()               # it did not finish
    run_file = json.loads((out / "run.json").read_text())
    assert run_file["status"] == "running"

    r = cli(*args, "--resume", timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    res = json.loads(r.stdout[r.stdout.index("{\n"):])
    assert res["resumed"] and res["mlflow_run_id"] == run_file["mlflow_run_id"]   # same MLflow run continues
    resumed_at = int(r.stdout.split("resumed from ")[1].split(" at step ")[1].split("/")[0])
    assert 2 <= resumed_at < STEPS and f"step-{resumed_at:08d}" in saved
    _assert_same_weights(_weights(Path(res["model_dir"])), _weights(ddp_run["out"] / "model"), atol=1e-6)

    client = MlflowClient(tracking_uri=mlflow_http_server)
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags.get("latxa.resumed") == "true"
    assert client.get_model_version(res["registered_model"], res["model_version"]).run_id == run.info.run_id
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.safetensors" in arts                                     # proxied artifact upload


def test_deepspeed_zero3_on_cpu_matches_ddp(cli, ddp_run, packed_data, tiny_model, tmp_path):
    out = tmp_path / "out"
    r = cli(*_train_args(packed_data, out, tiny_model, "--deepspeed-stage", "3", "--checkpoint-every", "8", "--no-track"),
            timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    ckpt = out / "ray" / VARIANT / f"step-{STEPS:08d}"
    shards = sorted(p.name for p in (ckpt / "state").glob("*optim_states.pt"))
    assert len(shards) == 2, shards                                              # one ZeRO partition per rank
    _assert_same_weights(_weights(out / "model"), _weights(ddp_run["out"] / "model"), atol=1e-5)


def test_fsdp_full_shard_on_ray_matches_ddp(cli, ddp_run, packed_data, tiny_model, tmp_path):
    """FSDP2 through Ray Train (2 gloo workers): sharded load, training, DCP checkpoint, streamed export."""
    out = tmp_path / "out"
    r = cli(*_train_args(packed_data, out, tiny_model, "--fsdp", "full_shard", "--checkpoint-every", "8", "--no-track"),
            timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    ckpt = out / "ray" / VARIANT / f"step-{STEPS:08d}"
    assert sorted(p.name for p in (ckpt / "dcp").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert json.loads((ckpt / "trainer_state.json").read_text())["fsdp"] == "full_shard"
    _assert_same_weights(_weights(out / "model"), _weights(ddp_run["out"] / "model"), atol=1e-5)
