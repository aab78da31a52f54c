"""The export in HiTZ/ebaluatoia's exact format, read back by the reader (#20)."""

from __future__ import annotations

import gzip
import json
import re
import uuid

import pytest

# The published dataset card (HiTZ/ebaluatoia, README.md): both configs' features, in this order.
PUBLISHED_FEATURES = [("id", "string"), ("username", "string"), ("user_language", "string"),
                      ("user_education", "string"), ("timestamp", "string"), ("model_a", "string"),
                      ("model_b", "string"), ("conv_a", [("role", "string"), ("content", "string")]),
                      ("conv_b", [("role", "string"), ("content", "string")]), ("winner", "string"),
                      ("winner_content", "string"), ("winner_language", "string")]
STUDY_PROMPT_START = "You are a helpful Artificial Intelligence assistant called Latxa, created and developed by HiTZ"


@pytest.fixture
def study_arena(make_arena):
    """An arena under the study's protocol (its registration codes and English system prompt)."""
    def make(**kw):
        return make_arena(protocol="ebaluatoia-2025", **kw)
    return make


def _one_vote(client, h, content="tie", language="tie", text="Idatzi amaia@example.eus helbidera edo https://hitz.eus"):
    bid = client.post("/api/battles", headers=h).json()["battle_id"]
    r = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": text, "stream": False})
    assert r.status_code == 200
    v = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": content, "language": language})
    assert v.status_code == 200, v.text
    return bid, v.json()


def test_export_matches_the_published_schema_field_by_field_and_round_trips(study_arena, tmp_path):
    import datasets

    from latxa.components.arena.dataset import COLUMNS, EDUCATION_CODES, LEVEL_CODES, read_published
    from latxa.serving.arena.db import open_db
    from latxa.serving.arena.export import export_rows, write_dataset

    client, settings = study_arena(export_timezone="Europe/Madrid")
    body = {"username": "amaia", "password": "pasahitza-8", "consent": True, "basque_level": "B1-B2",
            "education": "Vocational ed", "email": "amaia@example.eus"}
    r = client.post("/api/participants", json=body)
    assert r.status_code == 201, r.text
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    bid, _ = _one_vote(client, h)
    _one_vote(client, h, "model_a", "tie", "Kaixo")  # not asked under the study's rule: winner model_a
    _, sf = open_db(settings.database_url)
    with sf() as s:
        full, clean = export_rows(s, timezone="Europe/Madrid"), export_rows(s, sanitized=True, timezone="Europe/Madrid")
    counts = write_dataset(full, clean, tmp_path / "ds", "26-11")
    assert counts == {"26-11": 2, "26-11-sanitized": 2}
    # the published layout and card
    files = sorted(p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*") if p.is_file())
    assert files == ["README.md", "data/26-11.jsonl.gz", "data/26-11.sanitized.jsonl.gz"]
    card = (tmp_path / "ds" / "README.md").read_text()
    assert '- config_name: 26-11\n  data_files: "data/26-11.jsonl.gz"\n  default: true' in card
    assert '- config_name: 26-11-sanitized\n  data_files: "data/26-11.sanitized.jsonl.gz"\n  default: false' in card
    assert "example.eus" not in card and "license: cc0-1.0" in card
    # field by field, in the published order and formats
    raw = [json.loads(line) for line in gzip.open(tmp_path / "ds" / "data" / "26-11.jsonl.gz", "rt")]
    assert all(list(row) == [name for name, _ in PUBLISHED_FEATURES] == COLUMNS for row in raw)
    row = next(r for r in raw if r["winner"] == "tie")
    assert str(uuid.UUID(row["id"], version=4)) == row["id"] == bid
    assert re.fullmatch(r"-?\d{1,19}", row["username"]) and -2**63 <= int(row["username"]) < 2**63
    assert len({r["username"] for r in raw}) == 1          # one participant, one pseudonym
    assert row["user_language"] == "B1-B2" in LEVEL_CODES and row["user_education"] == "Vocational ed" in EDUCATION_CODES
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?", row["timestamp"])
    assert set(row["model_a"]) and row["model_a"] != row["model_b"]
    for conv in (row["conv_a"], row["conv_b"]):
        assert [m["role"] for m in conv] == ["system", "user", "assistant"]
        assert conv[0]["content"].startswith(STUDY_PROMPT_START) and re.search(r"Today is \w+day \w+ [ \d]\d, \d{4}\.$",
                                                                               conv[0]["content"])
        assert all(set(m) == {"role", "content"} for m in conv)
        assert conv[1]["content"] == "Idatzi amaia@example.eus helbidera edo https://hitz.eus"
    # Hugging Face datasets reads both configs from the card, with the published features
    ds = datasets.load_dataset(str(tmp_path / "ds"), "26-11", split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == COLUMNS and len(ds) == 2
    assert list(ds[0]["conv_a"][0]) == ["role", "content"] and ds.features["winner"].dtype == "string"
    san = datasets.load_dataset(str(tmp_path / "ds"), "26-11-sanitized", split="train", cache_dir=str(tmp_path / "hf"))
    assert san[0]["conv_a"][1]["content"] == "Idatzi [EMAIL] helbidera edo [URL]"
    # the reader: same rows back (sorted by timestamp), from the folder, a config, or one file
    assert read_published(tmp_path / "ds") == sorted(full, key=lambda r: r["timestamp"])
    assert read_published(tmp_path / "ds", "26-11-sanitized") == sorted(clean, key=lambda r: r["timestamp"])
    assert read_published(tmp_path / "ds" / "data" / "26-11.jsonl.gz") == read_published(tmp_path / "ds")
    # and the Hub's Parquet conversion of the same rows
    pq_dir = tmp_path / "hub" / "26-11" / "train"
    pq_dir.mkdir(parents=True)
    ds.to_parquet(str(pq_dir / "0000.parquet"))
    assert read_published(tmp_path / "hub", "26-11") == read_published(tmp_path / "ds")
    # the admin export endpoint: the same rows as NDJSON
    nd = client.get("/api/admin/export", headers={"X-Admin-Token": "admin-secret"})
    assert nd.headers["content-type"].startswith("application/x-ndjson") and "amaia@example.eus" in nd.text
    assert "amaia@example.eus" not in client.get("/api/admin/export?sanitized=true",
                                                  headers={"X-Admin-Token": "admin-secret"}).text


def test_our_protocol_exports_the_published_codes_and_old_ids(make_arena, reg, tmp_path):
    from latxa.serving.arena.db import Battle, open_db
    from latxa.serving.arena.export import conversation_id, export_rows

    client, settings = make_arena()
    h = reg(client, "mikel", basque_level="native", education="phd")
    _one_vote(client, h)
    _, sf = open_db(settings.database_url)
    with sf() as s:
        row = export_rows(s, export_names={})[0]
        assert s.query(Battle).count() == 1
    assert row["user_language"] == "C1-C2" and row["user_education"] == "Bachelor"
    assert row["conv_a"][0]["role"] == "system" and row["conv_a"][0]["content"].startswith("Latxa zara")
    assert conversation_id("b_0123456789abcdef01234567") == conversation_id("b_0123456789abcdef01234567")
    uuid.UUID(conversation_id("b_0123456789abcdef01234567"))


def test_reader_errors_name_file_and_line(tmp_path):
    from latxa.components.arena.dataset import DatasetError, read_published

    bad = tmp_path / "votes.jsonl"
    bad.write_text('{"model_a": "x", "model_b": "y", "winner": "tie", "winner_content": "tie", "winner_language": "tie"}\n'
                   '{"model_a": "x", "model_b": "y", "winner": "draw", "winner_content": "tie", "winner_language": "tie"}\n')
    with pytest.raises(DatasetError, match=r"votes.jsonl:2: winner must be one of"):
        read_published(bad)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "README.md").write_text('---\nconfigs:\n- config_name: 25-03\n  data_files: "data/25-03.jsonl.gz"\n---\n')
    with pytest.raises(DatasetError, match="no such file exists"):
        read_published(tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"no config '25-04'.*configs: 25-03"):
        read_published(tmp_path / "ds", "25-04")
