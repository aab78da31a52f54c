"""The comparison story end to end: a real sweep (kfp.local, two variants on the tiny model) logging to a real
`mlflow server`, then what a newcomer sees: the KFP outputs of the run, `latxa compare` with no option, and the
MLflow UI in a real Chromium (Playwright, Debian's chromium): the training view, every variant a visible run with
its columns, the chart view with the loss curves across variants.

Screenshots go to test-artifacts/mlflow_ui/; with LATXA_DOC_IMAGES=1 also to docs/img/ (docs/tour.md shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_kfp import run_latxa  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "mlflow_ui"
DOC_IMG = REPO / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VARIANTS = ("exp_2_101", "exp_2_010")
EXPERIMENT = "ui-sweep"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _get(uri: str, endpoint: str, **query) -> dict:
    with urllib.request.urlopen(f"{uri}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as resp:
        return json.loads(resp.read())


def _post(uri: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(uri + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _tags(obj: dict) -> dict:
    return {t["key"]: t["value"] for t in obj.get("data", obj).get("tags", [])}


@pytest.fixture(scope="module")
def sweep(mlflow_server, tiny_model):
    env = {**mlflow_server["env"]}
    res = run_latxa("pipeline", "run", "--variants", ",".join(VARIANTS), "--model", str(tiny_model), "--max-steps", "3",
                    "--eval-limit", "3", "--experiment", EXPERIMENT, "--tracking-uri", mlflow_server["uri"],
                    "--format", "json", env=env, timeout=1500)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["pipeline"] == "sweep" and sorted(r["variant"] for r in out["runs"]) == sorted(VARIANTS)
    uri = mlflow_server["uri"]
    exp = _get(uri, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    runs = _post(uri, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    return {"uri": uri, "env": env, "exp": exp, "runs": runs, "out": out,
            "kfp_root": Path(mlflow_server["env"]["LATXA_HOME"]) / "kfp" / "runs"}


def test_every_variant_is_a_top_level_run_of_its_sweep(sweep):
    by_stage: dict[str, list] = {}
    for run in sweep["runs"]:
        by_stage.setdefault(_tags(run).get("latxa.stage"), []).append(run)
    (sweep_run,) = by_stage["sweep"]
    variants = by_stage["train"]
    assert sorted(r["info"]["run_name"] for r in variants) == sorted(VARIANTS)
    for run in variants:
        tags = _tags(run)
        assert "mlflow.parentRunId" not in tags  # listed by the UI, not hidden under a collapsed parent
        assert tags["latxa.sweep_run"] == sweep_run["info"]["run_id"]
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {"final_loss", "loss", "eval.eu-mini.mean_eu"} <= metrics and tags["paper_name"]
    # evaluations stay nested under their variant run
    evals = by_stage["eval"]
    assert {_tags(e)["mlflow.parentRunId"] for e in evals} == {r["info"]["run_id"] for r in variants}
    # the sweep keeps the comparison table and plot
    files = _get(sweep["uri"], "/api/2.0/mlflow/artifacts/list", run_id=sweep_run["info"]["run_id"], path="compare")
    assert {f["path"] for f in files["files"]} == {"compare/compare.md", "compare/compare.json", "compare/compare.png"}
    exp_tags = {t["key"]: t["value"] for t in sweep["exp"]["tags"]}
    assert exp_tags["mlflow.experimentKind"] == "custom_model_development"
    state = json.loads(json.loads(exp_tags["mlflow.sharedViewState.latxa-study"])["state"])
    assert "metrics.`eval.eu-mini.mean_eu`" in state["selectedColumns"]


def test_the_kfp_run_shows_its_outputs(sweep):
    run_dir = max((d for d in sweep["kfp_root"].iterdir() if d.name.startswith("latxa-sweep-")),
                  key=lambda d: d.stat().st_mtime)
    out = run_dir / "compare-variants"
    table = (out / "table").read_text()
    assert all(f"| {code} |" in table for code in VARIANTS) and "mean EU" in table
    assert "workflowType=machine_learning" in table  # the MLflow link
    page = (out / "page").read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    executor = json.loads((out / "executor_output.json").read_text())
    scores = next(a for a in executor["artifacts"]["scores"]["artifacts"])["metadata"]
    assert set(scores) == {f"{c}.{m}" for c in VARIANTS for m in ("mean_eu", "final_loss")}
    # each variant's evaluation scores are a Metrics artifact of its own evaluate step
    evaluated = [json.loads(p.read_text()) for p in run_dir.glob("for-loop-*/evaluate-model/executor_output.json")]
    assert len(evaluated) == len(VARIANTS)
    assert all("eval.eu-mini.mean_eu" in e["artifacts"]["metrics"]["artifacts"][0]["metadata"] for e in evaluated)


def test_compare_with_no_option_prints_the_table_and_the_mlflow_links(sweep):
    res = run_latxa("compare", "--no-plot", env=sweep["env"])
    assert res.returncode == 0, res.stderr
    assert f"MLflow experiment '{EXPERIMENT}'" in res.stdout
    assert all(code in res.stdout for code in VARIANTS)
    links = [line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("MLflow ")]
    assert len(links) == 2 and all(link.startswith(sweep["uri"] + "/#/experiments/") for link in links)
    sweep["links"] = links


@pytest.fixture(scope="module")
def browser(sweep, chromium):
    return chromium


def _page(browser, height: int = 950):
    ctx = browser.new_context(viewport={"width": 1600, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return ctx, page


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    if os.environ.get("LATXA_DOC_IMAGES") == "1":
        shutil.copy(ARTIFACTS / name, DOC_IMG / name)


def _close_assistant(page) -> None:
    """MLflow 3.17 opens its assistant panel beside the page; close it so the runs get the width."""
    close = page.locator("button[aria-label='Close']")
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)


@pytest.mark.browser
def test_runs_table_lists_the_variants_with_their_columns(sweep, browser):
    from playwright.sync_api import expect

    if "links" not in sweep:
        test_compare_with_no_option_prints_the_table_and_the_mlflow_links(sweep)
    ctx, page = _page(browser)
    try:
        page.goto(sweep["links"][0])
        for code in VARIANTS:
            expect(page.get_by_role("link", name=code, exact=True)).to_be_visible()
        expect(page.get_by_text("Model training", exact=True)).to_be_visible()
        for column in ("paper_name", "final_loss", "tokens_seen"):
            expect(page.get_by_text(column, exact=True).first).to_be_visible()
        expect(page.get_by_text("eval.eu-mini.mean_eu").first).to_be_visible()
        # the evaluations are nested under their variant (collapsed), not listed beside it
        expect(page.get_by_role("link", name=f"eval-eu-mini-{VARIANTS[0]}")).to_have_count(0)
        assert "/runs" in page.url and "traces" not in page.url
        _close_assistant(page)
        _screenshot(page, "mlflow-runs.png")
    finally:
        ctx.close()


@pytest.mark.browser
def test_chart_view_compares_the_loss_curves(sweep, browser):
    from playwright.sync_api import expect

    if "links" not in sweep:
        test_compare_with_no_option_prints_the_table_and_the_mlflow_links(sweep)
    ctx, page = _page(browser, height=1300)  # both chart sections in the screenshot
    try:
        page.goto(sweep["links"][1])
        expect(page.get_by_text("Training: loss curves across variants")).to_be_visible()
        expect(page.get_by_text("Evaluation means and final loss per variant")).to_be_visible()
        for title in ("loss", "lr", "eval.eu-mini.mean_eu", "final_loss"):
            expect(page.get_by_text(title, exact=True).first).to_be_visible()
        expect(page.get_by_text("Model metrics (0)")).to_have_count(0)
        expect(page.locator("svg .scatterlayer .trace").first).to_be_attached()  # plotly drew curves
        _close_assistant(page)
        _screenshot(page, "mlflow-charts.png")
    finally:
        ctx.close()
