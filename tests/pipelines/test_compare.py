"""`latxa compare` reads variant runs back from MLflow (a real SQLite store) and prints/plots them side by side."""

from __future__ import annotations

import json
import time

import pytest


@pytest.fixture(scope="module")
def store(tmp_path_factory, latxa_home):
    """Three variant runs (one re-run: only the newest counts), an eval nested run and a sweep run."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from latxa.components import tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('cmp') / 'mlflow.db'}"
    exp = tracking.ensure_experiment("cmp-test", uri)
    client = MlflowClient(uri)
    now = int(time.time() * 1000)

    def variant_run(code, loss, eu, tokens, start):
        run = client.create_run(exp, run_name=code, start_time=start,
                                tags={**tracking.variant_tags(code), tracking.TAG_STAGE: "train"})
        client.log_batch(run.info.run_id, metrics=[
            Metric("loss", loss + 1, now, 1), Metric("loss", loss, now, 2),
            Metric(tracking.METRIC_FINAL_LOSS, loss, now, 2), Metric(tracking.METRIC_TOKENS_SEEN, tokens, now, 2),
            Metric(tracking.eval_mean_metric("eu-mini", "eu"), eu, now, 0),
            Metric(tracking.eval_task_metric("eu-mini", "eu_mini_qnli"), eu, now, 0)])
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    variant_run("exp_2_101", 9.0, 10.0, 1, now - 5000)          # older run of the same variant: ignored
    newest = variant_run("exp_2_101", 2.5, 41.25, 12345, now)
    variant_run("exp_2_010", 3.0, 38.0, 2222, now - 1000)
    variant_run("exp_0_011", 3.5, 30.5, 3333, now - 2000)
    ev = client.create_run(exp, run_name="eval", tags={**tracking.variant_tags("exp_2_101"), tracking.TAG_STAGE: "eval",
                                                       "mlflow.parentRunId": newest})
    client.log_metric(ev.info.run_id, tracking.eval_mean_metric("eu-mini", "eu"), 99.0)
    client.create_run(exp, run_name="sweep", tags={tracking.TAG_STAGE: "sweep", tracking.TAG_SWEEP: "x"})
    return uri, newest


def test_json_rows_per_variant(store, cli, tmp_path):
    uri, newest = store
    plot = tmp_path / "cmp.png"
    res = cli("compare", "--experiment", "cmp-test", "--tracking-uri", uri, "--format", "json", "--plot", str(plot))
    assert res.returncode == 0, res.stderr
    rows = {r["variant"]: r for r in json.loads(res.stdout)["variants"]}
    assert sorted(rows) == ["exp_0_011", "exp_2_010", "exp_2_101"]
    best = rows["exp_2_101"]
    assert best["run_id"] == newest and best["final_loss"] == 2.5 and best["tokens_seen"] == 12345
    assert best["means"] == {"eu": 41.25} and best["suite"] == "eu-mini"
    assert (best["corpus_eu"], best["inst_eu"], best["inst_en"]) == ("1", "0", "1")
    assert rows["exp_0_011"]["backbone"] == "BASE_EN"
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_and_table(store, cli):
    uri, _ = store
    md = cli("compare", "--experiment", "cmp-test", "--tracking-uri", uri, "--format", "md", "--no-plot")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.strip().splitlines()
    assert lines[0].startswith("| variant | paper name | C_EU | I_EU | I_EN | mean EU | final loss | tokens seen |")
    assert len(lines) == 2 + 3
    assert "| exp_2_101 | INST_EN C_EU I_EN | 1 | 0 | 1 | 41.25 | 2.5000 | 12,345 | FINISHED |" in md.stdout


def test_rich_table_in_process(store, capsys):
    from latxa.pipelines import compare

    uri, _ = store
    compare.print_table(compare.collect("cmp-test", uri))
    out = capsys.readouterr().out
    assert "exp_2_010" in out and "38.00" in out and "mean EU" in out


def test_unknown_experiment_is_one_sentence(store, cli):
    uri, _ = store
    res = cli("compare", "--experiment", "nope", "--tracking-uri", uri)
    assert res.returncode == 2
    assert "No MLflow experiment named 'nope'" in res.stderr and "cmp-test" in res.stderr


def test_compare_without_experiment_reads_the_last_runs(store, cli, tmp_path):
    """`make demo && latxa compare`: the demo writes to its own experiment; compare with no option must find it."""
    from latxa.components import tracking

    uri, newest = store
    tracking.ensure_experiment("cmp-test", uri)  # what every run does when it opens its experiment
    res = cli("compare", "--format", "json", "--no-plot")
    assert res.returncode == 0, res.stderr
    assert {r["variant"] for r in json.loads(res.stdout)["variants"]} == {"exp_0_011", "exp_2_010", "exp_2_101"}
    table = cli("compare", "--no-plot")
    assert table.returncode == 0, table.stderr
    assert "MLflow experiment 'cmp-test'" in table.stdout and "exp_2_101" in table.stdout
    # a record whose experiment is gone says where the name came from
    other = tmp_path / "other.db"
    tracking.ensure_experiment("gone-later", f"sqlite:///{other}")
    other.unlink()
    missing = cli("compare", "--tracking-uri", uri)
    assert missing.returncode == 2
    assert "No MLflow experiment named 'gone-later' (the experiment of the last run" in missing.stderr
    tracking.ensure_experiment("cmp-test", uri)


def test_only_the_runs_of_one_kfp_run(store):
    from mlflow.tracking import MlflowClient

    from latxa.components import tracking
    from latxa.pipelines import compare

    uri, newest = store
    client = MlflowClient(uri)
    client.set_tag(newest, tracking.TAG_KFP_RUN, "kfp-run-1")
    rows = compare.collect("cmp-test", uri, kfp_run_id="kfp-run-1")
    assert [r["run_id"] for r in rows] == [newest]
    with pytest.raises(compare.CompareError, match="no variant runs from KFP run kfp-run-2"):
        compare.collect("cmp-test", uri, kfp_run_id="kfp-run-2")


def test_experiment_opens_as_a_training_study(store):
    """MLflow 3's UI: the experiment is tagged as model training and carries the study's saved view (columns for
    paper name, eval means, final loss; the loss curves first in the chart view); the link opens it."""
    from mlflow.tracking import MlflowClient

    from latxa.components import tracking

    uri, _ = store
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("cmp-test")
    assert exp.tags[tracking.TAG_EXPERIMENT_KIND] == "custom_model_development"
    assert "latxa compare" in exp.tags["mlflow.note.content"]
    assert tracking.refresh_study_view("cmp-test", uri) in (True, False)
    envelope = json.loads(client.get_experiment(exp.experiment_id).tags["mlflow.sharedViewState.latxa-study"])
    assert envelope["name"] == tracking.STUDY_VIEW_NAME and envelope["createdAt"] <= envelope["updatedAt"]
    state = json.loads(envelope["state"])
    assert state["selectedColumns"][:1] == ["tags.`paper_name`"]
    assert {"metrics.`eval.eu-mini.mean_eu`", "metrics.`final_loss`"} <= set(state["selectedColumns"])
    assert state["orderByKey"] == "attributes.start_time" and state["runsHiddenMode"] == "SHOW_ALL"
    first = state["compareRunCharts"][0]
    assert (first["type"], first["metricKey"], first["metricSectionId"]) == ("LINE", "loss", state["compareRunSections"][0]["uuid"])
    assert not tracking.refresh_study_view("cmp-test", uri)  # unchanged: the tag is not rewritten
    assert tracking.experiment_url(uri, exp.experiment_id) is None  # SQLite has no UI
    assert tracking.experiment_url("http://127.0.0.1:5000", "7", charts=True) == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=latxa-study"
        "&compareRunsMode=CHART")
