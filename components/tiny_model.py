"""Offline tiny-model kit: a random-init Llama with a locally trained byte-level BPE tokenizer.

It is the default model of every local run and test: it has the Llama-3.1 special
tokens and chat template, so data preparation, training, evaluation and serving take
the same code paths as with the real 8B/70B models, without any download.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from latxa.paths import SAMPLE_DATA

CHAT_TEMPLATE_FILE = Path(__file__).with_name("templates") / "llama31_chat_template.jinja"

# Llama-3.1's special tokens. Ids are assigned first, in this order, so they are stable.
BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
START_HEADER, END_HEADER, PAD = "<|start_header_id|>", "<|end_header_id|>", "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, EOS, START_HEADER, END_HEADER, EOT, PAD]


@dataclass
class TinySpec:
    """Shape of the tiny model; the defaults give about 0.4M parameters."""

    vocab_size: int = 2048
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 33


def chat_template() -> str:
    return CHAT_TEMPLATE_FILE.read_text(encoding="utf-8")


def _training_text(paths: list[Path]) -> Iterator[str]:
    """Text the tokenizer learns from: corpus documents and every conversation turn."""
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                if path.suffix != ".jsonl":
                    yield line
                    continue
                row = json.loads(line)
                if "text" in row:
                    yield row["text"]
                for msg in row.get("conversations", []):
                    yield msg["content"]


def default_tokenizer_corpus() -> list[Path]:
    return [SAMPLE_DATA / "corpus" / "eu_corpus.jsonl", SAMPLE_DATA / "instructions" / "eu.jsonl",
            SAMPLE_DATA / "instructions" / "en.jsonl"]


def train_tokenizer(vocab_size: int, texts: list[Path] | None = None):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(texts or default_tokenizer_corpus()), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Like Llama-3.1: BOS is prepended by the tokenizer; the chat template writes its own BOS,
    # so chat rendering calls the tokenizer with add_special_tokens=False.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,  # generation stops at the end of the assistant turn
        pad_token=PAD,
        additional_special_tokens=[EOS, START_HEADER, END_HEADER],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat_template()
    fast.model_max_length = 131072
    return fast


def build_tiny_model(out: str | Path, spec: TinySpec | None = None, texts: list[Path] | None = None) -> Path:
    """Build the tiny model and tokenizer into ``out`` (a normal Hugging Face folder)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = spec or TinySpec()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(spec.vocab_size, texts)
    vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=500000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOS), tokenizer.convert_tokens_to_ids(EOT)],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=True,
        temperature=0.9,
        top_p=0.95,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tiny_spec.json").write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
    return out


def count_parameters(path: str | Path) -> int:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def ensure_tiny_model(path: str | Path | None = None) -> Path:
    """Return the default tiny model, building it on first use."""
    from latxa.paths import tiny_model_dir

    path = Path(path) if path else tiny_model_dir()
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        build_tiny_model(path)
    return path
