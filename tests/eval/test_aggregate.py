"""Aggregation of lm-eval results JSON into the study's tables, checked against the reference results.

Expected means were computed by hand from ../shared/data/latxa_instruct/evaluation/benchmarks/results
(a separate script: acc,none or exact_match,flexible-extract, x100, mean over the registered tasks) and
cross-checked against the paper's published tables (figures/benchmark-full-{eu,en,es}.tex).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from latxa.components.eval.aggregate import aggregate, read_results_file
from latxa.components.eval.errors import EvalError
from latxa.components.eval.tables import render

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO.parent / "shared" / "data" / "latxa_instruct" / "evaluation" / "benchmarks" / "results"
needs_results = pytest.mark.skipif(not RESULTS.is_dir(), reason=f"reference results not found at {RESULTS}")

# model folder -> ((EU mean, n), (EN mean, n), (ES mean, n)), by hand / the paper
EXPECTED = {
    "HiTZ__Latxa-Llama-3.1-70B-Instruct": ((76.51, 14), (82.94, 9), (84.47, 4)),
    "meta-llama__Llama-3.1-70B-Instruct": ((67.61, 14), (81.74, 9), (85.39, 4)),
    "HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101": ((64.19, 14), (72.94, 9), (72.65, 4)),
    "meta-llama__Llama-3.1-8B-Instruct": ((51.82, 14), (75.84, 9), (76.79, 4)),
    "HiTZ__Latxa-Llama-3.1-8B": ((61.42, 14), (70.73, 9), (64.16, 4)),       # bertaqa run as a group file
    "HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_0_010": ((52.93, 14), (71.23, 9), (67.74, 4)),
    "gpt-4o-2024-11-20": ((81.74, 8), (85.20, 1), (80.80, 1)),                # API: generative exact_match
    "claude-3-5-sonnet-20241022": ((85.61, 7), (93.60, 1), (88.80, 1)),
}


@pytest.fixture(scope="module")
def paper() -> dict:
    if not RESULTS.is_dir():
        pytest.skip(f"reference results not found at {RESULTS}")
    return aggregate([RESULTS])


@needs_results
def test_reproduces_the_papers_language_means_and_coverage(paper):
    assert len(paper["models"]) == 24
    for model, expected in EXPECTED.items():
        got = paper["models"][model]
        for lang, (mean, n) in zip(("eu", "en", "es"), expected, strict=True):
            assert round(got["languages"][lang], 2) == pytest.approx(mean, abs=1e-9), (model, lang)
            assert got["coverage"][lang]["tasks"] == n, (model, lang)
    assert paper["models"]["gpt-4o-2024-11-20"]["coverage"]["eu"] == {"tasks": 8, "of": 14}


@needs_results
def test_task_scores_use_the_right_metric_in_percent_and_bias_is_reported_not_averaged(paper):
    m = paper["models"]["HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101"]
    # MGSM: flexible-extract (0.54), not strict-match; percent scaling
    assert m["tasks"]["mgsm_native_cot_eu"] == pytest.approx(54.0)
    assert m["metric_keys"]["mgsm_native_cot_eu"] == "exact_match,flexible-extract"
    assert "basqbbq" in m["tasks"] and "bbq" in m["tasks"]
    eu_in_mean = [t for t in m["tasks"] if t.endswith("_eu") or t in (
        "belebele_eus_Latn", "eus_reading", "eus_exams_eu", "eus_trivia", "eus_proficiency", "bl2mp",
        "bertaqa_eu_global", "bertaqa_eu_local", "arc_eu_challenge", "arc_eu_easy")]
    assert len(eu_in_mean) == 14
    assert m["languages"]["eu"] == pytest.approx(sum(m["tasks"][t] for t in eu_in_mean) / 14)
    big = paper["models"]["HiTZ__Latxa-Llama-3.1-70B-Instruct"]
    assert big["tasks"]["bbq"] == pytest.approx(94.38033915593523)
    assert big["extra"]["bbq"]["bias,none"] == pytest.approx(-4.3996415110346625)
    assert big["categories"]["bias"] == pytest.approx((big["tasks"]["bbq"] + big["tasks"]["basqbbq"]) / 2)
    gpt = paper["models"]["gpt-4o-2024-11-20"]
    assert gpt["metric_keys"]["eus_trivia"] == "exact_match,strict_match"
    assert any(n.startswith("eus_exams_eu:") for n in gpt["notes"])  # the group without a score is reported


@needs_results
def test_ranks_and_partial_coverage_are_explicit(paper):
    ranks = {name: m["ranks"]["eu"] for name, m in paper["models"].items()}
    assert ranks["claude-3-5-sonnet-20241022"] == 1 and ranks["gpt-4o-2024-11-20"] == 2
    assert ranks["HiTZ__Latxa-Llama-3.1-70B-Instruct"] == 3
    assert ranks["meta-llama__Llama-3.1-8B"] == 24
    md = render(paper, "md")
    assert "81.74 (8/14)" in md and "76.51 (14/14)" in md


def _copy_model(tmp_path: Path, model: str, pick) -> Path:
    root = tmp_path / "runs"
    dest = root / model
    dest.mkdir(parents=True)
    for f in sorted((RESULTS / model).glob("results_*.json")):
        if pick(read_results_file(f)):
            shutil.copy(f, dest / f.name)
    return root


@needs_results
def test_fill_groups_recomputes_lm_evals_own_group_score(tmp_path):
    """Strip the group score lm-eval wrote for eus_exams_eu; the size-weighted mean of its subtasks gives it back."""
    model = "meta-llama__Llama-3.1-8B-Instruct"
    root = _copy_model(tmp_path, model, lambda d: "eus_exams_eu" in d["results"])
    (f,) = list((root / model).glob("*.json"))
    data = json.loads(f.read_text())
    original = data["results"]["eus_exams_eu"]["acc,none"] * 100
    for group in data["group_subtasks"]:
        data["results"][group] = {"alias": group}
    f.write_text(json.dumps(data))
    plain = aggregate([root], suite="eu")["models"][model]
    assert "eus_exams_eu" not in plain["tasks"] and plain["coverage"]["eu"]["tasks"] == 0
    filled = aggregate([root], suite="eu", fill_groups=True)["models"][model]
    assert filled["tasks"]["eus_exams_eu"] == pytest.approx(original, abs=1e-9)
    assert "29 subtasks" in filled["metric_keys"]["eus_exams_eu"]


def _write(path: Path, task: str, acc: float | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {"alias": task} if acc is None else {"alias": task, "acc,none": acc}
    path.write_text(json.dumps({"results": {task: metrics}, "group_subtasks": {task: []}, "n-shot": {task: 5}}))


def test_later_files_win_but_a_later_entry_without_a_score_does_not_erase(tmp_path):
    m = tmp_path / "res" / "m1"
    _write(m / "results_2025-01-01T00-00-00.json", "eus_trivia", 0.40)
    _write(m / "results_2025-02-01T00-00-00.json", "eus_trivia", 0.55)
    _write(m / "results_2025-03-01T00-00-00.json", "eus_trivia", None)
    _write(m / "results_2025-01-15T00-00-00.json", "piqa_eu", 0.70)
    _write(m / "results_2025-01-20T00-00-00.json", "openbookqa_es", 0.30)
    got = aggregate([tmp_path / "res"], suite="eu")["models"]["m1"]
    assert got["tasks"] == {"eus_trivia": pytest.approx(55.0), "piqa_eu": pytest.approx(70.0)}
    assert got["languages"]["eu"] == pytest.approx(62.5)
    assert got["coverage"]["eu"] == {"tasks": 2, "of": 14}
    assert got["unregistered_tasks"] == ["openbookqa_es"]  # reported, not dropped silently
    assert got["files_read"] == 5


def test_a_file_that_is_not_lm_eval_json_is_named(tmp_path):
    m = tmp_path / "res" / "m1"
    _write(m / "results_2025-01-01T00-00-00.json", "eus_trivia", 0.4)
    (m / "results_2025-02-01T00-00-00.json").write_text('{"accuracy": 0.5}\n')
    with pytest.raises(EvalError, match=r"results_2025-02-01T00-00-00.json:1: not lm-eval results JSON"):
        aggregate([tmp_path / "res"])
    (m / "results_2025-02-01T00-00-00.json").write_text('{"results": {"x": 1}\n')
    with pytest.raises(EvalError, match=r"results_2025-02-01T00-00-00.json:1: not lm-eval results JSON: malformed JSON "
                                        r"\(Expecting ',' delimiter at column 21\)\.$"):
        aggregate([tmp_path / "res"])


def test_hostile_results_files_are_one_sentence(tmp_path, cli, hostile_json, one_sentence):
    """A results file nested 100,000 deep or with a 5000-digit integer was a RecursionError / ValueError traceback
    out of `latxa eval aggregate`."""
    m = tmp_path / "res" / "m1"
    _write(m / "results_2025-01-01T00-00-00.json", "eus_trivia", 0.4)
    bad = m / "results_2025-02-01T00-00-00.json"
    for text, reason in hostile_json.items():
        bad.write_text(text)
        with pytest.raises(EvalError, match=rf"results_2025-02-01T00-00-00.json:1: not lm-eval results JSON: .*{reason}"):
            aggregate([tmp_path / "res"])
    res = cli("eval", "aggregate", str(tmp_path / "res"))
    one_sentence(res.returncode, res.stderr, f"{bad}:1", "integer with more than")


def test_formats_agree_with_the_json(tmp_path):
    m = tmp_path / "res" / "model_a"
    _write(m / "results_2025-01-01T00-00-00.json", "eus_trivia", 0.4)
    _write(m / "results_2025-01-02T00-00-00.json", "mmlu_en", 0.6)
    agg = aggregate([tmp_path / "res"])
    rows = list(csv.DictReader(io.StringIO(render(agg, "csv"))))
    by = {(r["kind"], r["name"]): r for r in rows}
    assert float(by[("task", "eus_trivia")]["score"]) == pytest.approx(40.0)
    assert float(by[("language_mean", "en")]["score"]) == pytest.approx(60.0)
    assert by[("language_mean", "eu")]["tasks_covered"] == "1" and by[("language_mean", "eu")]["tasks_total"] == "14"
    assert by[("language_mean", "es")]["score"] == ""  # no Spanish task: empty, not 0
    tex = render(agg, "latex")
    assert r"\begin{tabular}" in tex and r"model\_a" in tex and "40.00" in tex and "NaN" in tex
    data = json.loads(render(agg, "json"))
    assert data["models"]["model_a"]["languages"] == {"eu": 40.0, "en": 60.0, "es": None}
    with pytest.raises(EvalError, match="unknown format"):
        render(agg, "xlsx")


def test_plots_are_pngs(tmp_path):
    from latxa.components.eval.plots import plot_all

    m = tmp_path / "res" / "model_a"
    _write(m / "results_2025-01-01T00-00-00.json", "eus_trivia", 0.4)
    for png in plot_all(aggregate([tmp_path / "res"]), tmp_path / "plots"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@needs_results
def test_cli_aggregate_json_and_bad_input(cli, tmp_path):
    res = cli("eval", "aggregate", str(RESULTS), "--format", "json", "--plots", str(tmp_path / "plots"))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    exp = data["models"]["HiTZ__Latxa-Llama-3.1-8B-Instruct__exp_2_101"]
    assert set(exp) >= {"languages", "categories", "tasks"}
    assert round(exp["languages"]["eu"], 2) == 64.19
    assert (tmp_path / "plots" / "languages.png").is_file()
    bad = tmp_path / "bad" / "m"
    bad.mkdir(parents=True)
    (bad / "results_x.json").write_text("[1, 2]")
    res = cli("eval", "aggregate", str(tmp_path / "bad"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: ") and "not lm-eval results JSON" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
