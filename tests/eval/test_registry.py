"""The benchmark registry: the study's 29 benchmarks as data, suites, lookups with readable errors."""

from __future__ import annotations

from collections import Counter

import pytest

from latxa.components.eval.errors import EvalError
from latxa.components.eval.registry import default_registry, load_registry


def test_study_has_29_benchmarks_15_eu_10_en_4_es():
    reg = default_registry()
    assert len(reg.study) == 29
    assert Counter(b.language for b in reg.study) == {"eu": 15, "en": 10, "es": 4}
    assert set(b.category for b in reg.study) == set(reg.categories) == {
        "reading_comprehension", "common_sense", "linguistic_proficiency", "knowledge", "math_reasoning", "bias"}


def test_bias_tasks_are_reported_but_not_in_the_mean_and_run_4_shot():
    reg = default_registry()
    bias = {b.task: b for b in reg.study if b.category == "bias"}
    assert set(bias) == {"bbq", "basqbbq"}
    assert all(not b.in_mean and b.num_fewshot == 4 for b in bias.values())
    others = [b for b in reg.study if b.category != "bias"]
    assert all(b.in_mean and b.num_fewshot == 5 for b in others)
    # 14 Basque, 9 English and 4 Spanish tasks make the language means
    assert Counter(b.language for b in others) == {"eu": 14, "en": 9, "es": 4}


def test_metric_keys_mgsm_flexible_extract_and_acc_elsewhere():
    reg = default_registry()
    for b in reg.study:
        if b.task.startswith("mgsm"):
            assert b.metric_keys == ("exact_match,flexible-extract",)
        else:
            assert b.metric_keys[0] == "acc,none"


def test_suites_select_by_language_and_eu_mini_is_offline():
    reg = default_registry()
    assert len(reg.suite("paper").tasks) == 29
    assert [len(reg.suite(s).tasks) for s in ("eu", "en", "es")] == [15, 10, 4]
    mini = reg.suite("eu-mini")
    assert mini.offline and mini.include_path is not None and mini.include_path.is_dir()
    assert mini.tasks == ["eu_mini_eus_trivia", "eu_mini_eus_exams", "eu_mini_qnli", "eu_mini_truthfulqa_mc1"]
    assert reg.suite("eu-mini-gen").tasks[0] == "eu_mini_gen_eus_trivia"
    for b in mini.benchmarks:  # every eu-mini task has its YAML and its shipped data file
        assert (mini.include_path / f"{b.task}.yaml").is_file()
        assert b.data


def test_unknown_task_and_suite_are_one_sentence_with_a_suggestion():
    reg = default_registry()
    with pytest.raises(EvalError, match=r"unknown task 'eus_trivai' \(did you mean 'eus_trivia'\?\)"):
        reg.benchmark("eus_trivai")
    with pytest.raises(EvalError, match=r"unknown suite 'eu-mni'.*eu-mini"):
        reg.suite("eu-mni")


def test_a_registry_with_a_bad_language_names_the_entry(tmp_path):
    bad = tmp_path / "reg.yaml"
    bad.write_text("categories: {knowledge: K}\nlanguages: {eu: Basque}\nstudy:\n  - {task: x, language: fr, category: knowledge}\n")
    with pytest.raises(EvalError, match=r"reg.yaml:study\[0\].*language 'fr'"):
        load_registry(bad)


def test_study_suites_resolve_each_task_to_the_right_definition():
    """lm-eval-sourced tasks come from the lm-eval folder the registry names; ours replace lm-eval's by name."""
    from latxa.components.eval.registry import PAPER_DIR
    from latxa.components.eval.taskdefs import lm_eval_tasks_dir, task_manager

    suite = default_registry().suite("paper")
    tm = task_manager(suite)
    root = lm_eval_tasks_dir()
    for b in suite.benchmarks:
        path = tm.task_index[b.task].yaml_path
        if b.source == "lm-eval":
            assert path.is_relative_to(root / b.lm_eval_folder), b.task
        else:
            assert b.source == "latxa-instruct" and path.is_relative_to(PAPER_DIR), b.task
    # lm-eval 0.4.13's own bbq is a different task, and its eus_exams_eu only a tag: ours win
    assert tm.task_index["bbq"].kind.name == "GROUP" and tm.task_index["eus_exams_eu"].kind.name == "GROUP"


def test_paper_api_is_the_studys_api_protocol():
    api = default_registry().suite("paper-api")
    assert api.generative_mc and api.system_instruction == "Respond always with a single letter: A, B, C or D."
    assert api.tasks == ["belebele_eus_Latn", "bertaqa_eu_global", "bertaqa_eu_local", "eus_proficiency", "eus_reading",
                         "eus_trivia", "eus_exams_eu", "mmlu_eu", "mgsm_native_cot_eu", "mgsm_native_cot_en",
                         "mgsm_native_cot_es"]


def test_an_lm_eval_task_without_its_folder_is_refused(tmp_path):
    bad = tmp_path / "reg.yaml"
    bad.write_text("categories: {knowledge: K}\nlanguages: {eu: Basque}\ndefaults: {source: lm-eval}\n"
                   "study:\n  - {task: x, language: eu, category: knowledge}\n")
    with pytest.raises(EvalError, match=r"reg.yaml:study\[0\]: benchmark 'x' comes from lm-eval but names no lm_eval_folder"):
        load_registry(bad)


def test_eu_mini_data_files_with_hostile_lines_are_one_sentence(cli, tmp_path, tiny_model, monkeypatch, hostile_json,
                                                                one_sentence):
    """eu_mini_utils._read: a 100,000-deep line or a 5000-digit integer was a RecursionError / ValueError traceback
    out of `latxa eval run --suite eu-mini`; a syntax error is one sentence too, naming the column."""
    import re
    import shutil

    from latxa.components.eval.tasks.eu_mini import eu_mini_utils
    from latxa.paths import SAMPLE_DATA

    data = tmp_path / "benchmarks"
    shutil.copytree(SAMPLE_DATA / "benchmarks", data)
    monkeypatch.setenv("LATXA_EVAL_DATA", str(data))
    path = data / "qnli_eu.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    cases = {**hostile_json, '{"question": 1,}': "malformed JSON (Expecting property name enclosed in double quotes "
                                                  "at column 16)"}
    for line, reason in cases.items():
        path.write_text("\n".join(rows[:1] + [line] + rows[1:]) + "\n", encoding="utf-8")
        with pytest.raises(EvalError, match=rf"qnli_eu.jsonl:2: .*{re.escape(reason)}"):
            eu_mini_utils.load_qnli()
    path.write_text("\n".join(rows[:1] + ["[" * 100_000] + rows[1:]) + "\n", encoding="utf-8")
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "eu-mini", "--task", "eu_mini_qnli", "--limit", "1",
              "--out", str(tmp_path / "o"))     # through lm-eval's task loading
    one_sentence(res.returncode, res.stderr, f"{path}:2", "nested deeper than 64 levels")
