"""Models by Hugging Face name, offline: resolution against a stand-in HF_HOME (small random Llamas in the hub cache
layout under the study's real names, a released variant with branches), the one-sentence refusals, `latxa model
fetch`'s argument handling and offline refusal, and `latxa train` taking a name."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from latxa.components.hub import ModelNotFound, cached_models, fetch_model, resolve_model


@pytest.fixture
def hf_env(standin_hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(standin_hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return standin_hf_home


def test_names_and_branches_resolve_offline_to_their_snapshots(hf_env):
    hub = hf_env / "hub"
    base = resolve_model("meta-llama/Llama-3.1-8B")
    assert base.path.parent.parent == hub / "models--meta-llama--Llama-3.1-8B" and base.revision == "main"
    assert base.commit == (hub / "models--meta-llama--Llama-3.1-8B" / "refs" / "main").read_text()
    main = resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct")
    branch = resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_2_101")
    assert branch == resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct", "exp_2_101")
    assert branch.path != main.path and branch.ref == "HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_2_101"
    assert resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct", branch.commit).path == branch.path   # by commit
    assert (branch.path / "model.safetensors").read_bytes() != (main.path / "model.safetensors").read_bytes()
    rows = {(r["name"], r["revision"]): r for r in cached_models()}
    assert rows[("HiTZ/Latxa-Llama-3.1-8B-Instruct", "exp_2_101")]["complete"]
    assert len(rows) == 6


def test_missing_and_incomplete_models_name_the_fetch_command(hf_env, tmp_path):
    with pytest.raises(ModelNotFound) as err:
        resolve_model("meta-llama/Llama-3.1-405B")
    assert "latxa model fetch meta-llama/Llama-3.1-405B" in str(err.value) and str(hf_env / "hub") in str(err.value)
    with pytest.raises(ModelNotFound, match=r"revision exp_9_999 .*cached revisions: exp_2_101, main.*"
                                            r"latxa model fetch HiTZ/Latxa-Llama-3.1-8B-Instruct --revision exp_9_999"):
        resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_9_999")
    with pytest.raises(ModelNotFound, match="names revision main but --revision says exp_2_101"):
        resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct@main", "exp_2_101")
    # a snapshot whose weight shard is missing (an interrupted download) is refused, not loaded half-way
    good = resolve_model("meta-llama/Llama-3.1-8B").path
    broken_home = tmp_path / "hf"
    shutil.copytree(hf_env, broken_home, symlinks=True)
    os.environ["HF_HOME"] = str(broken_home)
    (broken_home / "hub" / good.relative_to(hf_env / "hub") / "model.safetensors").unlink()
    with pytest.raises(ModelNotFound, match=r"incomplete: it lacks weights .*latxa model fetch meta-llama/Llama-3.1-8B"):
        resolve_model("meta-llama/Llama-3.1-8B")
    assert resolve_model("meta-llama/Llama-3.1-8B", weights=False).path.is_dir()    # a tokenizer is enough for data
    with pytest.raises(ModelNotFound, match="is a folder"):
        resolve_model(str(good), "exp_2_101")


def test_fetch_argument_handling_and_offline_refusal(hf_env, monkeypatch, cli):
    with pytest.raises(ModelNotFound, match="not a Hugging Face model name"):
        fetch_model("llama")
    with pytest.raises(ModelNotFound, match="not a branch, tag or commit"):
        fetch_model("meta-llama/Llama-3.1-8B", "bad rev")
    # cached and complete: no network needed, even offline
    assert fetch_model("meta-llama/Llama-3.1-8B").path == resolve_model("meta-llama/Llama-3.1-8B").path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="needs the network, but HF_HUB_OFFLINE is set"):
        fetch_model("meta-llama/Llama-3.1-405B")
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE"):
        fetch_model("meta-llama/Llama-3.1-8B", refresh=True)
    res = cli("model", "fetch", "meta-llama/Llama-3.1-405B", env={"HF_HOME": str(hf_env), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2 and res.stderr.startswith("error: Fetching meta-llama/Llama-3.1-405B needs the network")
    res = cli("model", "path", "HiTZ/Latxa-Llama-3.1-8B-Instruct", "--revision", "exp_2_101", "--format", "json",
              env={"HF_HOME": str(hf_env)})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["path"] == str(resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_2_101").path)
    res = cli("model", "path", "meta-llama/Nope-1B", env={"HF_HOME": str(hf_env)})
    assert res.returncode == 2 and "latxa model fetch meta-llama/Nope-1B" in res.stderr
    for verb in ("fetch", "path", "list", "register"):
        res = cli("model", verb, "--help")
        assert res.returncode == 0 and "Example" in res.stdout


def test_train_plans_from_a_name_and_a_branch(hf_env, tiny_model, latxa_home, tmp_path):
    """`latxa train --model NAME[@rev]` resolves from the cache and records name, revision and commit in the plan."""
    from latxa.components.data import prepare
    from latxa.components.train.plan import TrainConfigError, TrainJob, plan_training

    data = prepare("exp_2_101", tmp_path / "d", tokenizer=tiny_model, num_proc=1, progress=False).out_dir
    plan = plan_training(TrainJob(variant="exp_2_101", data_dir=data, out_dir=tmp_path / "r",
                                  model="HiTZ/Latxa-Llama-3.1-8B-Instruct", revision="exp_2_101", max_steps=2))
    want = resolve_model("HiTZ/Latxa-Llama-3.1-8B-Instruct@exp_2_101")
    assert (plan.model_dir, plan.model_name, plan.model_revision, plan.model_commit) == (
        str(want.path), "HiTZ/Latxa-Llama-3.1-8B-Instruct", "exp_2_101", want.commit)
    with pytest.raises(TrainConfigError, match="latxa model fetch meta-llama/Llama-3.1-405B"):
        plan_training(TrainJob(variant="exp_2_101", data_dir=data, out_dir=tmp_path / "r", model="meta-llama/Llama-3.1-405B"))
