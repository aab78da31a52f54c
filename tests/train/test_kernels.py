"""The maskless packed attention and the chunked linear cross-entropy equal today's paths (loss and gradients)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _packed_batch(seq_len=96, rows=2, vocab=2000, seed=0):
    """Rows of several documents (position_ids restart at 0), a quarter of each without loss, padding at the end."""
    g = torch.Generator().manual_seed(seed)
    ids, labels, pos = [], [], []
    for _ in range(rows):
        r_ids, r_lab, r_pos = [], [], []
        while len(r_ids) < seq_len - 8:
            n = int(torch.randint(4, 30, (1,), generator=g))
            n = min(n, seq_len - len(r_ids))
            doc = torch.randint(10, vocab, (n,), generator=g).tolist()
            r_ids += doc
            r_lab += [-100] * (n // 4) + doc[n // 4:]
            r_pos += list(range(n))
        nxt = r_pos[-1] + 1
        while len(r_ids) < seq_len:                     # padding continues the last document's positions
            r_ids.append(0)
            r_lab.append(-100)
            r_pos.append(nxt)
            nxt += 1
        ids.append(r_ids)
        labels.append(r_lab)
        pos.append(r_pos)
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(pos)


def _load(tiny_model, impl):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    if impl != "sdpa":
        model.set_attn_implementation(impl)
    return model.train()


def _reference_loss(model, ids, labels, pos):
    """Today's path: the 4D block-diagonal mask, full fp32 logits, one cross-entropy."""
    from latxa.components.train.data import packed_attention_mask
    from latxa.components.train.loss import plain_cross_entropy

    out = model(input_ids=ids, position_ids=pos, attention_mask=packed_attention_mask(pos, torch.float32))
    return plain_cross_entropy(out.logits[:, :-1], labels[:, 1:]) / _count(labels)


def _count(labels):
    """Trainable tokens: the loop's loss is the token-weighted mean (the sum over this count)."""
    return int((labels[:, 1:] != -100).sum())


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_close(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= atol, worst


def test_maskless_packed_attention_equals_the_masked_path(tiny_model):
    from latxa.components.train.attention import packed_kwargs, register
    from latxa.components.train.loss import plain_cross_entropy, shifted_targets

    ids, labels, pos = _packed_batch()
    ref = _load(tiny_model, "sdpa")
    ref_loss = _reference_loss(ref, ids, labels, pos)
    ref_loss.backward()

    new = _load(tiny_model, register())
    flat = dict(input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1), **packed_kwargs(pos))
    logits = new(**flat).logits.reshape(-1, new.config.vocab_size)
    loss = plain_cross_entropy(logits, shifted_targets(labels).reshape(-1)) / _count(labels)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(ref_loss.detach()), abs=1e-5)
    _assert_close(_grads(new), _grads(ref))
    # and the documents really are isolated: without the boundaries the same flat row gives another loss
    leaky = new(input_ids=ids.reshape(1, -1), position_ids=torch.arange(ids.numel())[None]).logits
    assert abs(float(plain_cross_entropy(leaky.reshape(-1, leaky.shape[-1]), shifted_targets(labels).reshape(-1)))
               / _count(labels) - float(loss)) > 1e-3


def test_packed_kwargs_mark_document_starts():
    from latxa.components.train.attention import packed_kwargs

    kw = packed_kwargs(torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]))
    assert kw["cu_seq_lens_q"].tolist() == [0, 3, 5, 7, 10] and kw["max_length_q"] == 3


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_chunked_linear_cross_entropy_equals_full_logits(chunk, fused):
    from latxa.components.train.loss import (
        chunked_linear_cross_entropy,
        fused_linear_cross_entropy,
        plain_cross_entropy,
    )

    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(150, 32, generator=g, requires_grad=True)
    head = torch.nn.Linear(32, 1000, bias=False)
    targets = torch.randint(0, 1000, (150,), generator=g)
    targets[:40] = -100                                    # a prompt without loss, some chunks entirely ignored
    full = plain_cross_entropy(head(hidden), targets)
    gh, gw = torch.autograd.grad(full, (hidden, head.weight))
    if fused:
        chunked = fused_linear_cross_entropy(hidden, head.weight, targets, chunk_tokens=chunk)
    else:
        chunked = chunked_linear_cross_entropy(hidden, head, targets, chunk_tokens=chunk)
    ch, cw = torch.autograd.grad(chunked, (hidden, head.weight))
    assert float(chunked) == pytest.approx(float(full), abs=1e-5, rel=1e-6)
    assert float((ch - gh).abs().max()) <= 1e-5 and float((cw - gw).abs().max()) <= 1e-5


@pytest.mark.parametrize("fused", [True, False])
def test_model_forward_returns_the_packed_loss_of_the_reference(tiny_model, fused):
    """The whole new path (maskless attention + chunked loss inside forward) against the whole old one."""
    from latxa.components.train.attention import packed_kwargs, register
    from latxa.components.train.loss import install_packed_loss, shifted_targets

    ids, labels, pos = _packed_batch(rows=2, seed=3)
    ref = _load(tiny_model, "sdpa")
    ref_loss = _reference_loss(ref, ids, labels, pos)
    ref_loss.backward()
    new = _load(tiny_model, register())
    install_packed_loss(new, chunk_tokens=50, fused=fused)
    loss = new(input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1),
               targets=shifted_targets(labels).reshape(-1), **packed_kwargs(pos)) / _count(labels)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(ref_loss.detach()), abs=1e-5)
    _assert_close(_grads(new), _grads(ref))
    assert set(new.state_dict()) == set(ref.state_dict())          # names unchanged: checkpoints and export


def test_neftune_noise_scales_with_the_row_length_not_the_flattened_batch():
    """The maskless path feeds (1, B*L) tokens; NEFTune's alpha/sqrt(L*d) must still use the row length L."""
    from types import SimpleNamespace

    from latxa.components.train.loop import add_neftune

    def noise(shape, seq_len):
        emb = torch.nn.Embedding(100, 16)
        model = SimpleNamespace(get_input_embeddings=lambda: emb)
        add_neftune(model, 5.0, seq_len)
        ids = torch.zeros(shape, dtype=torch.long)
        torch.manual_seed(0)
        return (emb(ids) - emb.weight[0]).detach()

    rows = noise((2, 64), 64)
    flat = noise((1, 128), 64)
    assert torch.allclose(flat.reshape(2, 64, 16), rows, atol=1e-6)   # same noise as the reference's rows
    assert float(rows.abs().max()) <= 5.0 / (64 * 16) ** 0.5 and float(rows.abs().max()) > 0.1
