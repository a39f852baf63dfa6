"""Cascades beyond one softmax (VARIANTS.md group E), written as einsum cascade text."""

from __future__ import annotations

from ..errors import AttncompError
from ..ir import cascade
from .registry import register


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


@register("differential", "E1", "differential attention: softmax(Q1K1) - lambda softmax(Q2K2), causal",
          defaults={"lam": 0.8}, cross=True)
def differential(lam: float = 0.8):
    """Differential Transformer (Ye et al., 2025): the difference of two softmax maps
    cancels common-mode attention noise. ``O = (softmax(Q1 K1^T) - lam softmax(Q2 K2^T)) V``."""
    return cascade("""
        input Q1[b,h,m,d], K1[b,h,n,d], Q2[b,h,m,d], K2[b,h,n,d], V[b,h,n,e]
        S1[b,h,m,n] = Q1 * K1
        S2[b,h,m,n] = Q2 * K2
        P1[b,h,m,n] = softmax[n](S1 * scale)
        P2[b,h,m,n] = softmax[n](S2 * scale)
        O[b,h,m,e] = (P1 - lam * P2) * V
    """, mask=_causal, params={"lam": float(lam)}, name="differential")


@register("sigmoid_attention", "E2", "sigmoid attention: elementwise sigmoid(QK^T * scale + bias), no normalizer, causal",
          defaults={"bias": -4.0}, cross=True)
def sigmoid_attention(bias: float = -6.0):
    """Sigmoid attention (Ramapuram et al., 2025) with bias ``b`` (they recommend
    ``-log(n)``): ``O = sigmoid(Q K^T * scale + b) V``, each weight independent of the row."""
    return cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = sigmoid(S * scale + bias) * V[b,h,n,e]
    """, mask=_causal, params={"bias": float(bias)}, name="sigmoid_attention")


_FEATURES = {"elu": "elu({x}) + 1", "relu": "relu({x})", "identity": "{x}"}


@register("causal_linear", "E3", "causal linear attention phi(Q) (phi(K)^T V), optionally normalized",
          defaults={"feature": "elu"}, cross=True)
def causal_linear(feature: str = "elu", normalize: bool = False, eps: float = 1e-6):
    """Linear attention (Katharopoulos et al., 2020) in its causal form: each row sums
    ``phi(q) . phi(k_j) v_j`` over earlier keys. Written quadratically here; the Triton
    backend runs it chunked (Lightning Attention-2, with per-block states summed into a
    prefix): its work grows linearly with the length."""
    if feature not in _FEATURES:
        raise AttncompError(f"causal_linear: feature must be one of {sorted(_FEATURES)}, got {feature!r}")
    phi_q, phi_k = (_FEATURES[feature].format(x=x) for x in ("Q[b,h,m,d]", "K[b,h,n,d]"))
    text = f"A[b,h,m,n] = ({phi_q}) * ({phi_k})\n"
    params = {}
    if normalize:
        text += "N[b,h,m,e] = A * V[b,h,n,e]\nZ[b,h,m] = A\nO[b,h,m,e] = N / (Z + eps)\n"
        params["eps"] = float(eps)
    else:
        text += "O[b,h,m,e] = A * V[b,h,n,e]\n"
    return cascade(text, mask=_causal, params=params, name="causal_linear")


@register("gated_attention", "E6", "causal softmax attention with a sigmoid output gate from the layer input",
          cross=False)
def gated_attention():
    """Gated attention (Qiu et al., 2025): ``O = softmax(Q K^T) V * sigmoid(X W_g)``, a
    head-specific elementwise gate computed from the layer input ``X``."""
    return cascade("""
        input Q[b,h,m,d], K[b,h,n,d], V[b,h,n,e], X[b,m,c], Wg[h,c,e]
        S[b,h,m,n] = Q * K
        P[b,h,m,n] = softmax[n](S * scale)
        A[b,h,m,e] = P * V
        G[b,h,m,e] = X * Wg
        O[b,h,m,e] = A * sigmoid(G)
    """, mask=_causal, name="gated_attention")
