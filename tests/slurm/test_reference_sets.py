"""The reference's derived files, rebuilt: the '-cleaned' Magpie files, AYA (Basque) and Magpie-Ultra-1K."""

from __future__ import annotations

import json
import random


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_clean_drops_translation_conversations_and_maps_roles(tmp_path, cli):
    src = _jsonl(tmp_path / "magpie.jsonl", [
        {"conversation_id": "magpie_1", "conversations": [{"from": "human", "value": "Kaixo"}, {"from": "gpt", "value": "Zer moduz?"}]},
        {"conversation_id": "translation_7", "conversations": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"conversation_id": "magpie_2", "conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ])
    out = tmp_path / "Magpie-Llama-3.1-8B-Instruct-Filtered-1M-cleaned.jsonl"
    res = cli("data", "clean", str(src), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "read 3 = written 2 + dropped 1" in res.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["conversation_id"] for r in rows] == ["magpie_1", "magpie_2"]
    assert rows[0]["conversations"] == [{"role": "user", "content": "Kaixo"}, {"role": "assistant", "content": "Zer moduz?"}]
    bad = _jsonl(tmp_path / "bad.jsonl", [{"conversations": [{"role": "robot", "content": "x"}]}])
    res = cli("data", "clean", str(bad), "--out", str(tmp_path / "o.jsonl"))
    assert res.returncode == 2 and f"{bad}:1" in res.stderr and "robot" in res.stderr


def test_heldout_sets_follow_the_reference_recipes(tmp_path, cli):
    aya = _jsonl(tmp_path / "aya.jsonl", [{"inputs": f"q{i}", "targets": f"a{i}", "language_code": "eus" if i % 2 else "spa"}
                                          for i in range(10)])
    res = cli("data", "heldout", "aya", str(aya), "--out", str(tmp_path / "AYA.jsonl"))
    assert res.returncode == 0 and "read 10 = written 5 + dropped 5" in res.stdout
    first = json.loads((tmp_path / "AYA.jsonl").read_text().splitlines()[0])
    assert first == {"conversations": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]}
    rows = [{"instruction": f"p{i % 1500}", "response": f"r{i}"} for i in range(1600)]   # 100 duplicate prompts
    mu = _jsonl(tmp_path / "mu.jsonl", rows)
    res = cli("data", "heldout", "magpie-ultra", str(mu), "--out", str(tmp_path / "Magpie-Ultra-1K.jsonl"))
    assert res.returncode == 0 and "read 1600 = written 1000 + dropped 600" in res.stdout
    dedup = [{"conversations": [{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": f"r{i}"}]}
             for i in range(1500)]
    random.seed(33)
    want = random.sample(dedup, 1000)
    got = [json.loads(line) for line in (tmp_path / "Magpie-Ultra-1K.jsonl").read_text().splitlines()]
    assert got == want
