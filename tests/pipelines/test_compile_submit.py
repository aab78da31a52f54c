"""Compiled IR YAML loads back in kfp with the right DAG and parameters; submit goes through kfp.Client.

Submission is tested against tests/pipelines/fake_kfp.py, a local fake of the KFP v2beta1 REST API
(Kubeflow itself needs a Kubernetes cluster, which cannot run here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_kfp import FakeKFP, run_latxa  # noqa: E402

CHAIN = ["check-tracking", "prepare-data", "train-variant", "evaluate-model", "register-model"]


def _docs(text: str) -> tuple[dict, dict]:
    """The pipeline spec and the platform spec (kfp-kubernetes settings): two YAML documents."""
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == 2, len(docs)
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _load(path):
    from kfp import components

    comp = components.load_component_from_file(str(path))  # kfp itself must accept the IR
    return comp, _docs(path.read_text())[0]


def _deps(dag: dict) -> dict[str, set[str]]:
    return {name: set(task.get("dependentTasks", [])) for name, task in dag["tasks"].items()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    res = run_latxa("pipeline", "compile", "--out", str(out), "--image", "registry.example.org/latxa:9.9", "--format", "json")
    assert res.returncode == 0, res.stderr
    return {k: Path(v) for k, v in json.loads(res.stdout).items()}


def test_compile_writes_every_pipeline(compiled):
    assert set(compiled) == {"study", "study-slurm", "sweep", "sweep-slurm"}
    for path in compiled.values():
        assert path.is_file() and path.stat().st_size > 1000


def test_study_dag_and_parameters(compiled):
    comp, ir = _load(compiled["study"])
    assert comp.name == "latxa-study"
    deps = _deps(ir["root"]["dag"])
    assert set(deps) == {*CHAIN, "compare-variants"}
    assert deps["compare-variants"] == {"register-model"}
    assert deps["check-tracking"] == set()
    assert deps["prepare-data"] == {"check-tracking"}
    assert deps["train-variant"] == {"prepare-data"}
    assert deps["evaluate-model"] == {"train-variant"}
    assert deps["register-model"] == {"train-variant", "evaluate-model"}
    params = ir["root"]["inputDefinitions"]["parameters"]
    for name in ("variant", "profile", "max_steps", "eval_suite", "experiment", "tracking_uri", "image", "base_model"):
        assert name in params, name
    assert params["variant"]["defaultValue"] == "exp_2_101"
    assert params["image"]["defaultValue"] == "registry.example.org/latxa:9.9"
    # artifacts flow between steps: Dataset -> train, Model -> eval and register, Metrics -> register
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["train-variant"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "dataset", "producerTask": "prepare-data"}
    assert tasks["evaluate-model"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-variant"
    reg_in = tasks["register-model"]["inputs"]["artifacts"]
    assert reg_in["scores"]["taskOutputArtifact"] == {"outputArtifactKey": "metrics", "producerTask": "evaluate-model"}
    # every step runs in the image parameter, and gets the KFP run id / its task name
    for ex in ir["deploymentSpec"]["executors"].values():
        assert ex["container"]["image"] == "{{$.inputs.parameters['pipelinechannel--image']}}"
    reg_params = tasks["register-model"]["inputs"]["parameters"]
    assert reg_params["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert reg_params["kfp_task"]["runtimeValue"]["constant"] == "{{$.pipeline_task_name}}"
    assert reg_params["train_task"]["runtimeValue"]["constant"] == "train-variant"
    assert ir["components"]["comp-train-variant"]["outputDefinitions"]["artifacts"]["model"]["artifactType"][
        "schemaTitle"] == "system.Model"


def test_slurm_pipeline_trains_through_the_bridge(compiled):
    _, ir = _load(compiled["study-slurm"])
    tasks = ir["root"]["dag"]["tasks"]
    assert {"slurm-prepare-data", "slurm-train-model", "slurm-export-model", "slurm-evaluate-model",
            "slurm-register-model"} <= set(tasks) and "train-variant" not in tasks and "prepare-data" not in tasks
    # each SLURM step takes the previous one's artifact: a slurm:// reference to the cluster's files
    assert tasks["slurm-train-model"]["inputs"]["artifacts"]["data"]["taskOutputArtifact"]["producerTask"] == "slurm-prepare-data"
    assert tasks["slurm-export-model"]["inputs"]["artifacts"]["trained"]["taskOutputArtifact"]["producerTask"] == "slurm-train-model"
    assert tasks["slurm-evaluate-model"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "slurm-export-model"
    assert ir["root"]["inputDefinitions"]["parameters"]["profile"]["defaultValue"] == "leonardo-8b"
    assert "cluster" in ir["root"]["inputDefinitions"]["parameters"]


def test_pods_get_the_ssh_secret_and_config_map_the_manifests_create(compiled):
    """kfp-kubernetes settings match k8s/base/kfp: only the SLURM steps (they submit jobs) mount the SSH key."""
    k8s = Path(__file__).resolve().parents[2] / "k8s" / "base" / "kfp"
    manifests = (k8s / "component-template.yaml").read_text() + (k8s / "config.yaml").read_text()
    for name, path in compiled.items():
        spec, executors = _docs(path.read_text())
        assert set(executors) == set(spec["deploymentSpec"]["executors"]), name
        for ex, settings in executors.items():
            (cm,) = settings["configMapAsEnv"]
            assert cm["configMapName"] in manifests and cm["optional"] is True
            assert {e["envVar"] for e in cm["keyToEnv"]} == {"MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE"}
            mounts = settings.get("secretAsVolume", [])
            if ex.startswith("exec-slurm-"):
                assert [(m["secretName"], m["mountPath"]) for m in mounts] == [("latxa-slurm-ssh", "/tmp/.ssh")]
                assert "secretName: latxa-slurm-ssh" in manifests and "mountPath: /tmp/.ssh" in manifests
            else:
                assert mounts == [], (name, ex)
    assert "exec-slurm-train-model" in _docs(compiled["sweep-slurm"].read_text())[1]


def test_sweep_uses_parallelfor(compiled):
    comp, ir = _load(compiled["sweep"])
    root = ir["root"]["dag"]["tasks"]
    loop_name = next(n for n in root if n.startswith("for-loop"))
    assert set(root) == {"start-sweep", loop_name, "compare-variants"}
    loop = root[loop_name]
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("variants")
    assert loop["iteratorPolicy"]["parallelismLimit"] == 1
    inner = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"sweep-run-of", *CHAIN[1:]}
    assert loop["dependentTasks"] == ["start-sweep"]
    # each variant's training is tied to the sweep's run (looked up inside the loop)
    assert inner["train-variant"]["inputs"]["parameters"]["parent_run_id"]["taskOutputParameter"]["producerTask"] == "sweep-run-of"
    # fan-in: the comparison waits for the whole loop (dsl.Collected) and gets the sweep's run
    cmp = root["compare-variants"]
    assert set(cmp["dependentTasks"]) == {loop_name, "start-sweep"}
    assert cmp["inputs"]["parameters"]["registered"]["taskOutputParameter"]["producerTask"] == loop_name
    assert cmp["inputs"]["parameters"]["sweep_run_id"]["taskOutputParameter"]["producerTask"] == "start-sweep"
    _, ir_slurm = _load(compiled["sweep-slurm"])
    loop_s = next(t for n, t in ir_slurm["root"]["dag"]["tasks"].items() if n.startswith("for-loop"))
    assert loop_s["iteratorPolicy"]["parallelismLimit"] == 17
    assert ir["root"]["inputDefinitions"]["parameters"]["variants"]["defaultValue"] == ["exp_2_101", "exp_2_100"]


def test_compile_unknown_pipeline_is_one_sentence(cli, tmp_path):
    res = cli("pipeline", "compile", "--out", str(tmp_path), "--only", "nope")
    assert res.returncode == 2
    assert "Unknown pipeline 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_submit_uploads_and_runs_through_kfp_client(cli):
    with FakeKFP() as fake:
        res = cli("pipeline", "submit", "--host", fake.url, "--variants", "exp_2_101,exp_1_011", "--experiment",
                  "latxa-test", "--tracking-uri", "http://mlflow.mlops:5000", "--max-steps", "7",
                  "--image", "registry.example.org/latxa:1", "--format", "json")
        assert res.returncode == 0, res.stderr + res.stdout
        out = json.loads(res.stdout[res.stdout.index("{"):])
        assert out["pipeline"] == "latxa-sweep"
        run = fake.runs[out["run_id"]]
        params = run["runtime_config"]["parameters"]
        assert params["variants"] == ["exp_2_101", "exp_1_011"]
        assert params["max_steps"] == 7 and params["tracking_uri"] == "http://mlflow.mlops:5000"
        assert run["pipeline_version_reference"]["pipeline_id"] == out["pipeline_id"]
        assert fake.experiments[run["experiment_id"]]["display_name"] == "latxa-test"
        uploaded = _docs(fake.uploads[0]["yaml"])[0]
        assert uploaded["pipelineInfo"]["name"] == "latxa-sweep"
        assert uploaded["root"]["inputDefinitions"]["parameters"]["image"]["defaultValue"] == "registry.example.org/latxa:1"

        # same pipeline again: a new version of it, same experiment; a GPU profile picks the SLURM pipeline
        again = cli("pipeline", "submit", "--host", fake.url, "--variants", "exp_2_101,exp_1_011", "--experiment",
                    "latxa-test", "--format", "json")
        assert again.returncode == 0, again.stderr
        assert [u["kind"] for u in fake.uploads] == ["pipeline", "version"]
        assert len(fake.experiments) == 1
        slurm = cli("pipeline", "submit", "--host", fake.url, "--variants", "exp_2_101", "--profile", "leonardo-8b",
                    "--format", "json")
        assert slurm.returncode == 0, slurm.stderr
        out3 = json.loads(slurm.stdout[slurm.stdout.index("{"):])
        assert out3["pipeline"] == "latxa-study-slurm"
        assert fake.runs[out3["run_id"]]["runtime_config"]["parameters"]["cluster"] == "leonardo"


def test_submit_to_an_unreachable_host_fails_in_one_sentence(cli):
    from latxa.net import free_port

    res = cli("pipeline", "submit", "--host", f"http://127.0.0.1:{free_port()}", "--variants", "exp_2_101", timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "error: Submitting to the KFP endpoint" in res.stderr and "Traceback" not in res.stderr


def test_bad_variant_is_rejected_before_anything_runs(cli):
    res = cli("pipeline", "run", "--variants", "exp_2_101,exp_7_999")
    assert res.returncode == 2
    assert "'exp_7_999' is not a variant code" in res.stderr


def test_baseline_variant_and_missing_model_are_refused_up_front(cli, tmp_path):
    res = cli("pipeline", "run", "--variants", "exp_2_000", env={"LATXA_HOME": str(tmp_path)})
    assert res.returncode == 2
    assert "exp_2_000 is a baseline with no training data" in res.stderr
    res = cli("pipeline", "run", "--model", str(tmp_path / "nope"), "--tracking-uri",
              f"sqlite:///{tmp_path / 'db.sqlite'}", env={"LATXA_HOME": str(tmp_path)})
    assert res.returncode == 2
    assert "is not a model folder; local runs are offline" in res.stderr
    assert not (tmp_path / "kfp").exists()
