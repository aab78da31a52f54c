import json

import pytest
import yaml

from latxa.components.config import DEFAULT_CONFIG, ConfigError, load_config


def test_default_config_holds_the_studys_hyperparameters():
    cfg = load_config()
    assert cfg.seed == 33
    assert cfg.data.seq_len == 8192
    assert (cfg.train.micro_batch_size, cfg.train.grad_accum, cfg.train.epochs) == (2, 1, 4)
    assert cfg.optim.lr == 1e-5 and cfg.optim.scheduler == "cosine" and cfg.optim.min_lr_ratio == 0.33
    assert cfg.optim.warmup_ratio == 0.1 and cfg.optim.betas == (0.9, 0.95) and cfg.optim.eps == 1e-8
    assert cfg.optim.weight_decay == 0.1 and cfg.train.neftune_alpha == 5 and cfg.train.precision == "bf16"
    assert cfg.data.train_on == "assistant"


def test_profiles():
    cfg = load_config()
    p8, p70 = cfg.resolve("leonardo-8b"), cfg.resolve("leonardo-70b")
    assert (p8.target.nodes, p8.target.gpus_per_node, p8.world_size) == (32, 4, 128)
    assert (p70.target.nodes, p70.target.gpus_per_node, p70.world_size) == (64, 4, 256)
    local = cfg.resolve("local")
    assert local.target.backend == "cpu" and local.world_size == 2
    assert local.study.train.precision == "fp32" and local.study.data.seq_len < 8192
    # the profile overrides only what it names
    assert local.study.optim.betas == cfg.optim.betas
    assert local.flat_params()["train.micro_batch_size"] == 2


def _write(tmp_path, data):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _base():
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_unknown_key_is_named(tmp_path):
    data = _base()
    data["optim"]["learning_rate"] = 1e-4
    with pytest.raises(ConfigError, match=r"Unknown key 'optim.learning_rate'"):
        load_config(_write(tmp_path, data))


def test_wrong_type_is_named(tmp_path):
    data = _base()
    data["train"]["micro_batch_size"] = "two"
    with pytest.raises(ConfigError, match=r"'train.micro_batch_size'"):
        load_config(_write(tmp_path, data))
    data = _base()
    data["profiles"]["leonardo-8b"]["num_workers"] = 100
    with pytest.raises(ConfigError, match=r"profiles.leonardo-8b"):
        load_config(_write(tmp_path, data))


def test_bad_profile_override_and_unknown_profile(tmp_path):
    data = _base()
    data["profiles"]["local"]["overrides"]["train"]["epoch"] = 2
    cfg = load_config(_write(tmp_path, data))
    with pytest.raises(ConfigError, match=r"Unknown key 'train.epoch' in profile 'local'"):
        cfg.resolve("local")
    with pytest.raises(ConfigError, match="Unknown profile 'nope'"):
        cfg.resolve("nope")


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 33\ndata:\n  seq_len: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+ is not valid YAML"):
        load_config(path)


def test_cli_config(cli, tmp_path):
    res = cli("config", "show", "--profile", "leonardo-70b")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["world_size"] == 256
    data = _base()
    data["data"]["seq_length"] = 4096
    res = cli("config", "check", str(_write(tmp_path, data)))
    assert res.returncode == 2
    assert "Unknown key 'data.seq_length'" in res.stderr
