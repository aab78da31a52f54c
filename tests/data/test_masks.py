"""Loss masks checked against the chat template's actual rendering (transformers' apply_chat_template)."""

from __future__ import annotations

import numpy as np
import pytest

from latxa.components.data.formatting import ChatFormatter, mask_from_offsets
from latxa.components.data.sources import RecordError

EOT = "<|eot_id|>"


def _formatter(tok) -> ChatFormatter:
    special = {k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)}
    return ChatFormatter(tok.chat_template, special)


def _mask(tok, fmt, msgs):
    text, spans = fmt.render_with_spans(msgs)
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    mask, boundary = mask_from_offsets(enc.offsets, spans)
    return text, np.asarray(enc.ids), mask, boundary


def _token_prefix_mask(tok, msgs) -> np.ndarray:
    """Expected mask from token-level prefixes of transformers' own rendering (independent of our offsets)."""
    full = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)
    mask = np.zeros(len(full), bool)
    for i, m in enumerate(msgs):
        if m["role"] == "assistant":
            lo = len(tok.apply_chat_template(msgs[:i], tokenize=True, add_generation_prompt=True, return_dict=False))
            hi = len(tok.apply_chat_template(msgs[: i + 1], tokenize=True, return_dict=False))
            mask[lo:hi] = True
    return mask


def test_rendering_matches_transformers_and_always_has_system_header(hf_tokenizer, h):
    fmt = _formatter(hf_tokenizer)
    convs = h.sample_conversations()
    assert len(convs) == 721
    for msgs in convs:
        ours = fmt.render(msgs)
        assert ours == hf_tokenizer.apply_chat_template(msgs, tokenize=False)
        assert ours.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")


def test_unmasked_tokens_decode_to_assistant_text_on_every_sample_conversation(hf_tokenizer, h):
    fmt = _formatter(hf_tokenizer)
    for msgs in h.sample_conversations():
        text, ids, mask, boundary = _mask(hf_tokenizer, fmt, msgs)
        assert boundary == 0
        # Each contiguous run of trainable tokens is one assistant reply plus its <|eot_id|>.
        runs, start = [], None
        for t, on in enumerate(list(mask) + [False]):
            if on and start is None:
                start = t
            elif not on and start is not None:
                runs.append(ids[start:t])
                start = None
        replies = [m["content"].strip() + EOT for m in msgs if m["role"] == "assistant"]
        decoded = [hf_tokenizer.decode(r.tolist(), skip_special_tokens=False) for r in runs]
        assert decoded == replies
        # Nothing of the system prompt, user turns or headers is trained.
        assert hf_tokenizer.decode(ids[~mask].tolist()).count("<|start_header_id|>assistant") == len(replies)


def test_masks_equal_token_prefix_masks_from_transformers(hf_tokenizer, h):
    fmt = _formatter(hf_tokenizer)
    convs = h.sample_conversations()
    for msgs in convs[::7] + [c for c in convs if len(c) >= 4][:20]:
        _, ids, mask, _ = _mask(hf_tokenizer, fmt, msgs)
        assert ids.tolist() == hf_tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False)
        assert mask.tolist() == _token_prefix_mask(hf_tokenizer, msgs).tolist()


def test_template_that_is_not_prefix_stable_is_rejected(hf_tokenizer):
    # A template that prints the number of messages up front changes earlier text as turns are added.
    bad = "{{ bos_token }}{{ messages|length }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|eot_id|>{% endfor %}"
    fmt = ChatFormatter(bad, {"bos_token": "<|begin_of_text|>"})
    with pytest.raises(RecordError, match="prefix"):
        fmt.render_with_spans([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_template_exception_becomes_record_error(hf_tokenizer):
    fmt = _formatter(hf_tokenizer)
    with pytest.raises(RecordError, match="rejected"):
        fmt.render_with_spans([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "b"}])


def test_fast_mask_equals_offset_mask_including_straddling_tokens(hf_tokenizer, h):
    from latxa.components.data.formatting import mask_from_encoding

    fmt = _formatter(hf_tokenizer)
    for msgs in h.sample_conversations()[::5]:
        text, spans = fmt.render_with_spans(msgs)
        enc = hf_tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
        fast, b1 = mask_from_encoding(enc, spans)
        slow, b2 = mask_from_offsets(enc.offsets, spans)
        assert fast.tolist() == slow.tolist() and b1 == b2
    # A span that starts inside a token: that token is not trained and is counted as a boundary token.
    enc = hf_tokenizer.backend_tokenizer.encode("Kaixo mundua", add_special_tokens=False)
    lo = enc.offsets[1][0] + 1 if enc.offsets[1][1] - enc.offsets[1][0] > 1 else enc.offsets[0][0] + 1
    spans = [(lo, len("Kaixo mundua"))]
    fast, b1 = mask_from_encoding(enc, spans)
    slow, b2 = mask_from_offsets(enc.offsets, spans)
    assert fast.tolist() == slow.tolist() and b1 == b2 == 1
