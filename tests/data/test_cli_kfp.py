"""End to end: the `latxa data` verbs in a subprocess, and the KFP component under kfp.local.

No `from __future__ import annotations` here: KFP reads the pipeline's annotations as types.
"""

import json

import pytest


@pytest.mark.slow
def test_cli_prepare_show_and_cache_hit(cli, tiny_model, latxa_home, tmp_path):
    out = tmp_path / "exp_2_101"
    r = cli("data", "prepare", "--variant", "exp_2_101", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "prepared:" in r.stdout and "prepare exp_2_101" in r.stderr  # progress bar on stderr
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seq_len"] == 256 and manifest["tokenizer"] == str(tiny_model.resolve())
    assert sorted(stats["tokens_per_source"]) == ["corpus_eu", "inst_en"]
    assert stats["read"] == stats["written"] + stats["skipped"] == 508 + 65
    r = cli("data", "prepare", "--variant", "exp_2_101", "--out", str(out), "--quiet")
    assert r.returncode == 0 and r.stdout.startswith("cache hit:") and stats["cache_key"] in r.stdout
    r = cli("data", "show", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["stats"]["rows"] == stats["rows"]


@pytest.mark.slow
def test_cli_bad_record_is_one_sentence_with_file_line(cli, tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
                   '{"conversations": [{"role": "user", "content": "only a question"}]}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources:\n  inst_en: {{kind: chat, files: ['{bad}']}}\n")
    r = cli("data", "prepare", "--variant", "exp_0_001", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {bad}:2: conversation has no assistant turn (use --on-error skip to skip bad records)."
    assert not (tmp_path / "o").exists()


def test_cli_help_has_examples_and_usage_errors_exit_nonzero():
    from typer.testing import CliRunner

    from latxa.cli.app import app

    runner = CliRunner()
    for verb in ("prepare", "show"):
        r = runner.invoke(app, ["data", verb, "--help"])
        assert r.exit_code == 0 and "Example:" in r.output and f"latxa data {verb}" in r.output
    r = runner.invoke(app, ["data", "prepare", "--out", "/tmp/x"])  # --variant missing
    assert r.exit_code != 0 and "--variant" in r.output
    r = runner.invoke(app, ["data", "prepare", "--variant", "exp_2_101", "--out", "/tmp/x", "--on-error", "ignore"])
    assert r.exit_code != 0 and "ignore" in r.output


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # kfp warns on non-"python" image names
def test_kfp_component_runs_under_kfp_local(tiny_model, latxa_home, tmp_path):
    from kfp import dsl, local
    from kfp.dsl import Model

    from latxa.pipelines.runner import local_optional_inputs
    from latxa.pipelines.steps import IMAGE, prepare_data

    local_optional_inputs()  # as `latxa pipeline run` does: unset optional inputs stay unset (kfp.local refuses None)
    assert IMAGE and prepare_data.component_spec.implementation.container.image == IMAGE
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))

    @dsl.pipeline
    def prep(tokenizer_uri: str):
        tok = dsl.importer(artifact_uri=tokenizer_uri, artifact_class=Model, reimport=False)
        prepare_data(variant="exp_0_011", tokenizer=tok.output, use_cache=False)

    run = prep(tokenizer_uri=str(tiny_model))
    assert run is not None  # kfp.local raises on task failure
    produced = list((tmp_path / "root").rglob("manifest.json"))
    assert len(produced) == 1
    ds_dir = produced[0].parent
    manifest = json.loads(produced[0].read_text())
    stats = json.loads((ds_dir / "stats.json").read_text())
    assert manifest["variant"] == "exp_0_011" and manifest["tokenizer"] == str(tiny_model.resolve())
    assert sorted(stats["tokens_per_source"]) == ["inst_en", "inst_eu"]
    executor_out = json.loads((ds_dir.parent / "executor_output.json").read_text())
    metrics = executor_out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["read"] == stats["read"] == 656 + 65 and metrics["packing_efficiency"] >= 0.99
