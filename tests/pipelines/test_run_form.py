"""The KFP run form of every compiled pipeline, as a newcomer meets it after uploading the YAML: each parameter has a
description in the IR, "not set" is an optional parameter left empty (never a '' or 0 default that reads as a real
value), every step that receives such a parameter accepts it unset, and each run shows its outputs in the dashboard.
kfp.local runs an unset optional input the way the KFP backend does (the component's default None applies)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

PIPELINES = ("study", "study-slurm", "sweep", "sweep-slurm")
SENTINELS = ("", 0, [], {})
# What the study spells "not set": each must be an optional parameter without a default.
UNSET_BY_DEFAULT = {"data_config", "base_model", "tokenizer", "seq_len", "max_steps", "eval_limit", "tracking_uri"}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, dict]:
    from latxa.pipelines.runner import compile_all

    out = tmp_path_factory.mktemp("ir")
    written = compile_all(out)
    assert set(written) == set(PIPELINES)
    return {name: next(yaml.safe_load_all(path.read_text())) for name, path in written.items()}


def _params(spec: dict) -> dict:
    return spec["root"]["inputDefinitions"]["parameters"]


def test_every_parameter_has_a_description(specs):
    for name, spec in specs.items():
        assert len(spec["pipelineInfo"].get("description", "")) > 40, name
        for key, param in _params(spec).items():
            text = param.get("description", "")
            assert len(text) > 30 and "\n" not in text, (name, key, text)


def test_no_default_is_a_sentinel_and_unset_means_optional(specs):
    for name, spec in specs.items():
        params = _params(spec)
        for key, param in params.items():
            assert param.get("isOptional") is True, (name, key)
            if "defaultValue" in param:
                assert param["defaultValue"] not in SENTINELS, (name, key, param["defaultValue"])
        unset = {k for k, p in params.items() if "defaultValue" not in p}
        assert UNSET_BY_DEFAULT <= unset, (name, UNSET_BY_DEFAULT - unset)
        if name.endswith("slurm"):
            assert "config_path" in unset
        descriptions = {k: params[k]["description"] for k in unset}
        assert all("Leave empty" in d for d in descriptions.values()), descriptions


def test_steps_accept_the_unset_parameters(specs):
    """An unset pipeline parameter reaches a step as nothing: the KFP backend (>= 2.5) then skips the input, which
    only works when the step's own input is optional; its default must be None too, not a sentinel."""
    for name, spec in specs.items():
        unset = {k for k, p in _params(spec).items() if "defaultValue" not in p}
        wired = 0
        dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
        for dag in dags:
            for task_name, task in dag["tasks"].items():
                comp = spec["components"][task["componentRef"]["name"]]
                if "dag" in comp:
                    continue  # a ParallelFor group: the SDK declares its inputs itself
                for arg, value in task.get("inputs", {}).get("parameters", {}).items():
                    source = value.get("componentInputParameter", "").removeprefix("pipelinechannel--")
                    if source in unset:
                        declared = comp["inputDefinitions"]["parameters"][arg]
                        assert declared.get("isOptional") and "defaultValue" not in declared, (name, task_name, arg)
                        wired += 1
        assert wired >= 8, (name, wired)


def test_runs_show_their_outputs_in_the_dashboard(specs):
    for name, spec in specs.items():
        assert "compare-variants" in spec["root"]["dag"]["tasks"], name
        outputs = spec["components"]["comp-compare-variants"]["outputDefinitions"]["artifacts"]
        assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
            "table": "system.Markdown", "page": "system.HTML", "scores": "system.Metrics"}
        # the SLURM pipelines evaluate as a cluster job (slurm-evaluate-model); its scores show the same way
        evaluate = "comp-slurm-evaluate-model" if name.endswith("-slurm") else "comp-evaluate-model"
        ev = spec["components"][evaluate]["outputDefinitions"]["artifacts"]
        assert ev["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"


def test_describe_renders_the_run_form(cli):
    res = cli("pipeline", "describe", "sweep", "--format", "json")
    assert res.returncode == 0, res.stderr
    form = json.loads(res.stdout)
    assert form["pipeline"] == "latxa-sweep"
    fields = {p["name"]: p for p in form["parameters"]}
    assert fields["max_steps"]["label"] == "max_steps - integer" and fields["max_steps"]["prefilled"] == ""
    assert fields["variants"]["label"] == "variants - list"
    assert json.loads(fields["variants"]["prefilled"]) == ["exp_2_101", "exp_2_100"]
    assert "Leave empty" in fields["eval_limit"]["description"]
    md = cli("pipeline", "describe", "study", "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| `max_steps - integer` | (empty) | optional | Cap on optimizer steps" in md.stdout
    assert "| `variant - string` | `exp_2_101` |" in md.stdout
    bad = cli("pipeline", "describe", "nope")
    assert bad.returncode == 2 and "Unknown pipeline 'nope'" in bad.stderr


_LOCAL_RUN = textwrap.dedent('''
    import sys
    from typing import Optional
    from kfp import dsl, local

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def show(steps: Optional[int] = None, uri: Optional[str] = None) -> str:
        return f"{steps!r} {uri!r}"

    @dsl.pipeline(name="unset-optional")
    def pipe(steps: Optional[int] = None, uri: Optional[str] = None, items: list = ["a", "b"]) -> str:
        first = show(steps=steps, uri=uri)
        with dsl.ParallelFor(items) as item:
            show(steps=steps, uri=item).after(first)
        return first.output

    if sys.argv[1] == "shim":
        from latxa.pipelines.runner import local_optional_inputs
        local_optional_inputs()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2], raise_on_error=True)
    print("UNSET=" + pipe().output)
    print("SET=" + pipe(steps=3, uri="http://mlflow:5000").output)
''')


def test_kfp_local_runs_an_unset_optional_input_like_the_backend(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_LOCAL_RUN)
    res = subprocess.run([sys.executable, str(script), "shim", str(tmp_path / "root")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "UNSET=None None" in res.stdout and "SET=3 'http://mlflow:5000'" in res.stdout
    # Without the shim kfp.local (2.17) cannot run it: when this starts passing, kfp.local handles it itself and
    # latxa.pipelines.runner.local_optional_inputs can go.
    plain = subprocess.run([sys.executable, str(script), "plain", str(tmp_path / "root2")], capture_output=True,
                           text=True, timeout=300)
    assert plain.returncode != 0 and "Unknown value type" in plain.stderr, plain.stdout[-2000:] + plain.stderr[-2000:]
