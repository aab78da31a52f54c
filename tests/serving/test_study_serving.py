"""The study's serving configuration (19 vLLM models, GPT-4o, Claude), offline: it loads, its placement fits
the stated GPU budget, its Ray Serve LLM configs validate, the chat template renders the study's format; the
native Anthropic backend against a stand-in server speaking the Messages streaming format (#20)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REFERENCE_NAMES = [  # the reference arena's endpoint keys (evaluation/human/backend/partial_config.jsonl + API)
    "exp_0_010", "exp_0_011", "exp_0_101", "exp_0_110", "exp_0_111", "exp_1_001", "exp_1_010", "exp_1_011",
    "exp_1_101", "exp_1_110", "exp_1_111", "exp_2_010", "exp_2_011", "exp_2_100", "exp_2_101", "exp_2_110",
    "exp_2_111", "Llama-3.1-8B-Instruct", "Latxa-Llama-3.1-70B-Instruct-exp_2_101", "gpt-4o",
    "claude-3-5-sonnet-20241022"]


@pytest.fixture(scope="module")
def study_cfg():
    from latxa.serving.registry import load_serve_config, shipped_config

    return load_serve_config(shipped_config("ebaluatoia-2025"))


def test_the_study_configuration_loads_with_the_reference_settings(study_cfg):
    from latxa.serving.placement import llm_configs, validate_llm_configs

    cfg = study_cfg
    assert [m.name for m in cfg.models] == REFERENCE_NAMES and cfg.arena.protocol == "ebaluatoia-2025"
    assert [m.kind for m in cfg.models].count("vllm") == 19
    gpt, claude = cfg.models[-2:]
    assert (gpt.kind, gpt.remote_model, gpt.dialect, gpt.api_key_env) == ("openai", "gpt-4o-2024-11-20", "openai",
                                                                          "OPENAI_API_KEY")
    assert (claude.kind, claude.remote_model, claude.api_key_env) == ("anthropic", "claude-3-5-sonnet-20241022",
                                                                      "ANTHROPIC_API_KEY")
    assert next(m for m in cfg.models if "70B" in m.name).export_name == "Latxa 3.1 70B Instruct"
    for m in cfg.models:   # GENERATION_CONFIGS["default"] of the reference frontend, for every model
        g = m.generation
        assert (g.temperature, g.top_p, g.max_tokens, g.frequency_penalty, g.repetition_penalty, g.stop,
                g.system_prompt) == (0.9, 0.95, 2048, 0.0, 1.0, ["<|eot_id|>"], "ebaluatoia-2025")
    configs = llm_configs(cfg)
    assert validate_llm_configs(configs) == 19   # Ray Serve LLM's own LLMConfig model accepts every one
    by_id = {c["model_loading_config"]["model_id"]: c for c in configs}
    v = by_id["exp_1_101"]
    assert v["model_loading_config"]["model_source"] == "HiTZ/Latxa-Llama-3.1-8B-Instruct"
    assert v["engine_kwargs"]["revision"] == "exp_1_101" and v["engine_kwargs"]["dtype"] == "bfloat16"
    assert v["engine_kwargs"]["max_model_len"] == 8192 and v["engine_kwargs"]["gpu_memory_utilization"] == 0.49
    assert v["placement_group_config"]["bundles"] == [{"GPU": 0.49, "CPU": 1}]
    assert by_id["Latxa-Llama-3.1-70B-Instruct-exp_2_101"]["engine_kwargs"]["tensor_parallel_size"] == 4
    assert by_id["Llama-3.1-8B-Instruct"]["model_loading_config"]["model_source"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert all("<|start_header_id|>" in c["engine_kwargs"]["chat_template"] for c in configs)


def test_the_placement_fits_the_stated_budget_and_names_what_does_not(study_cfg, tmp_path, cli):
    from latxa.errors import LatxaError
    from latxa.serving.placement import plan_placement
    from latxa.serving.registry import load_serve_config

    plan = plan_placement(study_cfg)
    assert (plan["used_gpus"], plan["budget_gpus"]) == (13, 16)
    per_gpu = [g for node in plan["nodes"].values() for g in node if g]
    assert sorted(len(g) for g in per_gpu).count(2) == 9       # 18 8B models two per GPU, as the study ran them
    assert sum(1 for g in per_gpu if g == ["Latxa-Llama-3.1-70B-Instruct-exp_2_101"]) == 4
    out = cli("serve", "--config", "ebaluatoia-2025", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "placement fits: 13 of 16 GPUs" in out.stdout and "19 LLMConfig(s) valid" in out.stdout
    small = tmp_path / "small.yaml"
    small.write_text("extends: ebaluatoia-2025\nplacement: {nodes: [{name: one-host, gpus: 8}]}\n")
    with pytest.raises(LatxaError, match=r"model 'exp_\w+' .* does not fit the placement budget of 8 GPUs"):
        load_serve_config(small)
    bad = cli("serve", "--config", str(small), "--dry-run")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    tight = tmp_path / "tight.yaml"
    tight.write_text("extends: ebaluatoia-2025\nplacement: {gpu_memory_gb: 40, nodes: [{name: h, gpus: 16}]}\n")
    with pytest.raises(LatxaError, match=r"model .+ needs about \d+\.\d GB per GPU but gpu_fraction 0\.\d+ of a 40 GB GPU"):
        load_serve_config(tight)


def test_the_chat_template_renders_the_study_format():
    import jinja2

    from latxa.serving.placement import chat_template_text

    template = jinja2.Environment().from_string(chat_template_text("llama-3.1"))
    text = template.render(bos_token="<|begin_of_text|>", add_generation_prompt=True,
                           messages=[{"role": "system", "content": "Sys. "}, {"role": "user", "content": " Kaixo "},
                                     {"role": "assistant", "content": "Aupa"}, {"role": "user", "content": "Zer?"}])
    assert text == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                    "2023\nToday Date: 26 Jul 2024\n\nSys.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nKaixo"
                    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nAupa<|eot_id|><|start_header_id|>user"
                    "<|end_header_id|>\n\nZer?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_openai_dialects_send_the_settings_as_the_study_did(study_cfg):
    from latxa.serving.generation import OpenAIEndpointModel

    msgs = [{"role": "user", "content": "Kaixo"}]
    vllm = OpenAIEndpointModel(study_cfg.models[0]).payload(msgs, study_cfg.models[0].generation)
    assert vllm["max_tokens"] == 2048 and vllm["stop"] == ["<|eot_id|>"] and "max_completion_tokens" not in vllm
    assert vllm["messages"][0]["role"] == "system" and vllm["messages"][0]["content"].startswith("You are a helpful")
    gpt = study_cfg.models[-2]
    body = OpenAIEndpointModel(gpt).payload(msgs, gpt.generation)
    assert body["model"] == "gpt-4o-2024-11-20" and body["max_completion_tokens"] == 2048
    assert "stop" not in body and "repetition_penalty" not in body and "max_tokens" not in body
    assert (body["temperature"], body["top_p"]) == (0.9, 0.95)


# ----------------------------------------------------------------------------- Anthropic stand-in
class _Anthropic(BaseHTTPRequestHandler):
    """Speaks Anthropic's Messages API streaming format (server-sent events with event: lines)."""

    requests: list = []
    mode = "ok"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.headers.get("x-api-key") != "sk-ant-test":
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}')
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()

        def ev(kind, data):
            self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        ev("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                                  "content": [], "model": body["model"],
                                                                  "usage": {"input_tokens": 12, "output_tokens": 1}}})
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}})
        ev("ping", {"type": "ping"})
        for piece in ("Kaixo", ", zer", " moduz?"):
            ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": piece}})
        if type(self).mode == "error":
            ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        ev("content_block_stop", {"type": "content_block_stop", "index": 0})
        ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                             "usage": {"output_tokens": 5}})
        ev("message_stop", {"type": "message_stop"})


@pytest.fixture
def anthropic_server():
    _Anthropic.requests, _Anthropic.mode = [], "ok"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Anthropic)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_anthropic_backend_streams_from_the_messages_api(anthropic_server, tmp_path, monkeypatch):
    from latxa.serving.anthropic_backend import AnthropicModel
    from latxa.serving.generation import BackendError
    from latxa.serving.registry import GenerationSettings, ModelSpec

    key_file = tmp_path / "anthropic-api-key"
    key_file.write_text("sk-ant-test\n")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    spec = ModelSpec(name="claude-3-5-sonnet-20241022", kind="anthropic", base_url=anthropic_server,
                     api_key_env="ANTHROPIC_API_KEY", api_key_file=str(key_file))
    spec.check()
    gen = GenerationSettings(system_prompt="ebaluatoia-2025", stop=["<|eot_id|>"], repetition_penalty=1.0)
    chunks = list(AnthropicModel(spec).stream([{"role": "user", "content": "Kaixo"},
                                               {"role": "assistant", "content": "Aupa"},
                                               {"role": "user", "content": "Zer moduz?"}], gen))
    assert "".join(c["text"] for c in chunks) == "Kaixo, zer moduz?" and chunks[-1]["finish_reason"] == "length"
    req = _Anthropic.requests[-1]
    assert req["path"] == "/v1/messages" and req["headers"]["anthropic-version"] == "2023-06-01"
    body = req["body"]
    assert body["model"] == "claude-3-5-sonnet-20241022" and body["stream"] is True
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (2048, 0.9, 0.95)
    assert body["system"].startswith("You are a helpful Artificial Intelligence assistant called Latxa")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]   # no system turn
    assert not {"stop", "stop_sequences", "frequency_penalty", "repetition_penalty"} & set(body)
    # the environment variable wins over the file; a wrong key is one sentence, without the key
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    with pytest.raises(BackendError, match="Anthropic answered HTTP 401") as err:
        list(AnthropicModel(spec).stream([{"role": "user", "content": "Kaixo"}], gen))
    assert "sk-ant" not in str(err.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    _Anthropic.mode = "error"
    with pytest.raises(BackendError, match=r"stream error \(overloaded_error\)"):
        list(AnthropicModel(spec).stream([{"role": "user", "content": "Kaixo"}], gen))
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    key_file.unlink()
    with pytest.raises(BackendError, match="no Anthropic API key"):
        list(AnthropicModel(spec).stream([{"role": "user", "content": "Kaixo"}], gen))


def test_an_arena_battle_streams_from_claude(anthropic_server, tmp_path, monkeypatch):
    import random

    from fastapi.testclient import TestClient

    from latxa.serving.app import build_app
    from latxa.serving.generation import LocalBackends
    from latxa.serving.registry import ArenaSettings, ModelSpec, ServeConfig

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    specs = [ModelSpec(name=n, kind="anthropic", base_url=anthropic_server, remote_model="claude-3-5-sonnet-20241022",
                       api_key_env="ANTHROPIC_API_KEY") for n in ("claude-a", "claude-b")]
    cfg = ServeConfig(models=specs, arena=ArenaSettings(database_url=f"sqlite:///{tmp_path}/a.db", min_reading_seconds=0))
    with TestClient(build_app(cfg, LocalBackends(specs), rng=random.Random(1))) as client:
        token = client.post("/api/participants", json={"username": "ane", "password": "pasahitza-8", "consent": True,
                                                        "basque_level": "C1", "education": "master"}).json()["token"]
        h = {"Authorization": f"Bearer {token}"}
        bid = client.post("/api/battles", headers=h).json()["battle_id"]
        r = client.post(f"/api/battles/{bid}/messages", headers=h, json={"content": "Kaixo", "stream": False})
        assert r.status_code == 200 and r.json()["a"] == r.json()["b"] == "Kaixo, zer moduz?"
