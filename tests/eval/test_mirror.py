"""The offline dataset mirror: `latxa eval fetch` writes what a suite reads (hub datasets from a local stand-in
of the hub, the bias data copied in, piqa fetched from baber/piqa), `latxa eval run --datasets` reads it back,
and a missing dataset, split, bias folder or a broken row is one sentence naming it (and the fetch command)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mirror_data import bias_files, dataset_files, write_bias, write_jsonl


def _hub_standin(root: Path) -> Path:
    """Dataset repositories as they are on the hub, for the fetch source: HiTZ/BertaQA with its two configs
    declared in the README (as the hub card does), baber/piqa as plain split files."""
    files = dataset_files()
    bertaqa = root / "HiTZ" / "BertaQA"
    for lang in ("eu", "en"):
        write_jsonl(bertaqa / "data" / f"bertaqa_{lang}.jsonl", files[f"HiTZ/BertaQA/{lang}/test.jsonl"])
    (bertaqa / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: eu\n  data_files:\n  - split: test\n    path: data/bertaqa_eu.jsonl\n"
        "- config_name: en\n  data_files:\n  - split: test\n    path: data/bertaqa_en.jsonl\n---\n# BertaQA\n")
    for split in ("train", "validation", "test"):
        write_jsonl(root / "baber" / "piqa" / f"{split}.jsonl", files[f"piqa/default/{split}.jsonl"])
    return root


@pytest.mark.slow
def test_fetch_mirrors_the_datasets_reports_the_bias_data_and_a_run_reads_it(cli, tmp_path, tiny_model):
    source = _hub_standin(tmp_path / "hub")
    mirror = tmp_path / "mirror"
    args = ["eval", "fetch", "--suite", "paper", "--task", "bertaqa_eu_global", "--task", "piqa", "--task", "bbq",
            "--from", str(source), "--to", str(mirror), "--format", "json"]
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["needed"] == 2 + 18 and report["fetched"] == 2 and len(report["skipped"]) == 18  # in = out + skips
    assert all("not public" in s["reason"] for s in report["skipped"])
    assert (mirror / "HiTZ" / "BertaQA" / "eu" / "test.jsonl").is_file()
    assert not (mirror / "HiTZ" / "BertaQA" / "en").exists()           # only what the chosen tasks read
    rows = {d["path"]: d for d in report["datasets"]}
    assert rows["piqa"]["rows"] == {"train": 7, "validation": 7, "test": 7}
    assert rows["piqa"]["fetched_from"].endswith("baber/piqa")           # the recorded id, filed from its parquet copy
    assert (mirror / "piqa" / "default" / "validation.jsonl").is_file()
    manifest = json.loads((mirror / "mirror.json").read_text())
    assert manifest["fetched"] == 2 and manifest["suite"] == "paper"

    bias = write_bias(tmp_path / "bias")
    res = cli(*args, "--bias-data", str(bias))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["fetched"] == 20
    assert (mirror / "json" / "bbq" / "fewshot" / "noAdin_4s.jsonl").read_text() == \
        (bias / "bbq" / "fewshot" / "noAdin_4s.jsonl").read_text()

    out = tmp_path / "out"
    res = cli("eval", "run", "--model", str(tiny_model), "--kind", "base", "--suite", "paper", "--task", "bertaqa_eu_global",
              "--task", "piqa", "--task", "bbq", "--datasets", str(mirror), "--limit", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = [json.loads(p.read_text()) for p in (out / "tiny").glob("results_*.json")]
    assert sorted(d["latxa"]["task"] for d in data) == ["bbq", "bertaqa_eu_global", "piqa"]
    assert all(d["latxa"]["datasets"]["mirror"] == str(mirror) for d in data)


def test_fetch_refuses_a_dataset_without_a_needed_split(cli, tmp_path):
    source = _hub_standin(tmp_path / "hub")
    (source / "baber" / "piqa" / "validation.jsonl").unlink()
    res = cli("eval", "fetch", "--suite", "paper", "--task", "piqa", "--from", str(source), "--to", str(tmp_path / "m"))
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]   # after the progress lines
    assert line.startswith("error: dataset piqa from ") and line.endswith("has no split(s) validation (it has train, test; needed by piqa).")
    assert not (tmp_path / "m" / "piqa").exists()


@pytest.fixture
def small_mirror(tmp_path) -> Path:
    root = tmp_path / "mirror"
    for rel, rows in dataset_files().items():
        if rel.startswith(("HiTZ/BertaQA/", "orai-nlp/MMLU_HT_eu_sample/")):
            write_jsonl(root / rel, rows)
    return root


def test_a_dataset_missing_from_the_mirror_is_one_sentence_with_the_fetch_command(cli, tmp_path, tiny_model, small_mirror):
    shutil.rmtree(small_mirror / "HiTZ" / "BertaQA" / "eu")
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "paper", "--task", "mmlu_eu", "--task",
              "bertaqa_eu_local", "--datasets", str(small_mirror), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"error: dataset HiTZ/BertaQA (config eu) split 'test' is not in the mirror {small_mirror} (needed by "
        f"bertaqa_eu_local): run `latxa eval fetch --suite paper --to {small_mirror}` where there is internet.")
    assert not (tmp_path / "o").exists()     # checked before any model is loaded or file written


def test_missing_bias_data_is_one_sentence(cli, tmp_path, tiny_model, small_mirror):
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "en", "--task", "bbq", "--datasets", str(small_mirror),
              "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.startswith("error: bbq needs its data files, which are not public: set --bias-data (or LATXA_BIAS_DATA)")
    assert "bbq/bbq/data/Age_ambig.jsonl" in line and len(line.splitlines()) == 1
    bias = tmp_path / "bias"
    for rel, rows in bias_files().items():
        if rel != "bbq/fewshot/noMSE_4s.jsonl":
            write_jsonl(bias / rel, rows)
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "en", "--task", "bbq", "--datasets", str(small_mirror),
              "--bias-data", str(bias), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bias}/bbq/fewshot/noMSE_4s.jsonl: bias data file not found (needed by bbq_SES_ambig)."


def test_a_broken_row_names_file_and_line(cli, tmp_path, tiny_model, small_mirror):
    path = small_mirror / "orai-nlp" / "MMLU_HT_eu_sample" / "eu" / "test.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"question": "cut short'
    path.write_text("\n".join(lines) + "\n")
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "eu", "--task", "mmlu_eu", "--datasets",
              str(small_mirror), "--limit", "1", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == \
        f"error: {path}:3: malformed JSON (Unterminated string starting at column 14)."


def test_a_hostile_bias_row_is_one_sentence(cli, tmp_path, hostile_json, one_sentence):
    """mirror.read_jsonl: a 100,000-deep row or a 5000-digit integer in a bias file was a RecursionError /
    ValueError traceback out of `latxa eval fetch` (it counts each copied file's rows)."""
    bias = write_bias(tmp_path / "bias")
    path = bias / "bbq" / "fewshot" / "noMSE_4s.jsonl"
    rows = path.read_text().splitlines()
    for line, reason in hostile_json.items():
        path.write_text("\n".join(rows + [line]) + "\n")
        res = cli("eval", "fetch", "--suite", "paper", "--task", "bbq", "--to", str(tmp_path / "m"),
                  "--bias-data", str(bias))
        one_sentence(res.returncode, res.stderr, f"{bias}/bbq/fewshot/noMSE_4s.jsonl:{len(rows) + 1}", reason)


def test_without_a_mirror_a_dataset_missing_from_the_hf_cache_is_one_sentence(cli, tmp_path, tiny_model):
    res = cli("eval", "run", "--model", str(tiny_model), "--suite", "eu", "--task", "mmlu_eu", "--limit", "1",
              "--out", str(tmp_path / "o"), env={"HF_HOME": str(tmp_path / "empty-hf"), "LATXA_EVAL_DATASETS": ""})
    assert res.returncode == 2, res.stderr[-2000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: dataset orai-nlp/MMLU_HT_eu_sample (config eu) is not in the local Hugging Face cache")
    assert line.endswith("run `latxa eval fetch --suite eu --to DIR` where there is internet and pass --datasets DIR.")
