"""`latxa model tiny`: build the offline tiny Llama (random init + local BPE tokenizer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from latxa.cli.commands._common import example


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Models: build the offline tiny Llama used by every local run and test.", no_args_is_help=True)

    @group.command(
        "tiny",
        help="Build a random-init Llama-architecture model and a byte-level BPE tokenizer trained on the shipped "
        "Basque sample, with the Llama-3.1 chat template. No network needed; deterministic for a seed."
        + example("latxa model tiny --out /tmp/tiny --hidden-size 64 --layers 2"),
    )
    def tiny(
        out: Optional[Path] = typer.Option(None, "--out", help="Folder to write the Hugging Face model into "
                                           "(default: <state>/models/tiny, where every local run looks)."),
        vocab_size: int = typer.Option(2048, help="BPE vocabulary size (special tokens included)."),
        hidden_size: int = typer.Option(64),
        intermediate_size: int = typer.Option(128),
        layers: int = typer.Option(2, help="Number of decoder layers."),
        heads: int = typer.Option(4),
        kv_heads: int = typer.Option(2),
        seed: int = typer.Option(33),
    ) -> None:
        from latxa.components.tiny_model import TinySpec, build_tiny_model, count_parameters
        from latxa.errors import LatxaError

        if hidden_size % heads or heads % kv_heads:
            raise LatxaError(f"--hidden-size ({hidden_size}) must be divisible by --heads ({heads}), and --heads by --kv-heads ({kv_heads}).")
        spec = TinySpec(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads, seed=seed)
        from latxa.paths import tiny_model_dir

        path = build_tiny_model(out or tiny_model_dir(), spec)
        typer.echo(f"tiny model written to {path} ({count_parameters(path):,} parameters)")

    app.add_typer(group, name="model")
