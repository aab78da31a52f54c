import hashlib
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from latxa.components.tiny_model import SPECIAL_TOKENS, TinySpec, build_tiny_model


def test_loads_and_is_tiny(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    n = sum(p.numel() for p in model.parameters())
    assert 100_000 < n < 1_000_000
    assert model.config.model_type == "llama"
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for special in SPECIAL_TOKENS:
        ids = tok.convert_tokens_to_ids(special)
        assert ids != tok.unk_token_id and tok.decode([ids]) == special


def test_chat_template_two_turns(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    conv = [
        {"role": "user", "content": "Kaixo, zer moduz?"},
        {"role": "assistant", "content": "Ondo, eskerrik asko."},
        {"role": "user", "content": "Non dago Bilbo?"},
        {"role": "assistant", "content": "Bilbo Bizkaian dago."},
    ]
    text = tok.apply_chat_template(conv, tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert "<|start_header_id|>user<|end_header_id|>\n\nKaixo, zer moduz?<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nBilbo Bizkaian dago.<|eot_id|>")
    gen = tok.apply_chat_template(conv[:3], tokenize=False, add_generation_prompt=True)
    assert gen.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # byte-level BPE round-trips Basque text exactly
    assert tok.decode(ids) == text
    assert ids.count(tok.convert_tokens_to_ids("<|eot_id|>")) == 5
    # the model runs on the templated ids
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), model.config.vocab_size)


def test_tokenizer_is_trained_on_basque(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    word_ids = tok("Euskal Herriko hizkuntza euskara da", add_special_tokens=False)["input_ids"]
    # learned merges: far fewer tokens than bytes
    assert len(word_ids) < len("Euskal Herriko hizkuntza euskara da") / 2


def _digest(path):
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        h.update((path / name).read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path, tiny_model):
    a = build_tiny_model(tmp_path / "a")
    assert _digest(a) == _digest(tiny_model)
    b = build_tiny_model(tmp_path / "b", TinySpec(seed=7))
    assert _digest(b) != _digest(a)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_cli_tiny(cli, tmp_path):
    out = tmp_path / "m"
    res = cli("model", "tiny", "--out", str(out), "--hidden-size", "32", "--layers", "1", "--vocab-size", "1024")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32
    assert "parameters" in res.stdout
    res = cli("model", "tiny", "--out", str(tmp_path / "x"), "--hidden-size", "30", "--heads", "4")
    assert res.returncode == 2 and "divisible" in res.stderr
