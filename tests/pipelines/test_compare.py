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
