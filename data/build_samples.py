"""Rebuild the shipped sample data from the permissively licensed files in ../shared/data.

Run once by the maintainers (``python data/build_samples.py``); the outputs are committed,
so neither `make demo` nor the tests need ../shared. Only Apache-2.0 / MIT / CC BY-SA
sources are read here: the NON-COMMERCIAL files of ../shared are never copied.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
SEED = 33


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(HERE)}: {len(rows)} rows")


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def corpus() -> None:
    # Lingua test sentences (Apache-2.0) and QNLIeu Wikipedia sentences (CC BY-SA 4.0),
    # grouped into short multi-sentence documents so packing has documents of varied length.
    lingua = [s.strip() for s in (SHARED / "corpus/lingua_sentences/eu_sentences.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    qnli: list[str] = []
    seen = set()
    for line in (SHARED / "basqueglue/qnli/train.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        sent = json.loads(line)["sentence"].strip()
        if sent and sent not in seen:
            seen.add(sent)
            qnli.append(sent)
    rng = random.Random(SEED)
    docs = []
    for source, sents in (("lingua", lingua), ("qnli_eu", qnli)):
        i = 0
        while i < len(sents):
            n = rng.randint(1, 8)
            docs.append({"text": " ".join(sents[i : i + n]), "source": source})
            i += n
    write_jsonl(HERE / "corpus/eu_corpus.jsonl", docs)


def instructions_eu() -> None:
    # TruthfulQA-eu (Apache-2.0): question -> best answer, as single- and two-turn conversations.
    items = json.loads((SHARED / "benchmarks/truthfulqa_eu/validation.json").read_text(encoding="utf-8"))
    items += json.loads((SHARED / "benchmarks/truthfulqa_eu/train.json").read_text(encoding="utf-8"))
    rng = random.Random(SEED)
    system = "Euskaraz erantzuten duen laguntzaile adeitsua zara."
    convs = []
    i = 0
    while i < len(items):
        turns = rng.choice([1, 1, 1, 2])
        msgs = [{"role": "system", "content": system}] if rng.random() < 0.3 else []
        for item in items[i : i + turns]:
            msgs.append({"role": "user", "content": item["question"].strip()})
            msgs.append({"role": "assistant", "content": item["best_answer"].strip()})
        convs.append({"conversations": msgs, "source": "truthfulqa_eu"})
        i += turns
    write_jsonl(HERE / "instructions/eu.jsonl", convs)


def benchmarks() -> None:
    keep = ("id", "category", "difficulty", "question", "candidates", "answer")
    trivia = [json.loads(l) for l in (SHARED / "benchmarks/latxa_eval_items/eus_trivia_test.jsonl").read_text(encoding="utf-8").split("\n") if l.strip()]
    write_jsonl(HERE / "benchmarks/eus_trivia.jsonl", [{k: r[k] for k in keep} for r in trivia])
    exams_by_subset: dict[str, list[dict]] = {}
    for line in (SHARED / "benchmarks/latxa_eval_items/eus_exams_eu_test.sample150.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        r = json.loads(line)
        exams_by_subset.setdefault(r["subset"], []).append(r)
    exams = [
        {k: r[k] for k in ("subset", "id", "question", "candidates", "answer")}
        for subset in sorted(exams_by_subset)
        for r in exams_by_subset[subset][:25]
    ]
    write_jsonl(HERE / "benchmarks/eus_exams_eu.jsonl", exams)
    qnli = [json.loads(l) for l in (SHARED / "basqueglue/qnli/val.jsonl").read_text(encoding="utf-8").split("\n") if l.strip()]
    write_jsonl(HERE / "benchmarks/qnli_eu.jsonl", qnli)
    tqa = json.loads((SHARED / "benchmarks/truthfulqa_eu/validation.json").read_text(encoding="utf-8"))
    write_jsonl(
        HERE / "benchmarks/truthfulqa_eu_mc1.jsonl",
        [{"id": t["id"], "question": t["question"], "choices": t["mc1_targets"]["choices"], "labels": t["mc1_targets"]["labels"]} for t in tqa],
    )


def judgments() -> None:
    # Real human judgments of Basque answers (Apache-2.0): truthfulness / informativeness per model answer.
    with (SHARED / "human_judgments/truthfulqa_eu_manual_review/eu.csv").open(encoding="utf-8") as fh:
        rows = [
            {"id": r["id"], "question": r["question"], "model_answer": r["model_answer"],
             "truthfulness": r["truthfulness"], "informativeness": r["informativeness"]}
            for r in csv.DictReader(fh)
        ]
    write_jsonl(HERE / "human/truthfulqa_eu_judgments.jsonl", rows)


if __name__ == "__main__":
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: this script needs the read-only shared/ folder beside the project.")
    corpus()
    instructions_eu()
    benchmarks()
    judgments()
