"""The reference backend: chunking, GQA, unequal lengths, fully masked rows, dtypes, 32K."""

import math

import pytest
import torch
import torch.nn.functional as F

import attncomp as ac
from attncomp.backends.reference import chunkable
from attncomp.variants import REGISTRY, example_inputs


@pytest.mark.parametrize("name", ["document", "alibi", "differential", "causal_linear", "gated_attention",
                                  "neighborhood_2d_tiled", "per_head_window"])
def test_chunked_equals_unchunked(name):
    variant = REGISTRY[name]
    program = variant.build()
    ex = variant.example(100)
    tensors = variant.example_tensors(ex)
    inputs = example_inputs(program, ex, dtype=torch.float64)
    whole = ac.compile(program, budget=1 << 40)(**inputs, **tensors)
    chunked = ac.compile(program, budget=1)(**inputs, **tensors)  # one query row per chunk
    assert chunkable(program)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)


def test_linear_state_cascade_is_not_chunked_over_rows_it_sums():
    spec = ac.cascade("""
        KV[b,h,d,e] = K[b,h,n,d] * V[b,h,n,e]
        O[b,h,m,e] = Q[b,h,m,d] * KV
    """)
    assert chunkable(spec)  # the state has no m: computed once, reused by every chunk
    q, k, v = (torch.randn(1, 2, 33, 4, dtype=torch.float64) for _ in range(3))
    out = ac.compile(spec, budget=8)(q, k, v)
    torch.testing.assert_close(out, q @ (k.transpose(-1, -2) @ v))
    summed = ac.cascade("""
        Z[b,h,d] = Q[b,h,m,d]
        O[b,h,m,e] = Z * K[b,h,m,e]
    """)
    assert not chunkable(summed)


def test_gqa_matches_repeated_heads():
    spec = ac.variants.causal()
    q = torch.randn(2, 8, 50, 16, dtype=torch.float64)
    k, v = torch.randn(2, 2, 50, 16, dtype=torch.float64), torch.randn(2, 2, 50, 16, dtype=torch.float64)
    out = ac.compile(spec)(q, k, v)
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), is_causal=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))


def test_unequal_lengths_and_value_dim():
    q, k, v = torch.randn(1, 2, 37, 8, dtype=torch.float64), torch.randn(1, 2, 91, 8, dtype=torch.float64), \
        torch.randn(1, 2, 91, 24, dtype=torch.float64)
    out = ac.compile(ac.variants.sliding_window(20))(q, k, v)
    i, j = torch.arange(37)[:, None], torch.arange(91)[None, :]
    mask = (i >= j) & (i - j < 20)
    assert out.shape == (1, 2, 37, 24)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_fully_masked_rows_give_zeros_not_nan():
    def late_start(b, h, q_idx, kv_idx):
        return (q_idx >= 10) & (kv_idx <= q_idx)
    q, k, v = (torch.randn(1, 2, 30, 8, dtype=torch.float64) for _ in range(3))
    out = ac.compile(ac.attention(mask=late_start))(q, k, v)
    assert not torch.isnan(out).any()
    assert torch.equal(out[:, :, :10], torch.zeros_like(out[:, :, :10]))
    i, j = torch.arange(30)[:, None], torch.arange(30)[None, :]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=(i >= 10) & (j <= i))
    torch.testing.assert_close(out[:, :, 10:], expected[:, :, 10:])


def test_all_minus_inf_scores_give_zeros():
    def nothing_before_10(score, b, h, q_idx, kv_idx):
        return torch.where(q_idx >= 10, score, -float("inf"))
    q, k, v = (torch.randn(1, 1, 20, 4, dtype=torch.float64) for _ in range(3))
    out = ac.compile(ac.attention(score=nothing_before_10))(q, k, v)
    assert torch.equal(out[0, 0, :10], torch.zeros(10, 4, dtype=torch.float64))
    assert not torch.isnan(out).any()


def test_fully_masked_rows_in_sigmoid_and_linear_cascades():
    def nothing(b, h, q_idx, kv_idx):
        return kv_idx > q_idx + 100
    sigmoid = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = sigmoid(S) * V[b,h,n,e]
    """, mask=nothing)
    linear = ac.cascade("""
        A[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        Z[b,h,m] = A
        O[b,h,m,e] = A * V[b,h,n,e] / (Z + 1e-6)
    """, mask=nothing)
    q, k, v = (torch.randn(1, 2, 20, 4, dtype=torch.float64) for _ in range(3))
    for spec in (sigmoid, linear):
        out = ac.compile(spec)(q, k, v)
        assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    q, k, v = (torch.randn(1, 2, 40, 16, dtype=torch.float64) for _ in range(3))
    out = ac.compile(ac.variants.causal())(q.to(dtype), k.to(dtype), v.to(dtype))
    assert out.dtype == dtype
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    tol = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


def test_explicit_scale():
    q, k, v = (torch.randn(1, 1, 16, 8, dtype=torch.float64) for _ in range(3))
    out = ac.compile(ac.attention(scale=0.05))(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.05))


@pytest.mark.slow
def test_32k_tokens_fit_in_memory():
    """32K x 32K scores are 4 GiB in float32; chunking keeps the peak to a few hundred MiB."""
    S = 32768
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, S, 16, generator=gen) for _ in range(3))
    out = ac.compile(ac.variants.sliding_window(4096))(q, k, v)
    rows = torch.tensor([0, 4095, 4096, 20000, S - 1])
    s = (q[0, 0, rows].double() @ k[0, 0].double().T) / math.sqrt(16)
    cols = torch.arange(S)[None, :]
    s = s.masked_fill((cols > rows[:, None]) | (rows[:, None] - cols >= 4096), float("-inf"))
    torch.testing.assert_close(out[0, 0, rows].double(), torch.softmax(s, -1) @ v[0, 0].double(), rtol=1e-4, atol=1e-5)
