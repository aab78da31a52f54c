"""Issue 18, data preparation under careless or hostile input: each test reproduces one observed finding.

--out never removes what this tool did not write; the cache compares content and is verified on a hit; per-record
limits (size, depth, integer length) and bounds on seq_len and weights are one sentence; empty replies, BOMs and
empty inputs are handled.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from latxa.components.data import DataError, prepare
from latxa.components.data.sources import DEFAULT_MAX_RECORD_BYTES

GOOD = {"conversations": [{"role": "user", "content": "Kaixo?"}, {"role": "assistant", "content": "Kaixo!"}]}


def _kw(tiny_model, **extra):
    return {"tokenizer": tiny_model, "num_proc": 1, "progress": False, **extra}


def _chat_cfg(tmp_path, h, rows, name="d.jsonl"):
    data = h.write_jsonl(tmp_path / name, rows)
    return data, h.write_config(tmp_path / f"{name}.yaml", inst_en={"kind": "chat", "files": [str(data)]})


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _readable(out):
    manifest = json.loads((out / "manifest.json").read_text())
    return sum(pq.read_table(out / s).num_rows for s in manifest["shards"]) == manifest["num_rows"]


# ------------------------------------------------------------------------------------------ 1. --out


def test_out_that_is_a_file_is_refused_and_kept(tiny_model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for use_cache in (True, False):
        with pytest.raises(DataError, match="is a file"):
            prepare("exp_0_001", notes, cache_dir=tmp_path / "cache", use_cache=use_cache, **_kw(tiny_model))
        assert notes.read_text() == "my notes"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_out_folder_with_someone_elses_manifest_is_refused_and_kept(tiny_model, tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text('{"name": "my web app", "version": "1.0"}')
    (project / "src" / "main.py").write_text("print('hi')\n")
    before = _tree(project)
    for use_cache in (True, False):
        with pytest.raises(DataError, match="refusing to"):
            prepare("exp_0_001", project, cache_dir=tmp_path / "cache", use_cache=use_cache, **_kw(tiny_model))
        assert _tree(project) == before and (project / "src" / "main.py").read_text() == "print('hi')\n"


def test_a_prepared_dataset_with_a_user_file_added_is_not_wiped(tiny_model, tmp_path):
    out = tmp_path / "ds"
    prepare("exp_0_001", out, use_cache=False, **_kw(tiny_model))
    (out / "README.md").write_text("my notes about this dataset")
    with pytest.raises(DataError, match="README.md"):
        prepare("exp_0_001", out, use_cache=False, seq_len=128, **_kw(tiny_model))
    assert (out / "README.md").read_text() == "my notes about this dataset"


def test_own_dataset_is_replaced_and_nothing_is_left_beside_it(tiny_model, tmp_path):
    out = tmp_path / "ds"
    first = prepare("exp_0_001", out, use_cache=False, **_kw(tiny_model))
    second = prepare("exp_0_001", out, use_cache=False, seq_len=128, **_kw(tiny_model))
    assert not second.cache_hit and second.cache_key != first.cache_key
    assert json.loads((out / "manifest.json").read_text())["seq_len"] == 128 and _readable(out)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_out_root_and_symlinks_are_one_sentence(tiny_model, tmp_path):
    with pytest.raises(DataError, match="root"):
        prepare("exp_0_001", "/", use_cache=False, **_kw(tiny_model))
    real = tmp_path / "real"
    prepare("exp_0_001", real, use_cache=False, **_kw(tiny_model))
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    res = prepare("exp_0_001", link, use_cache=False, seq_len=128, **_kw(tiny_model))
    assert link.is_symlink() and link.resolve() == real.resolve()  # the link is kept, its target holds the data
    assert json.loads((real / "manifest.json").read_text())["seq_len"] == 128 and res.stats["rows"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no .tmp-PID folder left behind


# ------------------------------------------------------------------------------------------ 2., 3. cache


def test_same_size_edit_with_restored_mtime_is_a_cache_miss(tiny_model, tmp_path, h):
    data, cfg = _chat_cfg(tmp_path, h, [GOOD, {"conversations": [{"role": "user", "content": "Bai?"},
                                                                  {"role": "assistant", "content": "AAAA"}]}])
    kw = _kw(tiny_model, config=cfg, cache_dir=tmp_path / "cache")
    first = prepare("exp_0_001", tmp_path / "a", **kw)
    st = data.stat()
    data.write_bytes(data.read_bytes().replace(b"AAAA", b"BBBB"))  # same size, as `cp -p`/`rsync -t` leave it
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (data.stat().st_size, data.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = prepare("exp_0_001", tmp_path / "b", **kw)
    assert not second.cache_hit and second.cache_key != first.cache_key
    fresh = prepare("exp_0_001", tmp_path / "c", use_cache=False, **_kw(tiny_model, config=cfg))
    assert pq.read_table(tmp_path / "b" / second.manifest["shards"][0]).equals(
        pq.read_table(tmp_path / "c" / fresh.manifest["shards"][0]))


def test_editing_an_output_folder_does_not_corrupt_the_cache(tiny_model, tmp_path):
    kw = _kw(tiny_model, cache_dir=tmp_path / "cache")
    first = prepare("exp_0_001", tmp_path / "a", **kw)
    shard_a = tmp_path / "a" / first.manifest["shards"][0]
    cached = tmp_path / "cache" / first.cache_key / first.manifest["shards"][0]
    assert cached.is_file() and shard_a.stat().st_ino != cached.stat().st_ino  # a copy, not a hard link
    with shard_a.open("r+b") as fh:
        fh.truncate(10)
    other = prepare("exp_0_001", tmp_path / "b", **kw)
    assert other.cache_hit and _readable(tmp_path / "b")
    # The damaged folder itself is not a hit either: it is verified and rebuilt from the cache.
    again = prepare("exp_0_001", tmp_path / "a", **kw)
    assert again.cache_key == first.cache_key and _readable(tmp_path / "a")


def test_a_damaged_cache_entry_is_not_served(tiny_model, tmp_path):
    kw = _kw(tiny_model, cache_dir=tmp_path / "cache")
    first = prepare("exp_0_001", tmp_path / "a", **kw)
    cached = tmp_path / "cache" / first.cache_key / first.manifest["shards"][0]
    os.chmod(cached, 0o644)
    size = cached.stat().st_size
    with cached.open("r+b") as fh:  # same size, other bytes
        fh.seek(size // 2)
        fh.write(b"\0" * 16)
    res = prepare("exp_0_001", tmp_path / "b", **kw)
    assert not res.cache_hit and _readable(tmp_path / "b")
    assert pq.read_table(tmp_path / "b" / res.manifest["shards"][0]).equals(pq.read_table(tmp_path / "a" / first.manifest["shards"][0]))


# ------------------------------------------------------------------------------------------ 4., 8. per-record limits


def test_a_record_above_the_size_limit_is_one_sentence_and_skippable(tiny_model, tmp_path, h):
    big = {"text": "a" * (DEFAULT_MAX_RECORD_BYTES + 10)}
    data = h.write_jsonl(tmp_path / "c.jsonl", [{"text": "Kaixo mundua."}, big, {"text": "Agur."}])
    cfg = h.write_config(tmp_path / "c.yaml", corpus_eu={"kind": "text", "files": [str(data)]})
    kw = _kw(tiny_model, config=cfg, use_cache=False)
    with pytest.raises(DataError, match=rf"{data}:2: record of {DEFAULT_MAX_RECORD_BYTES + 22:,} bytes is above the "
                                        rf"limit of {DEFAULT_MAX_RECORD_BYTES:,} bytes \(max_record_bytes\)"):
        prepare("exp_1_100", tmp_path / "o", **kw)
    s = prepare("exp_1_100", tmp_path / "o", on_error="skip", **kw).stats
    assert (s["read"], s["written"], s["skipped"]) == (3, 2, 1) and s["skips"][0]["line"] == 2


def test_paragraph_limit_and_configured_limit(tiny_model, tmp_path, h):
    para = tmp_path / "p.txt"
    para.write_text("Lehena.\n\n" + "lerro luzea\n" * 50 + "\nAzkena.\n", encoding="utf-8")
    cfg = h.write_config(tmp_path / "p.yaml", corpus_eu={"kind": "text", "files": [str(para)], "text_unit": "paragraph",
                                                         "max_record_bytes": 300})
    s = prepare("exp_1_100", tmp_path / "p", config=cfg, on_error="skip", use_cache=False, **_kw(tiny_model)).stats
    assert (s["read"], s["written"], s["skipped"]) == (3, 2, 1)
    assert s["skips"][0]["line"] == 3 and "max_record_bytes" in s["skips"][0]["reason"]


@pytest.mark.parametrize("line, reason", [
    ('{"conversations": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "b"}]}',
     "lone surrogate"),
    ('{"conversations": [{"role": "\\udfff", "content": "a"}, {"role": "assistant", "content": "b"}]}',
     "unknown role"),
    ('{"x": ' + "[" * 100_000 + "]" * 100_000 + ', "conversations": []}', "nested deeper than 64 levels"),
    ('{"x": ' + "[" * 70 + "]" * 70 + ', "conversations": []}', "nested deeper than 64 levels"),
    ('{"n": ' + "7" * 5000 + ', "conversations": []}', "integer with more than"),
], ids=["surrogate-content", "surrogate-role", "deep-100k", "deep-70", "long-int"])
def test_hostile_records_are_one_sentence(line, reason, tiny_model, tmp_path, h):
    data, cfg = _chat_cfg(tmp_path, h, [GOOD, line, GOOD])
    kw = _kw(tiny_model, config=cfg, use_cache=False)
    with pytest.raises(DataError, match=rf"{data}:2: .*{reason}") as err:
        prepare("exp_0_001", tmp_path / "o", **kw)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    s = prepare("exp_0_001", tmp_path / "o", on_error="skip", **kw).stats
    assert (s["read"], s["written"], s["skipped"]) == (3, 2, 1)
    json.loads((tmp_path / "o" / "skips.jsonl").read_text())  # one line of valid JSON (no raw surrogate)


def test_seq_len_and_weight_bounds(tiny_model, tmp_path, h):
    with pytest.raises(DataError, match="seq_len must be between 2 and 131072"):
        prepare("exp_0_001", tmp_path / "o", seq_len=100_000_000_000, use_cache=False, **_kw(tiny_model))
    # PyYAML reads 1e9 as the string "1e9" (YAML 1.1 floats need a dot); lax pydantic turned it into 1e9 copies
    for weight, why in (("1e9", "valid number"), ("1.0e+9", "less than or equal to 32"), (".inf", "finite"),
                        ("true", "valid number")):
        cfg = tmp_path / "w.yaml"
        cfg.write_text(f"sources:\n  inst_en: {{kind: chat, files: ['{tmp_path / 'x.jsonl'}'], weight: {weight}}}\n")
        with pytest.raises(DataError, match=rf"'sources.inst_en.weight'.*{why}"):
            prepare("exp_0_001", tmp_path / "o", config=cfg, use_cache=False, **_kw(tiny_model))


# ------------------------------------------------------------------------------------------ 10. replies, BOM, empty


@pytest.mark.parametrize("reply", ["", "   \n\t "])
def test_empty_assistant_replies_are_skipped_with_a_reason(reply, tiny_model, tmp_path, h):
    empty = {"conversations": [{"role": "user", "content": "Zer?"}, {"role": "assistant", "content": reply}]}
    data, cfg = _chat_cfg(tmp_path, h, [GOOD, empty, GOOD])
    kw = _kw(tiny_model, config=cfg, use_cache=False)
    with pytest.raises(DataError, match=rf"{data}:2: message 1 is an empty assistant reply"):
        prepare("exp_0_001", tmp_path / "o", **kw)
    s = prepare("exp_0_001", tmp_path / "o", on_error="skip", **kw).stats
    assert (s["read"], s["written"], s["skipped"]) == (3, 2, 1)
    assert s["skipped_by_reason"] == {"message 1 is an empty assistant reply": 1}


def test_a_utf8_bom_is_accepted(tiny_model, tmp_path, h):
    data = tmp_path / "bom.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\n").encode() * 2)
    cfg = h.write_config(tmp_path / "c.yaml", inst_en={"kind": "chat", "files": [str(data)]})
    s = prepare("exp_0_001", tmp_path / "o", config=cfg, use_cache=False, **_kw(tiny_model)).stats
    assert (s["read"], s["written"], s["skipped"]) == (2, 2, 0)
    txt = tmp_path / "bom.txt"
    txt.write_bytes(b"\xef\xbb\xbfLehen lerroa.\nBigarrena.\n")
    cfg = h.write_config(tmp_path / "t.yaml", corpus_eu={"kind": "text", "files": [str(txt)]})
    res = prepare("exp_1_100", tmp_path / "t", config=cfg, use_cache=False, **_kw(tiny_model))
    assert res.stats["written"] == 2
    first = pq.read_table(tmp_path / "t" / res.manifest["shards"][0])["input_ids"][0].as_py()
    assert 0xFEFF not in [ord(c) for c in tiny_model_decode(tiny_model, first)]


def tiny_model_decode(tiny_model, ids):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_model / "tokenizer.json")).decode(ids)


def test_an_empty_dataset_is_refused(tiny_model, tmp_path, h):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    cfg = h.write_config(tmp_path / "c.yaml", inst_en={"kind": "chat", "files": [str(empty)]})
    with pytest.raises(DataError, match="inst_en.*no records"):
        prepare("exp_0_001", tmp_path / "o", config=cfg, use_cache=False, **_kw(tiny_model))
    assert not (tmp_path / "o").exists()
    data, cfg = _chat_cfg(tmp_path, h, [{"conversations": []}] * 3)
    with pytest.raises(DataError, match=r"inst_en.*no records \(read 3, skipped 3"):
        prepare("exp_0_001", tmp_path / "o", config=cfg, on_error="skip", use_cache=False, **_kw(tiny_model))


@pytest.mark.parametrize("manifest, stats, why", [
    ('{"shards": 5}', None, "shards"),
    ('{"shards": []}', None, "stats.json"),
    ('{"shards": []}', "{not json", "stats.json"),
    ('[1, 2]', None, "not a JSON object"),
    ("[" * 100_000, None, "manifest.json:1: JSON nested deeper than 64 levels"),          # was a RecursionError
    ('{"shards": []}', '{"rows": ' + "7" * 5000 + "}", "stats.json:1: an integer with more than"),  # a ValueError
    ('{"shards": []}', '{\n"rows": 1,\n}', "stats.json:3: malformed JSON (Expecting property name"),
])
def test_data_show_on_a_broken_folder_is_one_sentence(manifest, stats, why, tmp_path, inproc):
    (tmp_path / "manifest.json").write_text(manifest)
    if stats is not None:
        (tmp_path / "stats.json").write_text(stats)
    code, out, err = inproc("data", "show", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and why in err, err


def test_clean_and_heldout_refuse_hostile_lines_in_one_sentence(tmp_path, inproc, hostile_json, one_sentence):
    """reference_sets.read_rows: a 100,000-deep line or a 5000-digit integer was a RecursionError / ValueError
    traceback out of `latxa data clean` and `latxa data heldout`; a syntax error names the column."""
    good = json.dumps({"conversation_id": "magpie_1", "conversations": [{"role": "user", "content": "a"},
                                                                        {"role": "assistant", "content": "b"}]})
    cases = {**hostile_json, '{"conversations": [}': r"malformed JSON (Expecting value at column 20)"}
    for line, reason in cases.items():
        bad = tmp_path / "in.jsonl"
        bad.write_text(f"{good}\n\n{line}\n")
        for argv in (["clean"], ["heldout", "aya"]):
            code, _, err = inproc("data", *argv, str(bad), "--out", str(tmp_path / "o.jsonl"))
            one_sentence(code, err, f"{bad}:3", reason)
        assert not list(tmp_path.glob("o.jsonl*"))   # nothing written, no temporary file left behind
