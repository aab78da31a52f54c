import json

import pytest

from latxa.components.registry import TRAINED_8B, VariantError, all_variants, from_paper_name, parse


@pytest.mark.parametrize(
    "code, plain, latex",
    [
        ("exp_2_101", "INST_EN C_EU I_EN", r"INS\textsubscript{\,EN}\,C\textsubscript{\,EU}\,I\textsubscript{\,EN}"),
        ("exp_1_011", "BASE_EU I_EN+EU", r"BASE\textsubscript{\,EU}\,I\textsubscript{\,EN+EU}"),
        ("exp_0_110", "BASE_EN C_EU I_EU", r"BASE\textsubscript{\,EN}\,C\textsubscript{\,EU}\,I\textsubscript{\,EU}"),
        ("exp_2_000", "INST_EN", r"INS\textsubscript{\,EN}"),
    ],
)
def test_paper_names_both_ways(code, plain, latex):
    v = parse(code)
    assert v.paper_name == plain
    assert v.paper_latex == latex
    assert from_paper_name(plain).code == code
    assert from_paper_name(latex).code == code


def test_every_code_round_trips():
    codes = [v.code for v in all_variants()]
    assert len(codes) == len(set(codes)) == 24
    for code in codes:
        v = parse(code)
        assert v.code == code
        assert from_paper_name(v.paper_name) == v
        assert from_paper_name(v.paper_latex) == v


def test_trained_set_is_the_studys_17():
    assert len(TRAINED_8B) == 17
    trained = {v.code for v in all_variants() if v.trained}
    assert trained == set(TRAINED_8B)
    assert "exp_2_101" in trained and "exp_2_001" not in trained and "exp_1_100" not in trained


def test_baselines():
    assert parse("exp_2_000").equivalent_model == "meta-llama/Llama-3.1-8B-Instruct"
    assert parse("exp_1_000").equivalent_model == "HiTZ/Latxa-Llama-3.1-8B"
    assert parse("exp_2_101").equivalent_model is None
    assert parse("exp_2_101").sources == ["corpus_eu", "inst_en"]


@pytest.mark.parametrize("bad", ["exp_3_101", "exp_2_1x1", "foo", "exp_2_1011", "", "exp_-1_101"])
def test_bad_codes(bad):
    with pytest.raises(VariantError, match="valid code looks like exp_B_CIJ"):
        parse(bad)


@pytest.mark.parametrize("bad", ["LLAMA C_EU", "INST_EN C_ES", "BASE_EU I_FR"])
def test_bad_paper_names(bad):
    with pytest.raises(VariantError):
        from_paper_name(bad)


def test_cli_list_json(cli):
    res = cli("variants", "list", "--format", "json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    by_code = {r["code"]: r for r in rows}
    assert len(rows) == 24
    for key in ("code", "paper_name", "backbone", "corpus_eu", "inst_eu", "inst_en", "trained"):
        assert key in rows[0]
    assert by_code["exp_2_101"]["paper_name"] == "INST_EN C_EU I_EN"
    assert by_code["exp_1_011"]["paper_name"] == "BASE_EU I_EN+EU"
    assert sum(r["trained"] for r in rows) == 17
    trained = json.loads(cli("variants", "list", "--trained", "--format", "json").stdout)
    assert len(trained) == 17


def test_cli_show_and_bad_code(cli):
    res = cli("variants", "show", "exp_2_101")
    assert res.returncode == 0
    assert json.loads(res.stdout)["inst_en"] is True
    res = cli("variants", "show", "BASE_EU I_EN+EU")
    assert json.loads(res.stdout)["code"] == "exp_1_011"
    for bad in ("exp_3_101", "exp_2_1x1", "foo"):
        res = cli("variants", "show", bad)
        assert res.returncode != 0
        assert "valid code looks like" in res.stderr
        assert "Traceback" not in res.stderr
        assert res.stderr.strip().count("\n") == 0  # one sentence
