"""Range min/max of runtime tensors, for loads like ``doc[b, q_idx]`` in masks.

Along the last axis a tensor is summarized per group of ``g`` elements (min and max), and
a sparse table over the groups answers the min/max of any range of groups with two
lookups (Bentley's range-minimum query). A query range is widened to whole groups, which
is sound; with ``g`` dividing the block sizes, ranges that come from tiles are exact.
Leading axes indexed by one value are gathered; a box over a few leading indices is
answered row by row; a wider range falls back to the tensor reduced over all leading axes
(sound, coarser).
"""

from __future__ import annotations

import numpy as np
import torch

FEW_ROWS = 16  # boxes over at most this many leading-index combinations are answered row by row


class RangeTable:
    """min/max of ``values`` over ``[..., lo:hi+1]`` index boxes, vectorized over queries."""

    def __init__(self, values: torch.Tensor, group: int):
        arr = values.detach().cpu()
        arr = (arr.to(torch.int64) if not arr.is_floating_point() else arr.to(torch.float64)).numpy().astype(np.float64)
        self.shape = arr.shape
        if arr.ndim == 0:
            self.scalar = float(arr)
            return
        length = arr.shape[-1]
        self.group = group if length > 4096 else 1
        pad = (-length) % self.group
        lo_pad = np.pad(arr, [(0, 0)] * (arr.ndim - 1) + [(0, pad)], constant_values=np.inf)
        hi_pad = np.pad(arr, [(0, 0)] * (arr.ndim - 1) + [(0, pad)], constant_values=-np.inf)
        grouped = lambda a, f: f(a.reshape(a.shape[:-1] + (-1, self.group)), axis=-1)
        self.levels = [self._sparse(grouped(lo_pad, np.min), np.minimum), self._sparse(grouped(hi_pad, np.max), np.maximum)]
        lead = tuple(range(arr.ndim - 1))
        flat_lo, flat_hi = grouped(lo_pad, np.min), grouped(hi_pad, np.max)
        self.reduced = [self._sparse(flat_lo.min(axis=lead, keepdims=True) if lead else flat_lo, np.minimum),
                        self._sparse(flat_hi.max(axis=lead, keepdims=True) if lead else flat_hi, np.maximum)]

    @staticmethod
    def _sparse(base: np.ndarray, combine) -> list[np.ndarray]:
        table = [base]
        width = 1
        while 2 * width <= base.shape[-1]:
            prev = table[-1]
            table.append(combine(prev[..., : prev.shape[-1] - width], prev[..., width:]))
            width *= 2
        return table

    def _query(self, tables, lead_index, lo, hi):
        glo, ghi = (lo // self.group).astype(np.int64), (hi // self.group).astype(np.int64)
        k = np.floor(np.log2(np.maximum(ghi - glo + 1, 1))).astype(np.int64)
        out_lo = np.empty(lo.shape)
        out_hi = np.empty(lo.shape)
        for level in np.flatnonzero(np.bincount(k.ravel())):  # the levels used (not np.unique: it imports numpy.ma)
            sel = k == level
            width = 1 << int(level)
            for out, table, combine in ((out_lo, tables[0], np.minimum), (out_hi, tables[1], np.maximum)):
                t = table[level]
                idx = tuple(li[sel] for li in lead_index)
                out[sel] = combine(t[idx + (glo[sel],)], t[idx + (ghi[sel] - width + 1,)])
        return out_lo, out_hi

    def query(self, ranges: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """min and max over the index box given by per-axis (lo, hi) arrays (clipped into range)."""
        if not self.shape:
            n = len(ranges[0][0]) if ranges else 1
            return np.full(n, self.scalar), np.full(n, self.scalar)
        clipped = []
        for (lo, hi), size in zip(ranges, self.shape):
            lo = np.clip(np.nan_to_num(lo, neginf=0, posinf=size - 1), 0, size - 1)
            hi = np.clip(np.nan_to_num(hi, neginf=0, posinf=size - 1), lo, size - 1)
            clipped.append((lo, hi))
        *lead, (lo, hi) = clipped
        points = np.ones(lo.shape, dtype=bool)
        for llo, lhi in lead:
            points &= llo == lhi
        out_lo, out_hi = np.empty(lo.shape), np.empty(lo.shape)
        if points.any():
            idx = [l[points].astype(np.int64) for l, _ in lead]
            out_lo[points], out_hi[points] = self._query(self.levels, idx, lo[points], hi[points])
        widths = [(lhi - llo + 1).astype(np.int64) for llo, lhi in lead]
        count = np.prod(widths, axis=0) if lead else np.ones(lo.shape, dtype=np.int64)
        few = ~points & (count <= FEW_ROWS)
        if few.any():
            out_lo[few], out_hi[few] = self._rows(lead, widths, count, few, lo, hi)
        coarse = ~points & ~few
        if coarse.any():
            idx = [np.zeros(int(coarse.sum()), dtype=np.int64) for _ in lead]
            out_lo[coarse], out_hi[coarse] = self._query(self.reduced, idx, lo[coarse], hi[coarse])
        return out_lo, out_hi

    def _rows(self, lead, widths, count, sel, lo, hi):
        """Boxes that span a few leading indices (a tile of a block-level table such as
        BigBird's random blocks spans two rows): the exact min/max, one row at a time."""
        n = int(sel.sum())
        acc_lo, acc_hi = np.full(n, np.inf), np.full(n, -np.inf)
        count = count[sel]
        for k in range(int(count.max())):
            active = k < count
            rest, idx = np.full(int(active.sum()), k, dtype=np.int64), []
            for (llo, _), w in zip(lead, widths):  # k's digits in the mixed radix of the widths
                w = w[sel][active]
                idx.append(llo[sel][active].astype(np.int64) + rest % w)
                rest //= w
            row_lo, row_hi = self._query(self.levels, idx, lo[sel][active], hi[sel][active])
            acc_lo[active] = np.minimum(acc_lo[active], row_lo)
            acc_hi[active] = np.maximum(acc_hi[active], row_hi)
        return acc_lo, acc_hi
