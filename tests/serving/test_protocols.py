"""Arena protocols as data: the study's (ebaluatoia-2025) against the reference frontend's behaviour, ours (latxa)."""

from __future__ import annotations

import itertools
import json
import time

import pytest

MODEL_NAMES = ("tiny-a", "tiny-b", "tiny-c")
CHOICES = ("model_a", "tie", "model_b")
# The reference frontend's rule (evaluation/human/frontend/arena_with_user.py, save_history and the radio gating):
# (content, language) -> the stored winner, or "ASK" where the overall question is shown and its answer wins.
REFERENCE_TABLE = {
    ("model_a", "model_a"): "model_a", ("model_a", "tie"): "model_a", ("model_a", "model_b"): "ASK",
    ("tie", "model_a"): "model_a", ("tie", "tie"): "tie", ("tie", "model_b"): "model_b",
    ("model_b", "model_a"): "ASK", ("model_b", "tie"): "model_b", ("model_b", "model_b"): "model_b",
}


@pytest.fixture
def study(make_arena):
    client, settings = make_arena(protocol="ebaluatoia-2025")
    return client, settings


def study_register(client, username="miren", **over):
    body = {"username": username, "password": "pasahitza8", "consent": True, "basque_level": "C1-C2",
            "education": "Bachelor", "email": f"{username}@example.eus", **over}
    r = client.post("/api/participants", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def answered_battle(client, h):
    b = client.post("/api/battles", headers=h)
    assert b.status_code == 201, b.text
    bid = b.json()["battle_id"]
    r = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False})
    assert r.status_code == 200, r.text
    return bid


def test_the_study_rule_equals_the_reference_table_on_every_combination(study):
    client, _ = study
    h = study_register(client)
    seen = 0
    for content, language in itertools.product(CHOICES, CHOICES):
        for overall in (None, *CHOICES):
            bid = answered_battle(client, h)
            r = client.post(f"/api/battles/{bid}/vote", headers=h,
                            json={"content": content, "language": language, "overall": overall})
            expected = REFERENCE_TABLE[(content, language)]
            if expected == "ASK" and overall is None:
                assert r.status_code == 422 and r.json()["error"]["code"] == "overall_required"
                continue
            assert r.status_code == 200, (content, language, overall, r.text)
            v = r.json()
            assert v["winner"] == (overall if expected == "ASK" else expected), (content, language, overall)
            # an overall answer sent where the reference never asked it is dropped, as its UI cleared it
            assert v["winner_overall"] == (overall if expected == "ASK" else None)
            seen += 1
    assert seen == 7 * 4 + 2 * 3   # 13 distinct (content, language, winner) outcomes, each reachable


def test_our_rule_asks_overall_whenever_content_and_language_differ(make_arena):
    from latxa.serving.arena.protocol import load_protocol

    ours = load_protocol("latxa")
    for c, l in itertools.product(CHOICES, CHOICES):
        assert ours.overall_asked(c, l) == (c != l)
    assert ours.winner("model_a", "tie", "tie") == ("tie", "tie")   # impossible under the reference rule
    study_rule = load_protocol("ebaluatoia-2025")
    assert study_rule.winner("model_a", "tie", "tie") == ("model_a", None)


def _all_text(resp) -> str:
    return resp.text + json.dumps(dict(resp.headers))


def test_no_model_name_in_any_payload_event_or_header_under_the_study_protocol(study):
    client, _ = study
    h = study_register(client)
    blobs = [_all_text(client.get(p)) for p in ("/api/config", "/api/health", "/api/leaderboard", "/api/openapi.json")]
    battle = client.post("/api/battles", headers=h)
    bid = battle.json()["battle_id"]
    blobs.append(_all_text(battle))
    with client.stream("POST", f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo!"}) as resp:
        assert resp.status_code == 200
        blobs.append(json.dumps(dict(resp.headers)) + "".join(resp.iter_text()))
    blobs.append(_all_text(client.get(f"/api/battles/{bid}", headers=h)))
    vote = client.post(f"/api/battles/{bid}/vote", headers=h, json={"content": "model_a", "language": "model_b",
                                                                     "overall": "tie"})
    assert vote.status_code == 200 and vote.json()["models"] is None and vote.json()["winner"] == "tie"
    blobs.append(_all_text(vote))
    after = client.get(f"/api/battles/{bid}", headers=h)
    assert after.json()["status"] == "voted" and after.json()["models"] is None
    blobs += [_all_text(after), _all_text(client.get("/api/me", headers=h)),
              _all_text(client.get("/api/me/contributions", headers=h)),
              _all_text(client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Beste bat"}))]
    board = client.get("/api/leaderboard").json()
    assert board["hidden"] is True and board["ratings"] is None and board["votes"] == 1
    blobs.append(json.dumps(board))
    for blob in blobs:
        for name in MODEL_NAMES:
            assert name not in blob
    # the OpenAI-compatible routes, which list the models, are not served under this protocol
    assert client.get("/v1/models").status_code == 404
    # admin pages (token) still name them: the operator needs them
    admin = client.get("/api/admin/models", headers={"X-Admin-Token": "admin-secret"}).json()
    assert {m["name"] for m in admin} == set(MODEL_NAMES)


def test_the_study_protocol_reveals_what_the_ui_needs_at_config(study, make_arena):
    client, _ = study
    cfg = client.get("/api/config").json()
    proto = cfg["protocol"]
    assert proto["name"] == "ebaluatoia-2025" and proto["labels"] == {"a": "A eredua", "b": "B eredua"}
    assert proto["questions"] == {"content": "Edukiaren kalitatea", "language": "Euskararen kalitatea",
                                  "overall": "Orokorrean, zein da erantzun hobea?"}
    assert proto["choices"] == {"model_a": "👈 A da hobea", "tie": "🤝 Berdinketa", "model_b": "👉 B da hobea"}
    assert proto["overall_rule"] == "reference" and proto["reveal"] is False and proto["public_leaderboard"] is False
    reg = proto["registration"]
    assert [c["label"] for c in reg["basque_levels"]] == ["C1 (EGA) edo C2", "B1 edo B2", "A1 edo A2"]
    assert [c["code"] for c in reg["basque_levels"]] == cfg["basque_levels"] == ["C1-C2", "B1-B2", "A1-A2"]
    assert [c["label"] for c in reg["education_levels"]] == ["Unibertsitate ikasketak", "Lanbide-heziketa",
                                                            "Batxilergoa", "DBH"]
    assert reg["min_age"] == 14 and reg["email"] == "required"
    assert "14+ urteko pertsonak bakarrik" in cfg["consent"]["text"] and cfg["consent"]["licence"] == "CC0-1.0"
    assert cfg["min_reading_seconds"] == 0.0 or cfg["min_reading_seconds"] == 0
    ours, _ = make_arena()
    mine = ours.get("/api/config").json()["protocol"]
    assert mine["name"] == "latxa" and mine["reveal"] is True and mine["overall_rule"] == "differ"


def test_the_study_registration_fields(study):
    client, _ = study
    base = {"username": "itziar", "password": "pasahitza8", "consent": True, "basque_level": "B1-B2",
            "education": "High School", "email": "itziar@example.eus"}
    for bad, field in (({"email": None}, "email"), ({"email": "itziar@example"}, "email"),
                       ({"basque_level": "C1"}, "basque_level"), ({"education": "phd"}, "education"),
                       ({"username": "itziar_2"}, "username"), ({"username": "a" * 26}, "username"),
                       ({"password": "x" * 26}, "password"), ({"password": "short"}, "password")):
        r = client.post("/api/participants", json={**base, **bad})
        assert r.status_code == 422 and field in r.json()["error"]["message"], (bad, r.text)
    assert client.post("/api/participants", json={**base, "username": "Iñaki2"}).status_code == 201  # str.isalnum()
    assert client.post("/api/participants", json=base).status_code == 201


def test_the_study_samples_uniformly_and_records_its_generation_settings(study):
    from latxa.serving.arena.db import Battle, open_db

    client, settings = study
    h = study_register(client, "jon")
    refused = client.post("/api/battles", headers=h, json={"sampling": "adaptive"})
    assert refused.status_code == 422 and "uniform" in refused.json()["error"]["message"]
    for _ in range(3):
        assert client.post("/api/battles", headers=h, json={}).status_code == 201
    _, sf = open_db(settings.database_url)
    with sf() as s:
        battles = s.query(Battle).all()
    assert {b.sampling for b in battles} == {"uniform"}
    for b in battles:
        for side in (b.settings_a, b.settings_b):
            gen = json.loads(side)
            assert gen["system_prompt"] == "ebaluatoia-2025" and gen["stop"] == ["<|eot_id|>"]
            assert (gen["temperature"], gen["top_p"], gen["frequency_penalty"], gen["repetition_penalty"]) == (
                0.9, 0.95, 0.0, 1.0)


def test_control_battles_are_refused_under_the_study_protocol(make_arena, tmp_path):
    from latxa.errors import LatxaError
    from latxa.serving.registry import ControlBattle, load_serve_config

    with pytest.raises(LatxaError, match="no control battles"):
        make_arena(protocol="ebaluatoia-2025", control_rate=0.5,
                   control_battles=[ControlBattle(prompt="p", good="g", bad="b")])
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("arena: {protocol: ebaluatoia-2025, control_rate: 0.2}\n")
    with pytest.raises(LatxaError, match=r"arena.control_rate: the ebaluatoia-2025 protocol has no control battles"):
        load_serve_config(cfg)
    cfg.write_text("arena: {protocol: nope}\n")
    with pytest.raises(LatxaError, match=r"unknown arena protocol 'nope': choose one of ebaluatoia-2025, latxa"):
        load_serve_config(cfg)


def test_the_study_system_prompt_and_its_date():
    import locale

    from latxa.serving.prompts import STUDY, render, today_en

    t = time.mktime((2025, 3, 3, 12, 0, 0, 0, 0, 0)) - time.timezone   # 3 March 2025, 12:00 UTC
    assert today_en(t) == "Monday March  3, 2025"
    if locale.setlocale(locale.LC_TIME) in ("C", "POSIX", "C.UTF-8"):
        assert today_en(t) == time.strftime("%A %B %e, %Y", time.gmtime(t))   # the reference's call
    text = render("ebaluatoia-2025", t)
    assert text == STUDY.replace("{date}", "Monday March  3, 2025")
    assert text.startswith("You are a helpful Artificial Intelligence assistant called Latxa, created and developed "
                           "by HiTZ, the Basque Center for Language Technology research center. The user will engage")
    assert "conducted in standard Basque, this is, the first question" in text and text.endswith("2025.")
    assert render("default", t).endswith("Gaur 2025ko martxoaren 3a da.")
