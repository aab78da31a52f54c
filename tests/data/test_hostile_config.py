"""Issue 18, configs under hostile input: the one YAML loader (aliases, duplicate keys, encodings, depth), strict
types and finite numbers in the study and data configs, the serving config's defaults, cluster profile names.

`latxa config check` runs in-process: every bad file is exactly one `error:` line and exit 2.
"""

from __future__ import annotations

import pytest
import yaml

from latxa.components.config import DEFAULT_CONFIG, ConfigError, load_config
from latxa.components.data import DataError, load_data_config
from latxa.errors import LatxaError
from latxa.yamlfile import load_yaml_file


def _bomb(levels: int) -> str:
    """The classic billion-laughs document: each level refers to the previous one nine times."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _study_text() -> str:
    return DEFAULT_CONFIG.read_text()


def _check_one_sentence(inproc, path, *fragments):
    code, out, err = inproc("config", "check", str(path))
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------ 5. aliases


def test_a_study_config_alias_bomb_is_refused_quickly(tmp_path, inproc):
    path = tmp_path / "study.yaml"
    path.write_text(_study_text() + "x-bomb:\n" + "".join("  " + line + "\n" for line in _bomb(7).splitlines()))
    assert path.stat().st_size < len(_study_text().encode()) + 1024      # the bomb itself: under 1 KB of text
    # it was accepted as valid after 17 s and 1.78 GB; now refused from the node graph, before expansion
    _check_one_sentence(inproc, path, str(path), "aliases")


def test_a_serving_config_alias_bomb_is_refused(tmp_path):
    from latxa.serving.registry import ServeConfigError, load_serve_config

    path = tmp_path / "serve.yaml"
    path.write_text("defaults:\n  generation: {temperature: 0.5}\nx:\n" + "".join(
        "  " + line + "\n" for line in _bomb(6).splitlines()))
    assert path.stat().st_size < 1024
    with pytest.raises(ServeConfigError, match="aliases"):
        load_serve_config(path)


def test_recursive_aliases_are_refused_and_small_ones_work(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(LatxaError, match=r"r.yaml:1: .*recursive"):
        load_yaml_file(path, LatxaError, "Config file")
    path.write_text("base: &b {lr: 1.0e-3, epochs: 1}\nlocal: {<<: *b, epochs: 2}\nother: *b\n")
    assert load_yaml_file(path, LatxaError, "Config file") == {
        "base": {"lr": 1e-3, "epochs": 1}, "local": {"lr": 1e-3, "epochs": 2}, "other": {"lr": 1e-3, "epochs": 1}}


def test_unknown_keys_under_serving_defaults_are_named(tmp_path):
    from latxa.serving.registry import ServeConfigError, load_serve_config

    path = tmp_path / "serve.yaml"
    for text, key in (("defaults: {generaton: {temperature: 0.5}}\n", "defaults.generaton"),
                      ("defaults: {generation: {temprature: 0.5}}\n", "temprature")):
        path.write_text(text + "models: []\n")
        with pytest.raises(ServeConfigError, match=key):
            load_serve_config(path)


# ------------------------------------------------------------------------------------------ 9. config check


def test_duplicate_keys_are_refused_with_file_line(tmp_path, inproc):
    path = tmp_path / "study.yaml"
    path.write_text(_study_text().replace("seed: 33\n", "seed: 33\nseed: 34\n"))
    _check_one_sentence(inproc, path, f"{path}:4: ", "duplicate key 'seed'")
    data = tmp_path / "data.yaml"
    data.write_text("sources:\n  inst_en: {kind: chat, files: [a]}\n  inst_en: {kind: chat, files: [b]}\n")
    with pytest.raises(DataError, match=rf"{data}:3: .*duplicate key 'inst_en'"):
        load_data_config(data)


@pytest.mark.parametrize("encode, why", [
    (lambda t: t.replace("Laptop", "Ordenagailu eramangarri\xe1").encode("latin-1"), "not UTF-8"),
    (lambda t: t.encode("utf-16"), "UTF-16"),
    (lambda t: t.encode("utf-16-le"), "UTF-16"),
], ids=["latin-1", "utf-16-bom", "utf-16-le"])
def test_non_utf8_files_are_one_sentence(encode, why, tmp_path, inproc):
    path = tmp_path / "study.yaml"
    path.write_bytes(encode(_study_text()))
    _check_one_sentence(inproc, path, str(path), why)


def test_a_utf8_bom_is_fine(tmp_path, inproc):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + _study_text().encode())
    code, out, err = inproc("config", "check", str(path))
    assert code == 0 and "valid" in out, err


@pytest.mark.parametrize("depth", [70, 100_000])
def test_deep_nesting_is_one_sentence(depth, tmp_path, inproc):
    path = tmp_path / "study.yaml"
    path.write_text(_study_text() + "x: " + "[" * depth + "]" * depth + "\n")
    _check_one_sentence(inproc, path, str(path), "nested deeper than 64 levels")
    path.write_text(_study_text() + "x:" + "".join(f"\n{' ' * (i + 1)}k{i}:" for i in range(min(depth, 300))) + " 1\n")
    _check_one_sentence(inproc, path, str(path), "nested deeper than 64 levels")


@pytest.mark.parametrize("old, new, key, why", [
    ("epochs: 4", "epochs: true", "train.epochs", "valid number"),
    ("max_grad_norm: 1.0", "max_grad_norm: .inf", "train.max_grad_norm", "finite"),
    ("max_grad_norm: 1.0", "max_grad_norm: .nan", "train.max_grad_norm", "finite"),
    ("seq_len: 8192", "seq_len: 12345678901234567890123456", "data.seq_len", "less than or equal to 131072"),
    ("seq_len: 8192", "seq_len: 8192.0", "data.seq_len", "valid integer"),
    ("shuffle: true", "shuffle: 'yes'", "data.shuffle", "valid boolean"),
    ("seed: 33", "seed: -1", "seed", "greater than or equal to 0"),
    ("micro_batch_size: 2", "micro_batch_size: 100000000000000", "train.micro_batch_size", "less than or equal"),
    ("deepspeed_stage: 0", "deepspeed_stage: true", "deepspeed_stage", "not a boolean"),
    ("betas: [0.9, 0.95]", "betas: [.inf, 0.95]", "optim.betas", "finite"),
], ids=lambda x: str(x)[:24])
def test_strict_types_and_finite_numbers(old, new, key, why, tmp_path, inproc):
    path = tmp_path / "study.yaml"
    text = _study_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    _check_one_sentence(inproc, path, key, why)


def test_the_shipped_configs_still_load(tmp_path):
    cfg = load_config()
    assert cfg.optim.betas == (0.9, 0.95) and cfg.train.epochs == 4
    for name in cfg.profiles:
        cfg.resolve(name)
    load_data_config()
    data = tmp_path / "d.yaml"
    data.write_text("sources:\n  inst_en: {kind: chat, files: [a], max_documents: true}\n")
    with pytest.raises(DataError, match="max_documents"):
        load_data_config(data)


def test_profile_overrides_are_strict_too(tmp_path):
    data = yaml.safe_load(_study_text())
    data["profiles"]["local"]["overrides"]["train"]["epochs"] = True
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path).resolve("local")


# ------------------------------------------------------------------------------------------ 7. cluster profiles


@pytest.mark.parametrize("field, value", [("name", "ok\nsrun rm -rf ~"), ("description", "fine\n#!/bin/sh\nid"),
                                          ("description", "x\rid"), ("name", "a b")])
def test_cluster_profile_name_and_description_are_validated(field, value, tmp_path):
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.profiles import load_profile

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"study_profile": "local", field: value}))
    with pytest.raises(SlurmError, match=field):
        load_profile(path)


def test_cluster_profile_file_name_with_a_newline_is_refused(tmp_path):
    from latxa.slurm.errors import SlurmError
    from latxa.slurm.profiles import load_profile

    path = tmp_path / "evil\nid.yaml"
    path.write_text("study_profile: local\n")
    with pytest.raises(SlurmError, match="name"):
        load_profile(path)


def test_a_valid_profile_renders_one_comment_line_before_the_header():
    from latxa.slurm.profiles import load_profile
    from latxa.slurm.render import render_command

    prof = load_profile("local").model_copy(update={"description": "Tiny; $(not run) 'quoted'"})
    script = render_command(prof, ["true"], name="ok").script
    head = script.splitlines()
    assert head[0] == "#!/bin/bash" and all(line.startswith("#") for line in head[:4])
    assert head.index(next(line for line in head if line.startswith("#SBATCH"))) == 3


def test_control_characters_are_one_sentence(tmp_path, inproc):
    """Found by the fuzz test: PyYAML's reader refuses them before parsing, outside the usual error path."""
    path = tmp_path / "study.yaml"
    path.write_bytes(b"seed: 33\n\x01 x\n")
    _check_one_sentence(inproc, path, f"{path}:2 ", "control character #x01")
