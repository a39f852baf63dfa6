"""FlexAttention-style mask_mods and score_mods, written exactly as users write them
(attention-gym idioms), traced and run on the reference backend against SDPA with the
dense mask / bias built independently here."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import and_masks, or_masks

import attncomp as ac

B, H, S, D = 2, 4, 96, 16
i = torch.arange(S)[:, None]
j = torch.arange(S)[None, :]

# --- captured data, as users hold it ------------------------------------------------------
prefix_length = torch.tensor([17, 60])
document_id = torch.tensor([0] * 30 + [1] * 25 + [2] * 41)
doc_ids_2d = torch.stack([document_id, torch.tensor([0] * 50 + [1] * 46)])
alibi_bias = torch.tensor([0.5, 0.25, 0.125, 0.0625])
offsets = torch.tensor([0, 30, 55])
rel_table = torch.randn(H, 2 * S - 1, generator=torch.Generator().manual_seed(0))
WINDOW = 24
SOFTCAP = 20.0
DILATION = 3
IMG_W, IMG_H, K_W, K_H = 12, 8, 5, 3


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def sliding_window_causal(b, h, q_idx, kv_idx):
    causal_mask = q_idx >= kv_idx
    window_mask = q_idx - kv_idx <= WINDOW
    return causal_mask & window_mask


def prefix_lm_causal(b, h, q_idx, kv_idx):
    return kv_idx <= prefix_length[b]


def document_causal(b, h, q_idx, kv_idx):
    causal_mask = q_idx >= kv_idx
    document_mask = document_id[q_idx] == document_id[kv_idx]
    return causal_mask & document_mask


def document_batched(b, h, q_idx, kv_idx):
    return torch.logical_and(doc_ids_2d[b, q_idx] == doc_ids_2d[b, kv_idx], q_idx >= kv_idx)


def doc_relative_window(b, h, q_idx, kv_idx):
    # attention-gym's generate_doc_mask_mod: an inner mask on document-local positions
    same_doc = document_id[q_idx] == document_id[kv_idx]
    q_logical = q_idx - offsets[document_id[q_idx]]
    kv_logical = kv_idx - offsets[document_id[kv_idx]]
    inner = (q_logical >= kv_logical) & (q_logical - kv_logical < 8)
    return same_doc & inner


def dilated_sliding_window(b, h, q_idx, kv_idx):
    diff = q_idx - kv_idx
    in_window = (diff >= 0) & (diff < WINDOW * DILATION)
    return in_window & (diff % DILATION == 0)


def get_x_y(idx):
    return idx // IMG_W, idx % IMG_W


def natten_mask(b, h, q_idx, kv_idx):
    q_x, q_y = get_x_y(q_idx)
    kv_x, kv_y = get_x_y(kv_idx)
    kernel_x = q_x.clamp(K_H // 2, (IMG_H - 1) - K_H // 2)
    kernel_y = q_y.clamp(K_W // 2, (IMG_W - 1) - K_W // 2)
    hori_mask = (kernel_x - kv_x).abs() <= K_H // 2
    vert_mask = (kernel_y - kv_y).abs() <= K_W // 2
    return hori_mask & vert_mask


def global_or_local(b, h, q_idx, kv_idx):
    is_global = torch.logical_or(q_idx < 4, kv_idx < 4)
    local = torch.abs(q_idx - kv_idx) <= 6
    return is_global | local


def not_self(b, h, q_idx, kv_idx):
    return torch.logical_not(q_idx == kv_idx) & (torch.minimum(q_idx, kv_idx) >= torch.maximum(q_idx - 40, kv_idx * 0))


def alibi(score, b, h, q_idx, kv_idx):
    bias = alibi_bias[h] * (kv_idx - q_idx)
    return score + bias


def tanh_softcap(score, b, h, q_idx, kv_idx):
    score = score / SOFTCAP
    score = torch.tanh(score)
    score = score * SOFTCAP
    return score


def relative_positional(score, b, h, q_idx, kv_idx):
    return score + (q_idx - kv_idx)


def head_bias(score, b, h, q_idx, kv_idx):
    return score + rel_table[h, q_idx - kv_idx + S - 1]


def causal_as_score(score, b, h, q_idx, kv_idx):
    return torch.where(q_idx >= kv_idx, score, -float("inf"))


def distance_decay(score, b, h, q_idx, kv_idx):
    return score * torch.exp(-0.05 * torch.clamp(torch.abs(q_idx - kv_idx), max=30).float())


# --- independent dense masks / biases ---------------------------------------------------------
def natten_dense():
    qx, qy = i // IMG_W, i % IMG_W
    kx, ky = j // IMG_W, j % IMG_W
    cx = qx.clamp(K_H // 2, IMG_H - 1 - K_H // 2)
    cy = qy.clamp(K_W // 2, IMG_W - 1 - K_W // 2)
    return ((cx - kx).abs() <= K_H // 2) & ((cy - ky).abs() <= K_W // 2)


def doc_relative_dense():
    d = document_id
    ql = i - offsets[d][:, None]
    kl = j - offsets[d][None, :]
    return (d[:, None] == d[None, :]) & (ql >= kl) & (ql - kl < 8)


MASKS = [
    (causal, i >= j),
    (sliding_window_causal, (i >= j) & (i - j <= WINDOW)),
    (prefix_lm_causal, (j[None] <= prefix_length[:, None, None])[:, None]),
    (document_causal, (i >= j) & (document_id[:, None] == document_id[None, :])),
    (document_batched, ((doc_ids_2d[:, :, None] == doc_ids_2d[:, None, :]) & (i >= j))[:, None]),
    (doc_relative_window, doc_relative_dense()),
    (dilated_sliding_window, (i - j >= 0) & (i - j < WINDOW * DILATION) & ((i - j) % DILATION == 0)),
    (natten_mask, natten_dense()),
    (global_or_local, (i < 4) | (j < 4) | ((i - j).abs() <= 6)),
    (not_self, (i != j) & (torch.minimum(i, j) >= torch.maximum(i - 40, torch.zeros_like(j)))),
    (and_masks(causal, sliding_window_causal), (i >= j) & (i - j <= WINDOW)),
    (or_masks(prefix_lm_causal, causal), ((j[None] <= prefix_length[:, None, None]) | (i >= j))[:, None]),
]

SCORES = [
    (alibi, lambda s: s + alibi_bias.double()[:, None, None] * (j - i)),
    (tanh_softcap, lambda s: SOFTCAP * torch.tanh(s / SOFTCAP)),
    (relative_positional, lambda s: s + (i - j)),
    (head_bias, lambda s: s + rel_table.double()[:, i - j + S - 1]),
    (causal_as_score, lambda s: s.masked_fill(~(i >= j), float("-inf"))),
    # .float() is float32, as the user wrote it (torch computes the exp in float32)
    (distance_decay, lambda s: s * torch.exp(-0.05 * torch.clamp((i - j).abs(), max=30).float())),
]


@pytest.fixture(scope="module")
def qkv():
    gen = torch.Generator().manual_seed(42)
    return [torch.randn(B, H, S, D, generator=gen, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("fn,dense", MASKS, ids=[getattr(f, "__name__", "?") for f, _ in MASKS])
def test_mask_mod_traces_and_matches_sdpa(fn, dense, qkv):
    q, k, v = qkv
    out = ac.compile(ac.attention(mask=fn))(q, k, v)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=dense.expand(B, H, S, S))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn,transform", SCORES, ids=[f.__name__ for f, _ in SCORES])
def test_score_mod_traces_and_matches_dense(fn, transform, qkv):
    q, k, v = qkv
    out = ac.compile(ac.attention(score=fn))(q, k, v)
    s = transform(q @ k.transpose(-1, -2) / math.sqrt(D))
    expected = torch.softmax(s, -1) @ v
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_mask_and_score_together(qkv):
    q, k, v = qkv
    out = ac.compile(ac.attention(mask=document_causal, score=alibi))(q, k, v)
    bias = alibi_bias.double()[:, None, None] * (j - i)
    dense = (i >= j) & (document_id[:, None] == document_id[None, :])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~dense, float("-inf")))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_captured_tensors_become_named_runtime_tensors():
    spec = ac.attention(mask=document_causal, score=alibi)
    assert set(spec.tensors) == {"document_id", "alibi_bias"}
    assert spec.tensors["document_id"].dims == (S,)
    assert dict(spec.bindings)["alibi_bias"] is alibi_bias


def test_captured_tensor_can_be_replaced_at_call_time(qkv):
    q, k, v = qkv
    kernel = ac.compile(ac.attention(mask=prefix_lm_causal))
    other = torch.tensor([5, 90])
    out = kernel(q, k, v, prefix_length=other)
    dense = (j[None] <= other[:, None, None])[:, None]
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=dense.expand(B, H, S, S)))


def test_traced_mask_prints_with_flex_names_in_errors():
    def bad(b, h, q_idx, kv_idx):
        return doc_ids_2d[b, q_idx / 2] == 0
    with pytest.raises(ac.AttncompError, match=r"q_idx / 2"):
        ac.attention(mask=bad)


def test_params_are_named_in_program():
    W = ac.param("window", 64)
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx < W))
    assert spec.params["window"] == 64
    assert spec.with_params(window=8).params["window"] == 8
