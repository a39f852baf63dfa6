"""Static 1-D masks (VARIANTS.md group A): block sparsity is the whole win.

Each factory returns a Program whose mask is written as a FlexAttention user would write
it; numeric arguments become named parameters (``window``), runtime data becomes a
runtime tensor (``doc``), declared or captured from the tensor you pass.
"""

from __future__ import annotations

import torch

from ..ir import attention, param, tensor
from .registry import register


def _runtime(value, name: str, dims, dtype):
    """A captured tensor if the user passed one, else a declared runtime tensor."""
    return value if isinstance(value, torch.Tensor) else tensor(name, dims, dtype)


@register("causal", "A1", "causal (autoregressive) mask: q >= kv", cross=True)
def causal():
    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx
    return attention(mask=causal, name="causal")


@register("sliding_window", "A2", "causal sliding window of W keys (Mistral, Gemma local layers)",
          defaults={"window": 32}, cross=True)
def sliding_window(window: int = 1024):
    W = param("window", window)

    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < W)
    return attention(mask=sliding_window, name="sliding_window")


@register("streaming", "A3", "attention sinks + sliding window (StreamingLLM)",
          defaults={"sinks": 4, "window": 32}, cross=True)
def streaming(sinks: int = 4, window: int = 1024):
    S, W = param("sinks", sinks), param("window", window)

    def streaming(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & ((kv_idx < S) | (q_idx - kv_idx < W))
    return attention(mask=streaming, name="streaming")


def _prefix_tensors(ex, gen, args):
    return {"prefix_len": torch.randint(0, ex.kv_len + 1, (ex.batch,), generator=gen, dtype=torch.int32)}


@register("prefix_lm", "A4", "bidirectional prefix of per-sequence length, causal after it (PaLM/T5 prefix-LM)",
          tensors=_prefix_tensors, cross=True)
def prefix_lm(prefix_len: torch.Tensor | None = None):
    prefix = _runtime(prefix_len, "prefix_len", ("B",), "int32")

    def prefix_lm(b, h, q_idx, kv_idx):
        return (kv_idx < prefix[b]) | (q_idx >= kv_idx)
    return attention(mask=prefix_lm, name="prefix_lm")


def random_documents(batch: int, length: int, gen: torch.Generator, max_docs: int = 6) -> torch.Tensor:
    """Document ids ``[batch, length]`` for packed sequences with random document lengths."""
    rows = []
    for _ in range(batch):
        cuts = torch.randperm(length - 1, generator=gen)[: max_docs - 1] + 1
        starts = torch.zeros(length, dtype=torch.int32)
        starts[cuts] = 1
        rows.append(torch.cumsum(starts, 0).to(torch.int32))
    return torch.stack(rows)


def _doc_tensors(ex, gen, args):
    return {"doc": random_documents(ex.batch, max(ex.q_len, ex.kv_len), gen)}


def _doc_sink_tensors(ex, gen, args):
    out = _doc_tensors(ex, gen, args)
    out["is_sink"] = torch.rand(ex.batch, max(ex.q_len, ex.kv_len), generator=gen) < 0.05
    return out


@register("document", "A5", "packed documents: causal within each document", tensors=_doc_tensors)
def document(doc: torch.Tensor | None = None, sinks: bool = False, is_sink: torch.Tensor | None = None):
    """Causal attention within packed documents (``doc[b, i]`` is token i's document id);
    with ``sinks=True``, tokens flagged in ``is_sink[b, j]`` are visible to every later token."""
    doc_ids = _runtime(doc, "doc", ("B", "L"), "int32")
    sink = _runtime(is_sink, "is_sink", ("B", "L"), "bool") if sinks else None

    def document(b, h, q_idx, kv_idx):
        same_doc = doc_ids[b, q_idx] == doc_ids[b, kv_idx]
        if sink is not None:
            same_doc = same_doc | sink[b, kv_idx]
        return same_doc & (q_idx >= kv_idx)
    return attention(mask=document, name="document" + ("_sinks" if sinks else ""))


register("document_sinks", "A5", "packed documents with global sink tokens visible to all later tokens",
         defaults={"sinks": True}, tensors=_doc_sink_tensors)(document)


@register("dilated_sliding_window", "A6", "causal window of W keys taken every d-th token (LongNet-style dilation)",
          defaults={"window": 8, "dilation": 3}, cross=True)
def dilated_sliding_window(window: int = 256, dilation: int = 2):
    W, d = param("window", window), param("dilation", dilation)

    def dilated_sliding_window(b, h, q_idx, kv_idx):
        dist = q_idx - kv_idx
        return (dist >= 0) & (dist < W * d) & (dist % d == 0)
    return attention(mask=dilated_sliding_window, name="dilated_sliding_window")


@register("global_window", "A7", "global tokens + symmetric window (Longformer / BigBird without random)",
          defaults={"global_tokens": 4, "window": 16}, cross=True)
def global_window(global_tokens: int = 16, window: int = 256):
    G, W = param("global_tokens", global_tokens), param("window", window)

    def global_window(b, h, q_idx, kv_idx):
        return (q_idx < G) | (kv_idx < G) | (torch.abs(q_idx - kv_idx) < W)
    return attention(mask=global_window, name="global_window")


@register("s2_attention", "A8", "per-head sharded KV blocks + local window, causal (S2-Attention)",
          defaults={"block": 8, "shards": 3, "window": 16}, cross=True)
def s2_attention(block: int = 64, shards: int = 4, window: int = 256):
    Bk, R, W = param("block", block), param("shards", shards), param("window", window)

    def s2_attention(b, h, q_idx, kv_idx):
        own_shard = (kv_idx // Bk) % R == h % R
        return (q_idx >= kv_idx) & (own_shard | (q_idx - kv_idx < W))
    return attention(mask=s2_attention, name="s2_attention")


@register("strided_heads", "A8", "head h sees every s-th key starting at h % s (Hepos)",
          defaults={"stride": 3}, cross=True)
def strided_heads(stride: int = 4):
    s = param("stride", stride)

    def strided_heads(b, h, q_idx, kv_idx):
        return kv_idx % s == h % s
    return attention(mask=strided_heads, name="strided_heads")


@register("power_attention", "A9", "causal window plus keys at power-of-two distances (PowerAttention)",
          defaults={"window": 8}, cross=True)
def power_attention(window: int = 64):
    W = param("window", window)

    def power_attention(b, h, q_idx, kv_idx):
        dist = q_idx - kv_idx
        is_pow2 = (dist > 0) & ((dist & (dist - 1)) == 0)
        return (dist >= 0) & ((dist < W) | is_pow2)
    return attention(mask=power_attention, name="power_attention")


@register("blockwise_causal", "A10", "chunked causal: a chunk sees itself and earlier chunks (block-causal)",
          defaults={"chunk": 16}, cross=True)
def blockwise_causal(chunk: int = 128):
    C = param("chunk", chunk)

    def blockwise_causal(b, h, q_idx, kv_idx):
        return q_idx // C >= kv_idx // C
    return attention(mask=blockwise_causal, name="blockwise_causal")


@register("block_diagonal", "A10", "chunked local attention: each chunk sees only itself (Llama 4 chunked)",
          defaults={"chunk": 16}, cross=True)
def block_diagonal(chunk: int = 128):
    C = param("chunk", chunk)

    def block_diagonal(b, h, q_idx, kv_idx):
        return q_idx // C == kv_idx // C
    return attention(mask=block_diagonal, name="block_diagonal")
