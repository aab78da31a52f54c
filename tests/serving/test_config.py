"""The serving YAML: defaults, per-model overrides, readable errors, secrets never exposed."""

from __future__ import annotations

import pytest


def test_defaults_overrides_and_errors(tmp_path, serve_models, cli):
    from latxa.errors import LatxaError
    from latxa.serving.generation import system_prompt, today_eu
    from latxa.serving.registry import load_serve_config

    path = serve_models[0].path
    cfg_file = tmp_path / "serve.yaml"
    cfg_file.write_text(f"""
defaults:
  generation: {{temperature: 0.7}}
models:
  - {{name: a, kind: hf, path: {path}}}
  - {{name: b, kind: hf, path: {path}, generation: {{max_tokens: 16, system_prompt: null}}}}
  - {{name: gpt, kind: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: MY_SECRET_KEY}}
""")
    cfg = load_serve_config(cfg_file)
    a, b, gpt = cfg.models
    assert (a.generation.temperature, a.generation.top_p, a.generation.max_tokens) == (0.7, 0.95, 2048)
    assert b.generation.max_tokens == 16 and b.generation.system_prompt is None and b.generation.temperature == 0.7
    prompt = system_prompt(a.generation)
    assert today_eu() in prompt and "euskara" in prompt
    assert "MY_SECRET_KEY" in str(gpt.public()) and "sk-" not in str(gpt.public())

    def bad(text: str, match: str):
        cfg_file.write_text(text)
        with pytest.raises(LatxaError, match=match):
            load_serve_config(cfg_file)

    bad("models:\n  - {name: x, kind: hf}\n", "needs path")
    bad(f"models:\n  - {{name: x, kind: hf, path: {tmp_path}}}\n", "not a Hugging Face folder")
    bad(f"models:\n  - {{name: x, kind: hf, path: {path}}}\n  - {{name: x, kind: hf, path: {path}}}\n", "unique")
    bad("models: [\n", r"serve.yaml:\d+ is not valid YAML")
    bad("models:\n  - {name: x, kind: hf, path: /p, generation: {top_p: 3}}\n", "top_p")
    out = cli("serve", "--config", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "missing.yaml does not exist" in out.stderr


def test_external_endpoint_failure_is_readable(serve_models, monkeypatch):
    from latxa.serving.generation import BackendError, OpenAIEndpointModel
    from latxa.serving.registry import ModelSpec

    monkeypatch.setenv("MY_SECRET_KEY", "sk-very-secret")
    spec = ModelSpec(name="gpt", kind="openai", base_url="http://127.0.0.1:9/v1", api_key_env="MY_SECRET_KEY")
    with pytest.raises(BackendError) as err:
        list(OpenAIEndpointModel(spec).stream([{"role": "user", "content": "kaixo"}], spec.generation))
    assert "unreachable" in str(err.value) and "sk-very-secret" not in str(err.value)
