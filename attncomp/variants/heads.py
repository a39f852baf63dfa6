"""Head structure (VARIANTS.md group D)."""

from __future__ import annotations

import torch

from ..ir import attention
from .masks import _runtime
from .registry import register


@register("gqa", "D1", "grouped-query attention (causal): K/V have H / groups heads", kv_groups=4, cross=True)
def gqa():
    """Causal attention meant for grouped K/V heads. Grouping is a property of the call:
    pass K and V with ``H_kv`` heads (``H % H_kv == 0``) and query head ``h`` reads K/V
    head ``h // (H / H_kv)``, as FlexAttention's ``enable_gqa`` does."""
    def gqa(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx
    return attention(mask=gqa, name="gqa")


def _window_tensors(ex, gen, args):
    return {"head_window": torch.randint(1, max(2, ex.kv_len), (ex.heads,), generator=gen, dtype=torch.int32)}


@register("per_head_window", "D2", "causal sliding window whose width differs per head (MoA, S2)",
          tensors=_window_tensors, cross=True)
def per_head_window(head_window: torch.Tensor | None = None):
    window = _runtime(head_window, "head_window", ("H",), "int32")

    def per_head_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window[h])
    return attention(mask=per_head_window, name="per_head_window")
