"""`latxa study rehearse` end to end on the real local SLURM cluster: the leonardo-8b and leonardo-70b profiles' own
job chains (prep -> train -> export -> eval -> register, afterok) with smoke overrides, the backbones by their real
Hugging Face names from a stand-in HF_HOME, the data under the production config's real file names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _rehearse(cli, profile, root, hf_home, data_root, *variants, extra=()):
    args = ["study", "rehearse", "--profile", profile, "--hf-home", str(hf_home), "--data-root", str(data_root),
            "--root", str(root), "--eval-limit", "1", "--timeout", "1500", "--format", "json", *extra]
    for v in variants:
        args += ["--variant", v]
    res = cli(*args, timeout=1600)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    return json.loads(res.stdout)


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return MlflowClient(tracking_uri=f"file:{root}/mlruns")


def _check_run(root: Path, run: dict, hf_home: Path, backbone: str, registered: str) -> None:
    """Trained from its own backbone (resolved by name from the stand-in cache), with the held-out loss and the
    evaluation on its MLflow run, registered under its name; the exported tokenizer has the forced template."""
    assert run["status"] == "registered" and run["registered_model"] == registered and run["model_version"] == "1"
    assert run["model_name"] == backbone and run["model_revision"] == "main"
    assert Path(run["model_dir"]).parent.parent == hf_home / "hub" / ("models--" + backbone.replace("/", "--")) / ""
    client = _client(root)
    metrics = client.get_run(run["mlflow_run_id"]).data.metrics
    assert {"eval_loss", "eval_loss.aya_eu", "eval_loss.magpie_ultra_1k", "eval_token_loss.aya_eu"} <= set(metrics)
    assert 0 < metrics["eval_loss"] < 20 and "eval.eu-mini.mean_eu" in metrics
    history = client.get_metric_history(run["mlflow_run_id"], "eval_loss")
    assert len(history) == 2                                          # smoke: 2 evaluations over its 6 steps
    (mv,) = client.search_model_versions(f"name='{registered}'")
    assert mv.run_id == run["mlflow_run_id"]
    tok = json.loads((Path(run["export"]) / "tokenizer_config.json").read_text())
    template = tok.get("chat_template") or (Path(run["export"]) / "chat_template.jinja").read_text()
    assert "Cutting Knowledge Date: December 2023" in template       # Llama-3.1-Instruct's, on every backbone


def test_rehearse_leonardo_8b_sweep_of_three_backbones(slurm_cluster, standin_hf_home, standin_data_root, latxa_home,
                                                        cli, tmp_path):
    root = tmp_path / "r8"
    variants = ["exp_0_010", "exp_1_101", "exp_2_101"]
    out = _rehearse(cli, "leonardo-8b", root, standin_hf_home, standin_data_root, *variants,
                    extra=("--array", "--max-parallel", "2"))
    assert out["ok"] and out["mode"] == "local" and set(out["states"].values()) == {"COMPLETED"}
    jobs = out["chain"]["jobs"]
    assert [j["step"] for j in jobs] == ["prep"] * 3 + ["train"] + ["export", "eval", "register"] * 3
    train = next(j for j in jobs if j["step"] == "train")
    assert train["variants"] == variants and sorted(train["after"]) == sorted(f"prep-{v}" for v in variants)
    assert [j["after"] for j in jobs if j["step"] == "export"] == [[f"{train['name']}_{i}"] for i in range(3)]
    backbones = ["meta-llama/Llama-3.1-8B", "HiTZ/Latxa-Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"]
    for run, code, backbone in zip(out["runs"], variants, backbones, strict=True):
        assert run["variant"] == code and run["run"].endswith(f"/runs/smoke/{code}")
        _check_run(root, run, standin_hf_home, backbone, f"latxa-{code}")
    # the three tasks really trained three different models
    finals = {json.loads(Path(r["run"], "run.json").read_text())["metrics"]["first_loss"] for r in out["runs"]}
    assert len(finals) == 3
    assert not list(root.rglob("*.db")), "no SQLite store in a Leonardo profile's chain"


def test_rehearse_leonardo_70b(slurm_cluster, standin_hf_home, standin_data_root, latxa_home, cli, tmp_path):
    root = tmp_path / "r70"
    out = _rehearse(cli, "leonardo-70b", root, standin_hf_home, standin_data_root)
    assert out["ok"] and out["mode"] == "local"
    assert [j["step"] for j in out["chain"]["jobs"]] == ["prep", "train", "export", "eval", "register"]
    assert set(out["states"].values()) == {"COMPLETED"}
    (run,) = out["runs"]
    # the 70B lands under its own name and folder, trained from the 70B backbone, registered under its own name
    assert run["variant"] == "70b-exp_2_101"
    assert run["run"].endswith("/runs/smoke/Latxa-Llama-3.1-70B-Instruct-exp_2_101")
    assert run["export"].endswith("/models/smoke/Latxa-Llama-3.1-70B-Instruct-exp_2_101")
    _check_run(root, run, standin_hf_home, "meta-llama/Llama-3.1-70B-Instruct", "latxa-70b-exp_2_101")
