"""Periodic masks: classify one period of tiles, then repeat it by runs.

When the mask is invariant under a shift of ``pi`` query blocks and under one of ``pj``
key blocks (:func:`.shift.tile_periods`), every full-size tile is a copy of a tile in the
first ``pi x pj`` ones. ``(q_idx + kv_idx) % 2 == 0`` at 1M tokens has 67 million partial
tiles and one distinct tile. The analysis runs on a reduced problem — the first period
plus the last, possibly short, query and key block, at the same offsets modulo the
period — and the layout is rebuilt from it as per-row runs, so time and memory grow with
the runs, not the tiles.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .layout import BlockLayout, Runs


def reduced_length(length: int, block: int, period: int) -> int:
    """The shortest length, congruent to ``length`` modulo ``period`` blocks, whose grid
    still holds a whole period before its last block: its last block is the original
    last block (same size, same offset in the period).

    >>> reduced_length(1 << 20, 128, 1), reduced_length(1000, 128, 2)
    (256, 488)
    """
    blocks = -(-length // block)
    cut = max(0, (blocks - 1 - period) // period)
    return length - cut * period * block


def worth_reducing(blocks: int, period: int) -> bool:
    return blocks > 2 * period + 1


def _block_map(blocks: int, reduced: int, period: int) -> np.ndarray:
    """Reduced block of each block: the same offset in the period, the last to the last."""
    out = np.arange(blocks, dtype=np.int64) % period
    out[-1] = reduced - 1
    return out


def expand(small: BlockLayout, q_len: int, kv_len: int, pi: int, pj: int) -> BlockLayout:
    """The layout of the full problem from that of the reduced one (``small``)."""
    bm, bn = small.block
    nq, nk = -(-q_len // bm), -(-kv_len // bn)
    nq_r, nk_r, groups = small.num_q_blocks, small.num_kv_blocks, small.groups
    rows_of, cols_of = _block_map(nq, nq_r, pi), _block_map(nk, nk_r, pj)
    # class of every (reduced row, key block): 0 empty, 1 partial, 2 full
    classes = np.zeros((groups * nq_r, nk_r), dtype=np.int8)
    for value, runs in ((1, small.partial), (2, small.full)):
        for r, a, b in zip(runs.run_rows().tolist(), runs.start.tolist(), runs.stop.tolist()):
            classes[r, a:b] = value
    wide = classes[:, cols_of]  # [groups * nq_r, nk]
    # runs of equal class per reduced row
    change = np.ones(wide.shape, dtype=bool)
    change[:, 1:] = wide[:, 1:] != wide[:, :-1]
    seg_row, seg_start = np.nonzero(change)
    seg_stop = np.append(seg_start[1:], nk)
    seg_stop[np.append(seg_row[1:] != seg_row[:-1], True)] = nk
    seg_class = wide[seg_row, seg_start]
    rows = (np.arange(groups)[:, None] * nq_r + rows_of[None, :]).reshape(-1)  # reduced row of each row

    def runs_of(value: int) -> Runs:
        keep = seg_class == value
        row, start, stop = seg_row[keep], seg_start[keep], seg_stop[keep]
        per_row = np.bincount(row, minlength=groups * nq_r)
        first = np.concatenate(([0], np.cumsum(per_row)))
        count = per_row[rows]
        offsets = np.concatenate(([0], np.cumsum(count))).astype(np.int64)
        take = np.repeat(first[rows], count) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], count))
        return Runs(offsets, start[take].astype(np.int64), stop[take].astype(np.int64))

    partials = small.partials
    if partials is not None:
        row_mult, col_mult = np.bincount(rows_of, minlength=nq_r), np.bincount(cols_of, minlength=nk_r)
        t = partials.tiles
        partials = replace(partials, weight=partials.weight * row_mult[t.i0] * col_mult[t.j0])
    return replace(small, q_len=q_len, kv_len=kv_len, partial=runs_of(1), full=runs_of(2), partials=partials,
                   stats=small.stats | {"period_blocks": (pi, pj), "reduced_lengths": (small.q_len, small.kv_len)},
                   _touched=None, _density=None)
