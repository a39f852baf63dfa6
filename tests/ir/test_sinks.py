"""A softmax's sink logit (``softmax[n](x, sink)``, gpt-oss's learned sinks): traced, printed,
parsed, verified, evaluated; the backends' agreement is in tests/backends."""

import math

import pytest
import torch

import attncomp as ac
from attncomp.errors import AttncompError, CascadeError
from attncomp.ir import parse_program


def test_sink_round_trips_through_text():
    spec = ac.variants.learned_sinks(window=64)
    assert parse_program(str(spec), name=spec.name) == spec
    assert "softmax[n](S * scale, sinks[h])" in str(spec)


def test_cascade_text_with_a_sink_runs_as_its_formula():
    """softmax with a sink of 0 is the "off-by-one" softmax: exp(x_n) / (1 + sum exp(x_n))."""
    spec = ac.cascade("""
    S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
    P[b,h,m,n] = softmax[n](S * scale, 0.0)
    O[b,h,m,e] = P * V[b,h,n,e]
    """, name="off_by_one")
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64) for _ in range(3))
    e = torch.exp(q @ k.transpose(-1, -2) / 2)
    expected = (e / (1 + e.sum(-1, keepdim=True))) @ v
    torch.testing.assert_close(ac.compile(spec, backend="reference")(q, k, v), expected)


def test_a_sink_depending_on_the_key_is_refused():
    with pytest.raises(AttncompError, match="sink logit"):
        ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale, n * 0.5)
        O[b,h,m,e] = P * V[b,h,n,e]
        """)


def test_a_sink_is_a_number_of_three_indices():
    with pytest.raises(AttncompError, match="sink function .* takes 4 argument"):
        ac.attention(sink=lambda b, h, q_idx, kv_idx: 0.0)
    with pytest.raises(AttncompError, match="a sink is a logit"):
        ac.attention(sink=lambda b, h, q_idx: q_idx > 3)
    with pytest.raises(AttncompError, match="sink must be a function"):
        ac.attention(sink=1.5)


def test_sink_lent_by_a_program_and_per_row():
    base = ac.variants.learned_sinks(window=8)
    spec = ac.attention(mask=ac.variants.causal(), sink=base, name="causal_sinks")
    assert spec.tensors.keys() == {"sinks"}
    with pytest.raises(AttncompError, match="no sink logit"):
        ac.attention(sink=ac.variants.causal())
    # a sink that grows with the row: its weight, e^sink / (e^sink + sum), by hand
    spec = ac.attention(sink=lambda b, h, q_idx: q_idx * 0.25, name="row_sink")
    q, k, v = (torch.randn(1, 1, 5, 4, dtype=torch.float64) for _ in range(3))
    out = ac.compile(spec, backend="reference")(q, k, v)
    s = q @ k.transpose(-1, -2) / 2
    z = torch.exp(s).sum(-1, keepdim=True) + torch.exp(torch.arange(5.0, dtype=torch.float64) * 0.25)[:, None]
    torch.testing.assert_close(out, torch.exp(s) / z @ v)
    assert math.isfinite(out.abs().max().item())


def test_empty_rows_give_zero_with_a_sink():
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= 3) & (kv_idx <= q_idx),
                        sink=lambda b, h, q_idx: 1.0)
    q, k, v = (torch.randn(1, 1, 6, 4) for _ in range(3))
    out = ac.compile(spec, backend="reference")(q, k, v)
    assert torch.equal(out[:, :, :3], torch.zeros_like(out[:, :, :3]))


def test_verify_names_the_bad_sink():
    with pytest.raises(CascadeError, match="boolean"):
        ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale, m > 2)
        O[b,h,m,e] = P * V[b,h,n,e]
        """)
