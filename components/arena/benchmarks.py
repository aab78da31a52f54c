"""Benchmark scores as the study's notebook reads them for the arena analysis (evaluation/results.ipynb, cell 8).

Every ``*.json`` under the results folder; the model is the folder name after its last ``__`` and only the
study's models count; the score is ``exact_match,flexible-extract`` for MGSM, ``exact_match,strict_match`` for
the API models, ``acc,none`` otherwise; duplicates (a task in several files) are averaged, as ``pivot_table``
does. Names are normalised (``exp_2_101`` -> ``2_101``) and the equivalent untrained mixes copied in.
"""

from __future__ import annotations

from pathlib import Path

from latxa.components.arena.names import equivalences, normalize
from latxa.components.eval.aggregate import read_results_file
from latxa.components.eval.errors import EvalError

# The notebook's MODELS (cell 5): the result folders it reads.
MODELS = ("claude-3-5-sonnet-20241022", "gpt-4o-2024-11-20", "Llama-3.1-70B-Instruct", "Latxa-Llama-3.1-70B-Instruct",
          "Llama-3.1-8B", "exp_0_010", "exp_0_011", "exp_0_101", "exp_0_110", "exp_0_111",
          "Latxa-Llama-3.1-8B", "exp_1_001", "exp_1_010", "exp_1_011", "exp_1_101", "exp_1_110", "exp_1_111",
          "Llama-3.1-8B-Instruct", "exp_2_010", "exp_2_011", "exp_2_100", "exp_2_101", "exp_2_110", "exp_2_111")
BASQUE_TASKS = ("arc_eu_challenge", "arc_eu_easy", "basqbbq", "belebele_eus_Latn", "bertaqa_eu_local",
                "bertaqa_eu_global", "bl2mp", "eus_exams_eu", "eus_proficiency", "eus_reading", "eus_trivia",
                "mgsm_native_cot_eu", "mmlu_eu", "piqa_eu", "xstorycloze_eu")
ENGLISH_TASKS = ("arc_challenge", "arc_easy", "bbq", "belebele_eng_Latn", "bertaqa_en_global", "bertaqa_en_local",
                 "mgsm_native_cot_en", "mmlu_en", "piqa", "xstorycloze_en")
SPANISH_TASKS = ("belebele_spa_Latn", "mgsm_native_cot_es", "mmlu_es", "xstorycloze_es")
LANG_TASKS = {"EU": BASQUE_TASKS, "EN": ENGLISH_TASKS, "ES": SPANISH_TASKS}
BIAS_TASKS = {"EU": "basqbbq", "EN": "bbq"}   # dropped from the benchmark means, kept for the correlations
TASK_RE = r"basq|_(eus|eu|spa|es|eng|en)"     # one task name across languages (arc_eu_easy -> arc_easy)


def _score(task: str, model: str, metrics: dict):
    if "mgsm" in task:
        return metrics.get("exact_match,flexible-extract")
    if "gpt" in model or "claude" in model:
        return metrics.get("exact_match,strict_match")
    return metrics.get("acc,none")


def load_benchmarks(results: str | Path):
    """Long table (model, task, score in [0, 1]) with equivalences expanded."""
    import pandas as pd

    root = Path(results)
    if not root.is_dir():
        raise EvalError(f"{root}: not a folder of lm-eval results (one sub-folder per model).")
    records = []
    for path in sorted(root.rglob("*.json")):
        model = path.parent.name.split("__")[-1]
        if model not in MODELS:
            continue
        for task, metrics in read_results_file(path)["results"].items():
            score = _score(task, model, metrics)
            if score is not None:
                records.append({"model": normalize(model), "task": task, "score": float(score)})
    if not records:
        raise EvalError(f"{root}: no results of the study's models (folders named like HiTZ__...__exp_2_101).")
    df = pd.DataFrame(records)
    for src, targets in equivalences().items():
        rows = df[df["model"] == src]
        for t in targets:
            df = pd.concat([df, rows.assign(model=t)], ignore_index=True)
    return df


def language_table(long, lang: str, drop_bias: bool = True):
    """task x model scores in [0, 1] for one language (the notebook's ``process_benchmark_results``)."""
    df = long[long["task"].isin(LANG_TASKS[lang])]
    table = df.pivot_table(index="model", columns="task", values="score").T
    if drop_bias and lang in BIAS_TASKS and BIAS_TASKS[lang] in table.index:
        table = table.drop(index=[BIAS_TASKS[lang]])
    return table


def pretty_table(table):
    """models x (tasks, mean, rank) in percent (``benchmarks_to_pretty_table``: the rank is over all models)."""
    df = table.copy() * 100
    mean = df.mean()
    df.loc["mean"] = mean
    df = df.round(2)
    df.loc["rank"] = mean.rank(method="max", ascending=False)
    df = df[sorted(df.columns)]
    return df.T
