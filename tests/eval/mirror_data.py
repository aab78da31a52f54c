"""A stand-in dataset mirror for the paper suite: a few rows per dataset, config and split, in each real
dataset's schema (column names and types as the hub datasets have them), under the names lm-eval loads.

The dataset ids, configs and splits here are written from the datasets' own cards and the study's recorded
configs, not from our task YAMLs, so a wrong name in a YAML shows up as a missing dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

EUS_EXAMS = ["ejadministrari", "ejlaguntza", "ejlaguntzaile", "ejteknikari", "opebilbaoeu", "opegasteizkoudala",
             "opeehuadmineu", "opeehuauxeu", "opeehubiblioeu", "opeehuderechoeu", "opeehueconomicaseu",
             "opeehuempresarialeseu", "opeehusubalternoeu", "opeehutecnicoeu", "opeehuteknikarib", "opeosakiadmineu",
             "opeosakiauxenfeu", "opeosakiauxeu", "opeosakiceladoreu", "opeosakienfeu", "opeosakioperarioeu",
             "opeosakitecnicoeu", "opeosakivarioseu", "osakidetza1e", "osakidetza2e", "osakidetza3e", "osakidetza5e",
             "osakidetza6e", "osakidetza7e"]
BBQ = {"Age": "Adin", "Disability_status": "Ezgaitasun_egoera", "Gender_identity": "Genero_identitate",
       "Nationality": "Nazionalitate", "Physical_appearance": "Itxura_fisikoa", "Race_ethnicity": "Arraza_etnizitate",
       "Religion": "Nazionalitate", "SES": "MSE", "Sexual_orientation": "Orientazio_sexual"}
BASQBBQ = ["Adin", "Arraza_etnizitate", "Ezgaitasun_egoera", "Genero_identitate", "Itxura_fisikoa", "MSE",
           "Nazionalitate", "Orientazio_sexual"]
N = 7   # rows per split: 5 shots + the evaluated document, plus one


def _arc(i: int, lang: str) -> dict:
    labels = ["A", "B", "C", "D"] if i % 3 else ["1", "2", "3", "4"]   # ARC has a few numeric labels
    return {"id": f"Mercury_{i}", "question": f"{'Galdera' if lang == 'eu' else 'Question'} {i}?",
            "choices": {"text": [f"option {i}.{k}" for k in range(4)], "label": labels}, "answerKey": labels[i % 4]}


def _piqa(i: int) -> dict:
    return {"goal": f"goal {i}", "sol1": f"first way {i}", "sol2": f"second way {i}", "label": i % 2}


def _xstory(i: int) -> dict:
    return {"story_id": f"s{i}", **{f"input_sentence_{k}": f"Sentence {k} of story {i}." for k in range(1, 5)},
            "sentence_quiz1": f"Ending A {i}.", "sentence_quiz2": f"Ending B {i}.", "answer_right_ending": 1 + i % 2}


def _belebele(i: int, code: str) -> dict:
    return {"link": f"https://example.org/{i}", "question_number": 1 + i % 2, "flores_passage": f"Passage {i} ({code}).",
            "question": f"Question {i}? ", **{f"mc_answer{k}": f"answer {k}" for k in range(1, 5)},
            "correct_answer_num": str(1 + i % 4), "dialect": code, "ds": "2023-05-03"}


def _bertaqa(i: int, lang: str) -> dict:
    return {"id": i, "category": "Geography and History", "difficulty": 1 + i % 3,
            "group": "Euskal gaiak" if i % 2 else "Gai orokorrak",
            "question": f"{'Galdera' if lang == 'eu' else 'Question'} {i}?", "candidates": [f"c{i}.{k}" for k in range(3)],
            "answer": i % 3}


def _exam(i: int, subset: str) -> dict:
    row = {"id": str(i + 1), "question": f"{subset} galdera {i}:", "candidates": [f"erantzuna {k}" for k in range(4)],
           "answer": i % 4, "link": f"https://example.eus/{subset}"}
    if i == 0:
        row["answer"] = -1   # an unscorable item, as the real sets have: process_docs drops it
    return row


def _mc4(i: int, with_context: bool = False, n_candidates: int = 4) -> dict:
    row = {"id": i, "question": f"Galdera {i}?", "candidates": [f"aukera {k}" for k in range(n_candidates)],
           "answer": i % n_candidates}
    if with_context:
        row = {"id": i, "context": f"Pasartea {i}.", **{k: v for k, v in row.items() if k != "id"}}
    return row


def _mgsm(i: int, prefix: str | None) -> dict:
    return {"question": f"Question {i}: how much is {i} + 1?",
            "answer": None if prefix is None else f"{prefix}{i} + 1 = {i + 1}. The answer is {i + 1}.",
            "answer_number": i + 1, "equation_solution": None if prefix is None else f"{i}+1={i + 1}"}


def _bl2mp(i: int) -> dict:
    return {"sentence_good": f"Etxera joan naiz {i}.", "sentence_bad": f"Etxera joan dut {i}.",
            "type": "E2: Aditza", "level": "ABC"[i % 3]}


def _mmlu(i: int) -> dict:
    return {"question": f" Question {i}? ", "subject": "anatomy", "choices": [f"choice {k}" for k in range(4)],
            "answer": i % 4}


def _bias(i: int, category: str, condition: str, basque: bool) -> dict:
    stereo = ["old"]
    groups = [["the grandfather", "old"], ["the grandson", "nonOld"], ["Can't be determined", "unknown"]]
    return {"example_id": i, "question_index": str(1 + i % 3), "question_polarity": "neg" if i % 2 else "nonneg",
            "context_condition": condition, "category": category,
            "answer_info": {f"ans{k}": g for k, g in enumerate(groups)},
            "additional_metadata": {"subcategory": "None", "stereotyped_groups": stereo, "version": "a",
                                    "source": "https://example.org"},
            "context": ("Testuingurua" if basque else "Context") + f" {i}.", "question": f"Who {i}?",
            "ans0": groups[0][0], "ans1": groups[1][0], "ans2": groups[2][0],
            "label": 2 if condition == "ambig" else i % 2}


def dataset_files() -> dict[str, list[dict]]:
    """Mirror-relative path -> rows, for every dataset, config and split the paper suite reads."""
    files: dict[str, list[dict]] = {}

    def put(path: str, make, n: int = N) -> None:
        files[path] = [make(i) for i in range(n)]

    for cfg in ("ARC-Challenge", "ARC-Easy"):
        for split in ("train", "validation", "test"):
            put(f"allenai/ai2_arc/{cfg}/{split}.jsonl", lambda i: _arc(i, "en"))
        for split in ("validation", "test"):     # ARC-eu has no train split
            put(f"HiTZ/ARC-eu/{cfg}/{split}.jsonl", lambda i: _arc(i, "eu"))
    for split in ("train", "validation", "test"):
        put(f"piqa/default/{split}.jsonl", _piqa)
    put("HiTZ/PIQA-eu/default/validation.jsonl", _piqa)
    for lang in ("en", "es", "eu"):
        for split in ("train", "eval"):
            put(f"juletxara/xstory_cloze/{lang}/{split}.jsonl", _xstory)
    for code in ("eus_Latn", "eng_Latn", "spa_Latn"):
        put(f"facebook/belebele/{code}/test.jsonl", lambda i, c=code: _belebele(i, c))
    for lang in ("eu", "en"):
        put(f"HiTZ/BertaQA/{lang}/test.jsonl", lambda i, g=lang: _bertaqa(i, g), n=2 * N)
    for subset in EUS_EXAMS:
        put(f"HiTZ/EusExams/eu_{subset}/test.jsonl", lambda i, s=subset: _exam(i, s), n=N + 1)
    put("HiTZ/EusProficiency/default/test.jsonl", _mc4)
    put("HiTZ/EusReading/default/test.jsonl", lambda i: _mc4(i, with_context=True, n_candidates=2 + i % 3))
    put("HiTZ/EusTrivia/default/test.jsonl", lambda i: {**_mc4(i, n_candidates=2 + i % 3), "category": "Musika",
                                                        "difficulty": "erraza"})
    for lang, prefix in (("en", "Step-by-Step Answer: "), ("es", "Respuesta paso a paso: ")):
        put(f"juletxara/mgsm/{lang}/train.jsonl", lambda i, p=prefix: _mgsm(i, p))
        put(f"juletxara/mgsm/{lang}/test.jsonl", lambda i: _mgsm(i, None))
    put("HiTZ/MGSM-eu/default/train.jsonl", lambda i: _mgsm(i, "Erantzuna urratsez urrats: "))
    put("HiTZ/MGSM-eu/default/test.jsonl", lambda i: _mgsm(i, None))
    put("orai-nlp/bl2mp/default/train.jsonl", _bl2mp)
    for lang in ("eu", "en"):
        put(f"orai-nlp/MMLU_HT_eu_sample/{lang}/test.jsonl", _mmlu)
    put("HiTZ/MMLU_HT_es_sample/es/test.jsonl", _mmlu)
    return files


def bias_files() -> dict[str, list[dict]]:
    """Bias-data-relative path -> rows, laid out like the study's lm-eval tasks folder."""
    files: dict[str, list[dict]] = {}
    for cat, fewshot in BBQ.items():
        for cond in ("ambig", "disambig"):
            files[f"bbq/bbq/data/{cat}_{cond}.jsonl"] = [_bias(i, cat, cond, False) for i in range(N)]
        files[f"bbq/fewshot/no{fewshot}_4s.jsonl"] = [_bias(i, "Adin", ("ambig", "disambig")[i // 2], False)
                                                      for i in range(4)]
    for cat in BASQBBQ:
        for cond in ("ambig", "disambig"):
            files[f"basqbbq/BasqBBQ/data/BasqBBQ/{cat}_{cond}.jsonl"] = [_bias(i, cat, cond, True) for i in range(N)]
        files[f"basqbbq/fewshot/no{cat}_4s.jsonl"] = [_bias(i, "Adin", ("ambig", "disambig")[i // 2], True)
                                                      for i in range(4)]
    return files


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_mirror(root: Path, *, bias_in_mirror: bool = True) -> Path:
    """The stand-in mirror at ``root`` (bias data under ``root/json`` unless told otherwise)."""
    for rel, rows in dataset_files().items():
        write_jsonl(root / rel, rows)
    if bias_in_mirror:
        write_bias(root / "json")
    return root


def write_bias(root: Path) -> Path:
    for rel, rows in bias_files().items():
        write_jsonl(root / rel, rows)
    return root
