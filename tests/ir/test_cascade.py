"""Einsum cascades written as text, against plain torch implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

import attncomp as ac
from attncomp.ir.passes import eliminate_dead, optimize

B, H, Sq, Skv, D = 2, 3, 45, 61, 8


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


@pytest.fixture(scope="module")
def t():
    gen = torch.Generator().manual_seed(5)

    def make(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    return make


def causal_dense(sq=Sq, skv=Skv):
    return torch.arange(sq)[:, None] >= torch.arange(skv)[None, :]


def test_differential_attention(t):
    spec = ac.cascade("""
        input Q1[b,h,m,d], K1[b,h,n,d], Q2[b,h,m,d], K2[b,h,n,d], V[b,h,n,e]
        S1[b,h,m,n] = Q1 * K1
        S2[b,h,m,n] = Q2 * K2
        O[b,h,m,e] = (softmax[n](S1 * scale) - lam * softmax[n](S2 * scale)) * V
    """, mask=causal, params={"lam": 0.3})
    q1, k1, q2, k2, v = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, 2 * D)
    out = ac.compile(spec)(q1, k1, q2, k2, v)
    m = causal_dense()
    expected = F.scaled_dot_product_attention(q1, k1, v, attn_mask=m) - 0.3 * F.scaled_dot_product_attention(q2, k2, v, attn_mask=m)
    torch.testing.assert_close(out, expected)
    # inputs by name give the same result
    torch.testing.assert_close(ac.compile(spec)(Q1=q1, K1=k1, Q2=q2, K2=k2, V=v), expected)


def test_sigmoid_attention(t):
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = sigmoid(S * scale + bias) * V[b,h,n,e]
    """, mask=causal, params={"bias": -math.log(Skv)})
    q, k, v = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, D)
    out = ac.compile(spec)(q, k, v)
    w = torch.sigmoid(q @ k.transpose(-1, -2) / math.sqrt(D) - math.log(Skv)) * causal_dense()
    torch.testing.assert_close(out, w @ v)


def test_causal_linear_attention_against_recurrence(t):
    spec = ac.cascade("""
        A[b,h,m,n] = (elu(Q[b,h,m,d]) + 1) * (elu(K[b,h,n,d]) + 1)
        O[b,h,m,e] = A * V[b,h,n,e]
    """, mask=causal)
    q, k, v = t(B, H, Skv, D), t(B, H, Skv, D), t(B, H, Skv, D)
    out = ac.compile(spec)(q, k, v)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    state = torch.zeros(B, H, D, D, dtype=torch.float64)
    rows = []
    for s in range(Skv):  # S_t = S_{t-1} + phi(k_t)^T v_t ; o_t = phi(q_t) S_t
        state = state + phi_k[:, :, s, :, None] * v[:, :, s, None, :]
        rows.append(torch.einsum("bhd,bhde->bhe", phi_q[:, :, s], state))
    torch.testing.assert_close(out, torch.stack(rows, 2))


def test_gated_attention(t):
    spec = ac.cascade("""
        input Q[b,h,m,d], K[b,h,n,d], V[b,h,n,e], X[b,m,c], Wg[h,c,e]
        S[b,h,m,n] = Q * K
        A[b,h,m,e] = softmax[n](S * scale) * V
        G[b,h,m,e] = X * Wg
        O[b,h,m,e] = A * sigmoid(G)
    """, mask=causal)
    q, k, v, x, wg = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, D), t(B, Sq, 5), t(H, 5, D)
    out = ac.compile(spec)(q, k, v, x, wg)
    gate = torch.sigmoid(torch.einsum("bmc,hce->bhme", x, wg))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_dense()) * gate
    torch.testing.assert_close(out, expected)


def test_score_function_inside_cascade(t):
    def softcap(score, b, h, q_idx, kv_idx):
        return 5.0 * torch.tanh(score / 5.0)
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = softmax[n](score(S * scale)) * V[b,h,n,e]
    """, score=softcap)
    q, k, v = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, D)
    s = 5.0 * torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(D) / 5.0)
    torch.testing.assert_close(ac.compile(spec)(q, k, v), torch.softmax(s, -1) @ v)


def test_max_and_sum_reductions_and_runtime_bias(t):
    bias = ac.tensor("bias", ("H", 200), "float32")

    spec = ac.cascade("""
        tensor bias[H, 200]: float32
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d] * scale + bias[h, m - n + 100]
        M[b,h,m] = max[n](S)
        E[b,h,m,n] = exp(S - M)
        L[b,h,m] = sum[n](E)
        O[b,h,m,e] = E * V[b,h,n,e] / L
    """, mask=causal)
    assert bias.decl == spec.tensors["bias"]
    q, k, v = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, D)
    table = torch.randn(H, 200, dtype=torch.float32)
    out = ac.compile(spec)(q, k, v, bias=table)
    rel = torch.arange(Sq)[:, None] - torch.arange(Skv)[None, :] + 100
    s = q @ k.transpose(-1, -2) / math.sqrt(D) + table.double()[:, rel]
    expected = torch.softmax(s.masked_fill(~causal_dense(), float("-inf")), -1) @ v
    torch.testing.assert_close(out, expected)


def test_dataflow():
    spec = ac.variants.differential()
    flow = spec.dataflow()
    assert flow.kinds["O"] == "output" and flow.kinds["Q1"] == "input" and flow.kinds["mask"] == "mask"
    assert set(flow.reads["O"]) == {"P1", "P2", "V", "mask"}
    assert flow.readers("S1") == ("P1",) and flow.readers("mask") == ("S1", "S2", "P1", "P2", "O")
    assert flow.reverse_order() == ("O", "P2", "P1", "S2", "S1")
    assert flow.live() == set(flow.kinds)
    assert eliminate_dead(spec) is spec


def test_dead_equations_are_eliminated(t):
    live = """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = softmax[n](S * scale) * V[b,h,n,e]
    """
    spec = ac.cascade(live.replace("        O[", """        tensor bias[H, 200]: float32
        T[b,h,m,n] = exp(S) + bias[h, m - n + 100]
        U[b,h,m,n] = T * 2.0
        O["""), mask=causal)
    flow = spec.dataflow()
    assert flow.kinds["bias"] == "runtime" and flow.readers("T") == ("U",)
    assert flow.live() == {"O", "S", "Q", "K", "V", "mask"}
    assert flow.reverse_order() == ("O", "S")
    pruned = eliminate_dead(spec)
    assert pruned == ac.cascade(live, mask=causal) and eliminate_dead(pruned) is pruned
    assert optimize(spec) == optimize(pruned) and "bias" not in pruned.tensors
    q, k, v = t(B, H, Sq, D), t(B, H, Skv, D), t(B, H, Skv, D)
    table = torch.randn(H, 200, dtype=torch.float32)
    torch.testing.assert_close(ac.compile(spec)(q, k, v, bias=table), ac.compile(pruned)(q, k, v))
    assert ac.simulate(spec).time_s == ac.simulate(pruned).time_s


def test_attention_is_a_cascade():
    text = """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale)
        O[b,h,m,e] = P * V[b,h,n,e]
    """
    assert ac.cascade(text, mask=causal) == ac.attention(mask=causal)
    from attncomp.ir import match_softmax
    parts, why = match_softmax(ac.cascade(text, mask=causal))
    assert parts is not None and why == ""
    parts, why = match_softmax(ac.variants.differential())
    assert parts is None and "5 equations" in why
