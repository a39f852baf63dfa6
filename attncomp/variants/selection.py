"""Data-dependent block sparsity (VARIANTS.md group F): key blocks chosen per query from the
data by a selection stage (:mod:`attncomp.ir.selection`), then softmax attention over them."""

from __future__ import annotations

from ..ir import attention, param, selection
from .registry import register


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


@register("moba", "F1", "MoBA: own block + top-k earlier key blocks by q . mean(K_block)",
          defaults={"block_size": 16, "top_k": 3}, cross=True, kv_groups=2)
def moba(block_size: int = 512, top_k: int = 3):
    """MoBA (Lu et al., 2025, "Mixture of Block Attention for Long-Context LLMs"). Per query
    token and head, the gate of key block ``i`` is ``q . mean(K[block i])`` (no scale); blocks
    after the query's own are excluded and the own block is always chosen and counted in
    ``top_k``; the query attends causally to the keys of its chosen blocks, one softmax over
    them, scale 1/sqrt(D). A query with fewer than ``top_k`` blocks up to its own takes all
    of them. GQA: each query head gates its KV head's keys.

    >>> import attncomp as ac
    >>> print(ac.variants.moba(block_size=512, top_k=3).selection)
    select[b,h,m,j] = topk(mean(K), Q, k=top_k, block=block, eligible=j < m // block, forced=j == m // block)
    """
    B, k = param("block", block_size), param("top_k", top_k)
    sel = selection(B, top_k=k, eligible=lambda b, h, q_idx, kv_block: kv_block < q_idx // B,
                    forced=lambda b, h, q_idx, kv_block: kv_block == q_idx // B)
    return attention(mask=_causal, select=sel, name="moba")


@register("nsa_selection", "F2", "NSA's selected branch: top-n blocks by compressed attention, shared per KV group",
          defaults={"block_size": 16, "top_k": 4}, cross=True, kv_groups=2)
def nsa_selection(block_size: int = 64, top_k: int = 16):
    """The selected-attention branch of NSA (Yuan et al., 2025, "Native Sparse Attention"),
    with compression blocks equal to selection blocks (l = l' = d = ``block_size``) and mean
    pooling as the compression map phi (NSA learns an MLP there). Per query token: the
    compressed-attention scores ``p_cmp = softmax(q . mean(K_j) / sqrt(D))`` over the complete
    blocks before the query, summed over the query heads of each KV group (eq. 10) so the
    group shares one choice; the top ``top_k`` blocks, counting the always-kept initial block
    and the two local blocks (the query's own and the one before it); causal inside them.

    >>> import attncomp as ac
    >>> print(ac.variants.nsa_selection().selection)  # doctest: +NORMALIZE_WHITESPACE
    select[b,h,m,j] = topk(mean(K), Q, k=top_k, block=block, eligible=(j + 1) * block <= m + 1,
        forced=(j == 0) | (j == m // block) | (j == m // block - 1), shared=True, normalize=True)
    """
    B, k = param("block", block_size), param("top_k", top_k)
    sel = selection(B, top_k=k, shared=True, normalize=True,
                    eligible=lambda b, h, q_idx, kv_block: (kv_block + 1) * B <= q_idx + 1,
                    forced=lambda b, h, q_idx, kv_block: (kv_block == 0) | (kv_block == q_idx // B)
                    | (kv_block == q_idx // B - 1))
    return attention(mask=_causal, select=sel, name="nsa_selection")


@register("quest", "F5", "Quest: top-k pages by the upper bound of q . k from per-page key min/max",
          defaults={"page_size": 8, "top_k": 4}, cross=True)
def quest(page_size: int = 16, top_k: int = 64):
    """Quest (Tang et al., ICML 2024, "Query-Aware Sparsity for Efficient Long-Context LLM
    Inference"). Keys are paged; each page keeps its per-channel min and max, and a query
    scores a page by ``sum_d max(q_d min_d, q_d max_d)``, an upper bound of ``q . k`` over its
    keys; the ``top_k`` pages with the highest bound are attended (``top_k * page_size`` is
    Quest's token budget), causally. The query's own page (partly in its future) is always
    kept and counted: attncomp's choice, so that every query sees itself.

    >>> import attncomp as ac
    >>> print(ac.variants.quest(page_size=16, top_k=64).selection)
    select[b,h,m,j] = topk(bounds(K), Q, k=top_k, block=page, eligible=j < m // page, forced=j == m // page)
    """
    P, k = param("page", page_size), param("top_k", top_k)
    sel = selection(P, top_k=k, pool="bounds", eligible=lambda b, h, q_idx, kv_block: kv_block < q_idx // P,
                    forced=lambda b, h, q_idx, kv_block: kv_block == q_idx // P)
    return attention(mask=_causal, select=sel, name="quest")


@register("topk_blocks", "F6", "generic causal top-k key blocks per query and head by a pooled-key gate",
          defaults={"block_size": 16, "top_k": 3}, cross=True)
def topk_blocks(block_size: int = 64, top_k: int = 8, pool: str = "mean", causal: bool = True, query_block: int = 1):
    """Per query token and head, the ``top_k`` key blocks with the highest gate (``pool`` of
    mean, max, bounds), among the blocks that start at or before the query when ``causal``
    (which also masks future keys), else all blocks. With ``query_block > 1`` one choice per
    block of that many queries, gated by their mean query and made at the block's last row
    (block-level routing, as in SeerAttention's and MoBA's block-wise gating).

    >>> import attncomp as ac
    >>> print(ac.variants.topk_blocks(block_size=64, top_k=8).selection)
    select[b,h,m,j] = topk(mean(K), Q, k=top_k, block=block, eligible=j * block <= m)
    """
    B, k = param("block", block_size), param("top_k", top_k)
    eligible = (lambda b, h, q_idx, kv_block: kv_block * B <= q_idx) if causal else None
    sel = selection(B, top_k=k, pool=pool, eligible=eligible,
                    query_block=param("query_block", query_block) if query_block > 1 else None)
    return attention(mask=_causal if causal else None, select=sel, name="topk_blocks")
