"""prepare(): sources per variant, packed format, cache hits and misses, bad input, weights and caps."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latxa.components.data import DataError, load_packed, prepare
from latxa.paths import SAMPLE_DATA

BOS, EOT, END_OF_TEXT, HEADER = 0, 4, 1, 2  # the tiny tokenizer's fixed special-token ids


def _rows(out):
    manifest = json.loads((out / "manifest.json").read_text())
    tables = [pq.read_table(out / s) for s in manifest["shards"]]
    return pa.concat_tables(tables), manifest


def _lines(name):
    with (SAMPLE_DATA / name).open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def test_packed_format_contract(prepared_101):
    out = prepared_101.out_dir
    table, manifest = _rows(out)
    seq_len = 256  # the study's `local` profile
    assert manifest["seq_len"] == seq_len and manifest["num_rows"] == table.num_rows == prepared_101.stats["rows"]
    assert set(manifest) >= {"cache_key", "variant", "seq_len", "num_rows", "tokenizer", "pad_token_id", "shards"}
    for col in ("input_ids", "labels", "position_ids"):
        assert table.schema.field(col).type == pa.list_(pa.int32())
    ids = np.array(table.column("input_ids").to_pylist())
    labels = np.array(table.column("labels").to_pylist())
    pos = np.array(table.column("position_ids").to_pylist())
    assert ids.shape == (table.num_rows, seq_len)
    # position_ids restart at 0 at every document start (every document begins with BOS) ...
    assert np.all(pos[ids == BOS] == 0)
    assert np.all(pos[:, 0] == 0)
    # ... and otherwise count up by one; a restart mid-row happens only at a BOS.
    step = pos[:, 1:] - pos[:, :-1]
    restart = pos[:, 1:] == 0
    assert np.all(step[~restart] == 1)
    assert np.all(ids[:, 1:][restart] == BOS)
    # No loss on segment starts; labels equal input_ids wherever loss is taken.
    assert np.all(labels[pos == 0] == -100)
    trained = labels != -100
    assert np.array_equal(labels[trained], ids[trained])
    # Only the last row may hold padding.
    pad = manifest["pad_token_id"]
    assert not np.any(ids[:-1] == pad)
    n_pad = prepared_101.stats["pad_tokens"]
    assert n_pad == int(np.sum(ids[-1] == pad)) and np.all(labels[-1, seq_len - n_pad:] == -100)
    s = prepared_101.stats
    assert s["packing_efficiency"] >= 0.99
    assert s["tokens"] == int(ids.size - n_pad) and s["trainable_tokens"] == int(trained.sum())
    assert s["read"] == s["written"] + s["skipped"]
    # Reading it back as training does.
    ds = load_packed(out)
    assert len(ds) == table.num_rows and tuple(ds[0]["input_ids"].shape) == (seq_len,)
    assert ds[3]["labels"].tolist() == labels[3].tolist()


@pytest.mark.parametrize(
    "variant, sources",
    [("exp_2_100", ["corpus_eu"]), ("exp_0_011", ["inst_eu", "inst_en"]), ("exp_1_110", ["corpus_eu", "inst_eu"])],
)
def test_variant_selects_its_sources(variant, sources, tiny_model, tmp_path):
    res = prepare(variant, tmp_path / "out", tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)
    s = res.stats
    assert sorted(s["tokens_per_source"]) == sorted(sources)
    files = {"corpus_eu": "corpus/eu_corpus.jsonl", "inst_eu": "instructions/eu.jsonl", "inst_en": "instructions/en.jsonl"}
    for name in sources:
        assert s["sources"][name]["read"] == s["sources"][name]["written"] == _lines(files[name])
    assert s["read"] == sum(_lines(files[n]) for n in sources)
    ids = np.array(_rows(res.out_dir)[0].column("input_ids").to_pylist())
    # Corpus documents end with <|end_of_text|> and have no chat headers; conversations the opposite.
    assert (np.sum(ids == END_OF_TEXT) == s["sources"].get("corpus_eu", {}).get("written", 0))
    assert bool(np.any(ids == HEADER)) == any(n.startswith("inst") for n in sources)
    if sources == ["corpus_eu"]:
        # plain causal-LM text: every token but each segment's first is trained
        labels = np.array(_rows(res.out_dir)[0].column("labels").to_pylist())
        pos = np.array(_rows(res.out_dir)[0].column("position_ids").to_pylist())
        real = ids != json.loads((res.out_dir / "manifest.json").read_text())["pad_token_id"]
        assert np.array_equal(labels[real] != -100, pos[real] != 0)


def test_baseline_and_bad_variant_are_readable_errors(tiny_model, tmp_path):
    with pytest.raises(DataError, match="no training data"):
        prepare("exp_2_000", tmp_path / "o", tokenizer=tiny_model, progress=False)
    with pytest.raises(Exception, match="not a variant code"):
        prepare("exp_9_101", tmp_path / "o", tokenizer=tiny_model, progress=False)


def test_output_does_not_depend_on_process_count(prepared_101, tiny_model, tmp_path):
    res = prepare("exp_2_101", tmp_path / "one", tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)
    assert res.cache_key == prepared_101.cache_key and not res.cache_hit
    a, _ = _rows(res.out_dir)
    b, _ = _rows(prepared_101.out_dir)
    assert a.equals(b)


def test_cache_hit_does_no_work_and_changes_miss(tiny_model, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    first = prepare("exp_0_011", out, tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache)
    assert not first.cache_hit
    shard = out / first.manifest["shards"][0]
    before = (shard.stat().st_mtime_ns, shard.stat().st_ino)
    # Same inputs, same folder: a hit that leaves the files untouched (no tokenizer is even loaded).
    again = prepare("exp_0_011", out, tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache)
    assert again.cache_hit and again.cache_key == first.cache_key
    assert (shard.stat().st_mtime_ns, shard.stat().st_ino) == before
    # Same inputs, another folder: served from the shared cache.
    other = prepare("exp_0_011", tmp_path / "other", tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache)
    assert other.cache_hit and _rows(other.out_dir)[0].equals(_rows(out)[0])

    # A copy of the tokenizer with a different chat template: a miss, and different data.
    tok2 = tmp_path / "tok2"
    shutil.copytree(tiny_model, tok2, ignore=shutil.ignore_patterns("*.safetensors"))
    template = (tok2 / "chat_template.jinja").read_text()
    assert "26 Jul 2024" in template
    (tok2 / "chat_template.jinja").write_text(template.replace("26 Jul 2024", "28 Nov 2026"))
    changed = prepare("exp_0_011", out, tokenizer=tok2, num_proc=1, progress=False, cache_dir=cache)
    assert not changed.cache_hit and changed.cache_key != first.cache_key
    assert not _rows(changed.out_dir)[0].equals(_rows(other.out_dir)[0])
    # Same for a template given on the command line, for seq_len, and for a changed input file.
    override = tmp_path / "t.jinja"
    override.write_text(template.replace("Cutting Knowledge", "Knowledge Cutoff"))
    keys = {first.cache_key, changed.cache_key}
    for kwargs in ({"chat_template": override}, {"seq_len": 128}):
        r = prepare("exp_0_011", tmp_path / "k", tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache, **kwargs)
        assert not r.cache_hit and r.cache_key not in keys
        keys.add(r.cache_key)
    data = tmp_path / "en.jsonl"
    shutil.copy(SAMPLE_DATA / "instructions" / "en.jsonl", data)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"sources:\n  inst_en: {{kind: chat, files: ['{data}']}}\n")
    r1 = prepare("exp_0_001", tmp_path / "d", config=cfg, tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache)
    with data.open("a") as fh:
        fh.write(json.dumps({"conversations": [{"role": "user", "content": "Bai?"},
                                               {"role": "assistant", "content": "Bai."}]}) + "\n")
    r2 = prepare("exp_0_001", tmp_path / "d", config=cfg, tokenizer=tiny_model, num_proc=1, progress=False, cache_dir=cache)
    assert not r2.cache_hit and r2.cache_key != r1.cache_key and r2.stats["read"] == r1.stats["read"] + 1


GOOD = {"conversations": [{"role": "user", "content": "Kaixo?"}, {"role": "assistant", "content": "Kaixo!"}]}
BAD_CHAT = [
    ('{"conversations": [{"role": "user", "content": "x"}', "malformed JSON"),
    ({"messages": GOOD["conversations"]}, "missing field 'conversations'"),
    ({"conversations": [{"role": "user"}, {"role": "assistant", "content": "b"}]}, "missing field 'content'"),
    ({"conversations": [{"role": "robot", "content": "a"}, {"role": "assistant", "content": "b"}]}, "unknown role 'robot'"),
    ({"conversations": []}, "empty conversation"),
    ({"conversations": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}]}, "no assistant turn"),
    ({"conversations": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                        {"role": "assistant", "content": "b"}]}, "only the first message may be one"),
]
BAD_TEXT = [
    ('{"text": "unclosed', "malformed JSON"),
    ({"body": "no text field"}, "missing field 'text'"),
    ({"text": "   "}, "empty text"),
    ({"text": 7}, "must be a string"),
]


@pytest.mark.parametrize("bad, reason", BAD_CHAT + [(b, r) for b, r in BAD_TEXT], ids=lambda x: str(x)[:30])
def test_bad_records_fail_with_file_line_or_are_skipped_and_counted(bad, reason, tiny_model, tmp_path, h):
    chat = (bad, reason) in BAD_CHAT
    good = GOOD if chat else {"text": "Euskara hizkuntza bat da."}
    data = h.write_jsonl(tmp_path / "d.jsonl", [good, good, bad, good])  # bad record on line 3
    name, variant = ("inst_eu", "exp_0_010") if chat else ("corpus_eu", "exp_1_100")
    cfg = h.write_config(tmp_path / "c.yaml", **{name: {"kind": "chat" if chat else "text", "files": [str(data)]}})
    kw = dict(config=cfg, tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)
    with pytest.raises(DataError) as err:
        prepare(variant, tmp_path / "out", **kw)
    assert f"{data}:3: " in str(err.value) and reason in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written

    res = prepare(variant, tmp_path / "out", on_error="skip", **kw)
    s = res.stats
    assert (s["read"], s["written"], s["skipped"]) == (4, 3, 1)
    assert s["skips"][0]["line"] == 3 and s["skips"][0]["file"] == str(data) and reason in s["skips"][0]["reason"]
    logged = [json.loads(x) for x in (res.out_dir / "skips.jsonl").read_text().splitlines()]
    assert [x["line"] for x in logged] == [3]


def test_invalid_utf8_and_blank_lines(tiny_model, tmp_path, h):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"text": "ondo"}\n\n{"text": "\xff\xfe"}\n{"text": "bai"}\n')
    cfg = h.write_config(tmp_path / "c.yaml", corpus_eu={"kind": "text", "files": [str(data)]})
    with pytest.raises(DataError, match=f"{data}:3: invalid UTF-8"):
        prepare("exp_1_100", tmp_path / "o", config=cfg, tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)


def test_many_bad_records_across_processes_keep_read_equal_written_plus_skipped(tiny_model, tmp_path, h):
    rows = []
    for i in range(600):
        rows.append(GOOD if i % 7 else {"conversations": []})
    data = h.write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = h.write_config(tmp_path / "c.yaml", inst_en={"kind": "chat", "files": [str(data)]})
    res = prepare("exp_0_001", tmp_path / "o", config=cfg, tokenizer=tiny_model, num_proc=2, on_error="skip",
                  progress=False, use_cache=False, chunk_records=64)
    s = res.stats
    assert s["tasks"] == 10 and s["read"] == 600 and s["skipped"] == 86 and s["written"] == 514
    assert s["skipped_by_reason"] == {"empty conversation": 86}
    assert sorted(x["line"] for x in s["skips"]) == [i + 1 for i in range(600) if i % 7 == 0]
    # fail mode across processes: the error names a bad line, the pool is stopped, nothing is left behind
    import multiprocessing

    with pytest.raises(DataError, match=rf"{data}:(\d+): empty conversation") as err:
        prepare("exp_0_001", tmp_path / "f", config=cfg, tokenizer=tiny_model, num_proc=2, progress=False,
                use_cache=False, chunk_records=64)
    assert (int(str(err.value).split(":")[1]) - 1) % 7 == 0
    assert not multiprocessing.active_children() and not (tmp_path / "f").exists()


def test_weights_and_caps(tiny_model, tmp_path, h):
    texts = [{"text": f"Dokumentua {i}: euskarazko testu laburra."} for i in range(200)]
    data = h.write_jsonl(tmp_path / "c.jsonl", texts)
    kw = dict(tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)

    def run(name, **src):
        cfg = h.write_config(tmp_path / f"{name}.yaml", corpus_eu={"kind": "text", "files": [str(data)], **src})
        return prepare("exp_1_100", tmp_path / name, config=cfg, **kw).stats

    one = run("w1")
    two = run("w2", weight=2.0)
    assert two["examples"] == 2 * one["examples"] == 400 and two["tokens"] == 2 * one["tokens"]
    assert two["read"] == two["written"] == 200
    half = run("w05", weight=0.5)
    assert half["read"] == 200 and half["read"] == half["written"] + half["skipped"]
    assert 60 < half["written"] < 140 and set(half["skipped_by_reason"]) == {"sampled out by weight 0.5"}
    capped = run("cap", max_documents=50)
    assert capped["read"] == capped["written"] == 50 and capped["sources"]["corpus_eu"]["stopped_at_cap"]


def test_plain_text_files_lines_and_paragraphs(tiny_model, tmp_path, h):
    shared = SAMPLE_DATA.parents[1] / "shared" / "data" / "corpus" / "lingua_sentences" / "eu_sentences.txt"
    files = [str(shared)] if shared.is_file() else []
    para = tmp_path / "p.txt"
    para.write_text("Lehen paragrafoa.\nBigarren lerroa.\n\n\nBigarren paragrafoa.\n\nHirugarrena.\n", encoding="utf-8")
    kw = dict(tokenizer=tiny_model, num_proc=1, progress=False, use_cache=False)
    cfg = h.write_config(tmp_path / "p.yaml", corpus_eu={"kind": "text", "files": [str(para)], "text_unit": "paragraph"})
    s = prepare("exp_1_100", tmp_path / "p", config=cfg, **kw).stats
    assert s["read"] == s["written"] == 3
    if files:
        cfg = h.write_config(tmp_path / "l.yaml", corpus_eu={"kind": "text", "files": files})
        s = prepare("exp_1_100", tmp_path / "l", config=cfg, **kw).stats
        assert s["read"] == s["written"] == 1000


def test_bad_configs_are_one_sentence(tiny_model, tmp_path, h):
    kw = dict(tokenizer=tiny_model, progress=False, use_cache=False)
    cfg = h.write_config(tmp_path / "a.yaml", inst_en={"kind": "chat", "files": [str(tmp_path / "nope.jsonl")]})
    with pytest.raises(DataError, match="does not exist"):
        prepare("exp_0_001", tmp_path / "o", config=cfg, **kw)
    with pytest.raises(DataError, match="does not define it"):
        prepare("exp_0_010", tmp_path / "o", config=cfg, **kw)
    cfg = h.write_config(tmp_path / "b.yaml", inst_en={"kind": "chat", "files": ["x"], "wieght": 2})
    with pytest.raises(DataError, match="Unknown key 'sources.inst_en.wieght'"):
        prepare("exp_0_001", tmp_path / "o", config=cfg, **kw)
    os.environ.pop("LATXA_TEST_UNSET", None)
    cfg = h.write_config(tmp_path / "c.yaml", inst_en={"kind": "chat", "files": ["$LATXA_TEST_UNSET/x.jsonl"]})
    with pytest.raises(DataError, match="environment variable"):
        prepare("exp_0_001", tmp_path / "o", config=cfg, **kw)
    (tmp_path / "notdata").mkdir()
    (tmp_path / "notdata" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare("exp_0_001", tmp_path / "notdata", **kw)
    assert (tmp_path / "notdata" / "keep.txt").read_text() == "mine"
