"""Causal-LM loss without full-vocabulary fp32 logits: a chunked linear cross-entropy.

The plain loss computes ``logits = hidden @ W^T`` for every token (2 x 8192 x 128,256 values: 8 GiB in fp32
per micro-batch at 8B, held for the backward pass), then cross-entropy. Here the tokens are split into chunks,
so at most one chunk's logits (``chunk_tokens x V``, fp32) exist at any time:

- :func:`fused_linear_cross_entropy` (DDP, FSDP, one process): as Liger's fused linear cross-entropy, each chunk's
  gradients are computed in the forward pass (``softmax - onehot``, then ``@ W`` for the hidden states and
  accumulated into one fp32 ``V x H`` buffer for the weight), so the backward pass only scales them;
- :func:`chunked_linear_cross_entropy` (DeepSpeed ZeRO-3, which gathers the LM head only when the module is
  called): each chunk's loss through the head module, recomputed in the backward pass (checkpointing per chunk).

The arithmetic per token is the plain loss's (same matmul, fp32 log-softmax), so loss and gradients agree with
it to rounding (tested to 1e-5). The reference used Liger's Triton kernel; these need no extra kernel.
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


def _fused_function():
    import torch

    class FusedLinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, chunk_tokens, grad_enabled):
            # under no_grad (the held-out loss) no gradient buffers: the weight's alone is V x H fp32 (4 GiB at 70B)
            want_h, want_w = grad_enabled and hidden.requires_grad, grad_enabled and weight.requires_grad
            grad_h = torch.zeros_like(hidden) if want_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk_tokens):
                tgt = targets[start:start + chunk_tokens]
                valid = tgt != IGNORE
                if not bool(valid.any()):
                    continue
                h = hidden[start:start + chunk_tokens]
                logits = (h @ weight.t()).float()
                lse = torch.logsumexp(logits, dim=-1)
                safe = tgt.clamp(min=0)
                picked = logits.gather(1, safe[:, None]).squeeze(1)
                total += ((lse - picked) * valid).sum()
                if not (want_h or want_w):
                    continue
                probs = logits.sub_(lse[:, None]).exp_()            # d(sum of losses)/d(logits) = softmax - onehot
                probs[torch.arange(probs.shape[0], device=probs.device), safe] -= 1.0
                probs.mul_(valid[:, None])
                g = probs.to(h.dtype)
                if want_h:
                    grad_h[start:start + chunk_tokens] = g @ weight
                if want_w:
                    grad_w += (g.t() @ h).float()
                del logits, probs, g
            ctx.save_for_backward(grad_h if want_h else None, grad_w if want_w else None)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx, grad_out):
            grad_h, grad_w = ctx.saved_tensors
            gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
            gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
            return gh, gw, None, None, None

    return FusedLinearCrossEntropy


_FUSED = None


def fused_linear_cross_entropy(hidden, weight, targets, chunk_tokens: int = 1024):
    """Summed token cross-entropy of ``hidden @ weight.T`` against ``targets``, gradients computed chunk by chunk
    in the forward pass (no logits kept for backward). ``hidden`` ``(N, H)``, ``weight`` ``(V, H)``."""
    global _FUSED
    if _FUSED is None:
        _FUSED = _fused_function()
    import torch

    return _FUSED.apply(hidden, weight, targets, chunk_tokens or hidden.shape[0], torch.is_grad_enabled())


def plain_cross_entropy(logits, targets):
    """The reference: full fp32 logits, one cross-entropy (what the loop did before chunking)."""
    import torch

    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")


def install_packed_loss(model, chunk_tokens: int = 1024, fused: bool = True) -> None:
    """Make ``model(...)`` return the summed loss of a packed micro-batch, without full logits.

    The instance's ``forward`` is replaced (module hooks, DDP, FSDP and DeepSpeed keep working, and the state
    dict keeps its names): ``model(input_ids=(1, T), position_ids=(1, T), targets=(T,), **attention_kwargs)``
    runs the decoder, then :func:`fused_linear_cross_entropy` (or, ``fused=False`` for DeepSpeed ZeRO-3,
    :func:`chunked_linear_cross_entropy` through the head module) on its last hidden state.
    """
    import types

    def forward(self, input_ids, position_ids, targets, **kwargs):
        hidden = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False, **kwargs).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        head = self.get_output_embeddings()
        if fused and getattr(head, "bias", None) is None:
            return fused_linear_cross_entropy(hidden, head.weight, targets, chunk_tokens=chunk_tokens)
        return chunked_linear_cross_entropy(hidden, head, targets, chunk_tokens=chunk_tokens)

    model.forward = types.MethodType(forward, model)
