"""A FlexAttention ``BlockMask`` from a ``BlockLayout``'s per-row runs.

``create_block_mask`` evaluates the mask at every (q, kv) pair; the analysis already
knows each row's partial and full key blocks, so the BlockMask is copied from those rows
and never built from a dense mask. The kv-side lists are what ``BlockMask.from_kv_blocks``
takes; the q-side (backward) lists are their transpose, computed here from the sparse
rows rather than from a dense grid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
from torch.nn.attention.flex_attention import BlockMask

from ..ir.analysis.layout import CSR, BlockLayout


def to_block_mask(layout: BlockLayout, mask_mod: Callable | None = None,
                  device: str | torch.device = "cpu") -> BlockMask:
    """The ``BlockMask`` of ``layout``; ``mask_mod`` defaults to one interpreting the IR.

    >>> import attncomp as ac
    >>> layout = ac.analyze(ac.variants.sliding_window(256), 1024, block=128)
    >>> bm = to_block_mask(layout)
    >>> bm.kv_num_blocks[0, 0].tolist(), bm.full_kv_num_blocks[0, 0].tolist()
    ([1, 1, 2, 2, 2, 2, 2, 2], [0, 1, 1, 1, 1, 1, 1, 1])
    """
    lists = {}
    for prefix, csr in zip(("", "full_"), _flex_csr(layout)):
        num, idx = _padded(layout, csr, layout.num_kv_blocks)
        lists[f"{prefix}kv_num_blocks"], lists[f"{prefix}kv_indices"] = num.to(device), idx.to(device)
        num, idx = _padded(layout, _transposed(layout, csr), layout.num_q_blocks)
        lists[f"{prefix}q_num_blocks"], lists[f"{prefix}q_indices"] = num.to(device), idx.to(device)
    if "seq_lengths" in inspect.signature(BlockMask.__init__).parameters:
        lists["seq_lengths"] = (layout.q_len, layout.kv_len)
    return BlockMask(**lists, BLOCK_SIZE=layout.block, mask_mod=mask_mod or layout.mask_mod)


def _flex_csr(layout: BlockLayout) -> tuple[CSR, CSR]:
    """create_block_mask pads the mask with False to whole blocks, so a tile cut by the
    end of the sequence is never full there; demote such tiles to partial to match."""
    bm, bn = layout.block
    lists = layout.partial.csr(), layout.full.csr()
    if layout.q_len % bm == 0 and layout.kv_len % bn == 0:
        return lists
    nq, nk = layout.num_q_blocks, layout.num_kv_blocks
    (partial, full), rows = lists, lists[1].rows()
    cut = ((rows % nq == nq - 1) & (layout.q_len % bm != 0)) | \
          ((full.indices == nk - 1) & (layout.kv_len % bn != 0))
    n = layout.groups * nq
    moved = np.concatenate([partial.indices, full.indices[cut]]).astype(np.int64)
    partial = CSR.build(n, np.concatenate([partial.rows(), rows[cut]]), moved, moved + 1)
    kept = full.indices[~cut].astype(np.int64)
    return partial, CSR.build(n, rows[~cut], kept, kept + 1)


def _padded(layout: BlockLayout, csr: CSR, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FlexAttention's format: per row a count and a zero-padded index row, shaped
    ``[batch, heads, rows, width]``. Rows are copied as slices: memory-bound, where a
    scatter of every index costs seconds at 1M tokens."""
    counts = csr.counts()
    dense = np.zeros((len(counts), width), dtype=np.int32)
    for r in np.flatnonzero(counts):
        dense[r, :counts[r]] = csr.indices[csr.offsets[r]:csr.offsets[r + 1]]
    shape = layout.shape + (len(counts) // layout.groups,)
    return torch.from_numpy(counts.astype(np.int32).reshape(shape)), torch.from_numpy(dense.reshape(shape + (width,)))


def _transposed(layout: BlockLayout, csr: CSR) -> CSR:
    """Per (group, key block), the query blocks that list it, ascending: the q-side
    lists the backward pass walks. A stable sort of the entries by column, O(nnz log
    nnz) on int32 keys (FlexAttention's from_kv_blocks argsorts the dense
    [q blocks x kv blocks] grid instead: 11 s at 1M tokens)."""
    nq, nk, groups = layout.num_q_blocks, layout.num_kv_blocks, layout.groups
    counts, row = csr.counts(), np.arange(groups * nq)
    q_block = np.repeat((row % nq).astype(np.int32), counts)  # divisions per row, not per entry
    key = csr.indices + np.repeat((row // nq * nk).astype(np.int32), counts) if groups > 1 else csr.indices
    order = torch.sort(torch.from_numpy(key), stable=True).indices.numpy()
    offsets = np.zeros(groups * nk + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(key, minlength=groups * nk))
    return CSR(offsets, q_block[order])
