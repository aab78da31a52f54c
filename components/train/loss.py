"""Causal-LM loss without full-vocabulary fp32 logits: a chunked linear cross-entropy.

The plain loss computes ``logits = hidden @ W^T`` for every token (2 x 8192 x 128,256 values: 8 GiB in fp32
per micro-batch at 8B, held for the backward pass), then cross-entropy. Here the tokens are split into chunks;
each chunk's logits are computed, reduced to its summed loss and dropped, and recomputed in the backward
pass (activation checkpointing per chunk), so at most one chunk's logits (``chunk_tokens x V``, fp32) exist
at any time. The arithmetic per token is the plain loss's (same matmul, same fp32 log-softmax), so loss and
gradients agree with it to rounding (tested to 1e-5). On GPU this is the role of Liger's fused linear
cross-entropy in the reference; the chunked form needs no extra kernel and runs everywhere.
"""

from __future__ import annotations

IGNORE = -100


def shifted_targets(labels):
    """Targets aligned with positions: position t predicts token t+1 of its row; each row's last position none."""
    import torch

    pad = torch.full_like(labels[:, :1], IGNORE)
    return torch.cat([labels[:, 1:], pad], dim=1)


def _chunk_loss(hidden, head, targets):
    import torch

    logits = head(hidden).float()
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")


def chunked_linear_cross_entropy(hidden, head, targets, chunk_tokens: int = 1024):
    """Summed token cross-entropy of ``head(hidden)`` against ``targets`` (``IGNORE`` skipped), chunk by chunk.

    ``hidden`` is ``(N, H)``, ``targets`` ``(N,)``; ``head`` is the LM head module (called per chunk, so
    ZeRO-3 and FSDP see an ordinary module call). Chunks without a target are skipped.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    chunk_tokens = chunk_tokens or hidden.shape[0]            # 0: one chunk (full logits, recomputed)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_tokens):
        tgt = targets[start:start + chunk_tokens]
        if not bool((tgt != IGNORE).any()):
            continue
        total = total + checkpoint(_chunk_loss, hidden[start:start + chunk_tokens], head, tgt, use_reentrant=False)
    return total


def plain_cross_entropy(logits, targets):
    """The reference: full fp32 logits, one cross-entropy (what the loop did before chunking)."""
    import torch

    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")


def install_packed_loss(model, chunk_tokens: int = 1024) -> None:
    """Make ``model(...)`` return the summed loss of a packed micro-batch, without full logits.

    The instance's ``forward`` is replaced (module hooks, DDP, FSDP and DeepSpeed keep working, and the state
    dict keeps its names): ``model(input_ids=(1, T), position_ids=(1, T), targets=(T,), **attention_kwargs)``
    runs the decoder, then :func:`chunked_linear_cross_entropy` on its last hidden state.
    """
    import types

    def forward(self, input_ids, position_ids, targets, **kwargs):
        hidden = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False, **kwargs).last_hidden_state
        return chunked_linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), self.get_output_embeddings(),
                                            targets, chunk_tokens=chunk_tokens)

    model.forward = types.MethodType(forward, model)
