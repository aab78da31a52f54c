"""Attention over packed rows without a materialised mask: documents are isolated by ``position_ids``.

A packed row holds several documents whose ``position_ids`` restart at 0. Instead of a ``(B, 1, L, L)``
block-diagonal mask (``data.packed_attention_mask``, O(L^2) memory, which rules out FlashAttention and the
causal fast path), the micro-batch is flattened to one row of ``B x L`` tokens and the document boundaries
are handed to the attention kernel as cumulative lengths (``cu_seq_lens_q/k``, ``max_length_q/k``: the
keyword arguments transformers' packed-sequence path takes):

- on a GPU with ``flash_attn`` installed: ``flash_attention_2``, whose varlen kernel reads them directly;
- otherwise: :func:`packed_sdpa_attention` (registered as ``latxa_packed_sdpa``), one causal
  ``scaled_dot_product_attention`` per document (``is_causal=True``, no mask tensor), which selects the
  flash/memory-efficient SDPA kernels on CPU and GPU alike. transformers builds no mask for it.

Both compute exactly what the masked path computes (tested to 1e-5 on CPU).
"""

from __future__ import annotations

PACKED_SDPA = "latxa_packed_sdpa"


def packed_kwargs(position_ids) -> dict:
    """Document boundaries of a flattened packed row: the attention kwargs of transformers' packed path.

    ``position_ids`` is ``(B, L)`` (or already ``(1, B*L)``); a document starts wherever the position is 0.
    """
    import torch

    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).reshape(-1)
    if starts.numel() == 0 or int(starts[0]) != 0:
        starts = torch.cat([starts.new_zeros(1), starts])
    cu = torch.cat([starts, starts.new_tensor([flat.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                          cu_seq_lens_q=None, **_kwargs):
    """transformers attention interface: causal SDPA per packed document, no mask tensor.

    ``query`` is ``(1, H, T, D)``, ``key``/``value`` ``(1, H_kv, T, D)``; returns ``(1, T, H, D)`` as the
    built-in SDPA attention does. Without ``cu_seq_lens_q`` the row is one causal sequence.
    """
    import torch
    import torch.nn.functional as F

    if attention_mask is not None:
        raise ValueError(f"{PACKED_SDPA} takes no attention mask; pass the packed row's cu_seq_lens instead")
    gqa = query.shape[1] != key.shape[1]
    total = query.shape[2]
    bounds = cu_seq_lens_q.tolist() if cu_seq_lens_q is not None else [0, total]
    p = dropout if module.training else 0.0
    outs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=p,
                                           is_causal=True, scale=scaling, enable_gqa=gqa)
            for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s]
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :func:`packed_sdpa_attention` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    return PACKED_SDPA


def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def attention_implementation(backend: str, requested: str = "auto") -> str:
    """The attention implementation a run uses: ``flash_attention_2`` on GPU when installed, else packed SDPA.

    ``requested`` may force ``flash_attention_2``, ``latxa_packed_sdpa`` (``packed_sdpa``) or ``masked_sdpa``
    (today's 4D block-diagonal mask with SDPA, kept as the reference path).
    """
    if requested in ("masked_sdpa", "sdpa"):
        return "sdpa"
    if requested in ("packed_sdpa", PACKED_SDPA):
        return register()
    if requested == "flash_attention_2" or (requested == "auto" and backend == "gpu" and flash_attn_available()):
        return "flash_attention_2"
    return register()
