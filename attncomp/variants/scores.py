"""Score modifications (VARIANTS.md group C), written as FlexAttention score_mods."""

from __future__ import annotations

import math

import torch

from ..errors import AttncompError
from ..ir import attention, param
from .masks import _runtime
from .registry import register


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's head slopes ``2^(-8 i / H)``, i = 1..H (Press et al., 2022; exact for powers of two)."""
    return torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)], dtype=torch.float32)


@register("alibi", "C1", "ALiBi: linear distance penalty with a slope per head", defaults={"heads": 4}, cross=True)
def alibi(heads: int = 8, slopes: torch.Tensor | None = None):
    """``score + slopes[h] * (kv - q)``; slopes default to ALiBi's geometric sequence."""
    alibi_slopes_ = slopes if slopes is not None else alibi_slopes(heads)

    def alibi(score, b, h, q_idx, kv_idx):
        return score + alibi_slopes_[h] * (kv_idx - q_idx)
    return attention(score=alibi, name="alibi")


@register("softcap", "C2", "tanh soft-capping of logits (Gemma 2, Grok)", defaults={"cap": 20.0}, cross=True)
def softcap(cap: float = 30.0):
    c = param("cap", float(cap))

    def softcap(score, b, h, q_idx, kv_idx):
        return c * torch.tanh(score / c)
    return attention(score=softcap, name="softcap")


def t5_thresholds(num_buckets: int, max_distance: int, bidirectional: bool) -> tuple[int, list[int]]:
    """T5's log-spaced buckets as integer thresholds.

    T5 (Raffel et al., 2020) buckets a distance ``n >= max_exact`` as
    ``max_exact + int(log(n / max_exact) / log(max_distance / max_exact) * (nb - max_exact))``
    capped at ``nb - 1``, computed in float32. That is nondecreasing in ``n``, so it equals
    ``max_exact`` plus the number of thresholds ``n`` has reached; integer thresholds give
    every backend the same buckets and let the analysis reason about them exactly.
    """
    nb = num_buckets // 2 if bidirectional else num_buckets
    max_exact = nb // 2
    if max_exact < 1 or max_distance <= max_exact:
        raise AttncompError(f"T5 buckets need num_buckets >= {4 if bidirectional else 2} and max_distance > "
                            f"{max(max_exact, 1)} (the exact buckets), got num_buckets={num_buckets}, "
                            f"max_distance={max_distance}", variant="t5_bias")
    n = torch.arange(max_exact, max(4 * max_distance, 2 * max_exact) + 1)
    large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
                         * (nb - max_exact)).to(torch.long)
    large = torch.clamp(large, max=nb - 1)
    steps = (large[1:] - large[:-1]).tolist()
    thresholds = []
    for pos, step in enumerate(steps):
        thresholds += [int(n[pos + 1])] * step
    return max_exact, thresholds


def _t5_tensors(ex, gen, args):
    return {"rel_bias": torch.randn(ex.heads, args.get("num_buckets", 32), generator=gen)}


@register("t5_bias", "C3", "T5 relative position bias from a learned [H, buckets] table",
          tensors=_t5_tensors, cross=True)
def t5_bias(num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True,
            rel_bias: torch.Tensor | None = None):
    """``score + rel_bias[h, bucket(kv - q)]`` with T5's bucketing."""
    table = _runtime(rel_bias, "rel_bias", ("H", num_buckets), "float32")
    max_exact, thresholds = t5_thresholds(num_buckets, max_distance, bidirectional)
    half = num_buckets // 2

    def t5_bias(score, b, h, q_idx, kv_idx):
        rel = kv_idx - q_idx
        dist = torch.abs(rel) if bidirectional else torch.clamp(-rel, min=0)
        bucket = torch.clamp(dist, max=max_exact)
        for t in thresholds:
            bucket = bucket + (dist >= t)
        if bidirectional:
            bucket = bucket + (rel > 0) * half
        return score + table[h, bucket]
    return attention(score=t5_bias, name="t5_bias")


def _gamma_tensors(ex, gen, args):
    return {"log_gamma": torch.randn(ex.heads, generator=gen)}


@register("sink_scaling", "C4", "learned per-head logit offset on the first (sink) token", tensors=_gamma_tensors,
          cross=True)
def sink_scaling(log_gamma: torch.Tensor | None = None):
    gamma = _runtime(log_gamma, "log_gamma", ("H",), "float32")

    def sink_scaling(score, b, h, q_idx, kv_idx):
        return score + gamma[h] * (kv_idx == 0)
    return attention(score=sink_scaling, name="sink_scaling")


def _type_tensors(ex, gen, args):
    types = 3
    return {"token_type": torch.randint(0, types, (ex.batch, max(ex.q_len, ex.kv_len)), generator=gen, dtype=torch.int32),
            "type_bias": torch.randn(types, types, generator=gen)}


@register("token_type_bias", "C5", "bias by the (query type, key type) pair, e.g. text/image tokens",
          tensors=_type_tensors)
def token_type_bias(token_type: torch.Tensor | None = None, type_bias: torch.Tensor | None = None):
    types = _runtime(token_type, "token_type", ("B", "L"), "int32")
    table = _runtime(type_bias, "type_bias", ("T", "T"), "float32")

    def token_type_bias(score, b, h, q_idx, kv_idx):
        return score + table[types[b, q_idx], types[b, kv_idx]]
    return attention(score=token_type_bias, name="token_type_bias")


@register("causal_score", "C6", "causal mask written as a score mod (where(q >= kv, s, -inf))", cross=True)
def causal_score():
    def causal_score(score, b, h, q_idx, kv_idx):
        return torch.where(q_idx >= kv_idx, score, -float("inf"))
    return attention(score=causal_score, name="causal_score")


def _sink_tensors(ex, gen, args):
    return {"sinks": torch.randn(ex.heads, generator=gen)}


@register("learned_sinks", "C7", "learned per-head sink logits in the softmax normalizer, no value (gpt-oss)",
          defaults={"window": 32}, tensors=_sink_tensors, cross=True)
def learned_sinks(window: int = 128, sinks: torch.Tensor | None = None):
    """gpt-oss attention (OpenAI, 2025): each head has a learned sink logit that joins every
    row's softmax normalizer with no value vector, ``p_n = exp(s_n) / (exp(sinks[h]) +
    sum_n' exp(s_n'))``, so a head can attend to nothing; under a causal sliding window of
    ``window`` keys (gpt-oss's local layers; ``window`` past the length gives its dense ones).
    The sink is added unscaled, as in the reference implementation's ``cat([QK, S], -1)``.

    >>> import attncomp as ac, torch
    >>> spec = ac.variants.learned_sinks(window=128)
    >>> print(spec.eqn("P"))
    P[b,h,m,n] = softmax[n](S[b,h,m,n] * scale, sinks[h])
    """
    table = _runtime(sinks, "sinks", ("H",), "float32")
    W = param("window", window)

    def local(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < W)

    def sink(b, h, q_idx):
        return table[h]
    return attention(mask=local, sink=sink, name="learned_sinks")
