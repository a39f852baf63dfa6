"""Layouts of Programs with a data-dependent selection stage (:mod:`attncomp.ir.selection`).

A pair ``(m, n)`` exists when the static mask keeps it and the selection chose key block
``n // block`` for query ``m``. Without the data, the static reasoning still settles most
tiles exactly (:func:`structural`): a tile no candidate block reaches is empty, a tile the
mask fills inside blocks chosen whatever the data (forced ones, or all of a row's
candidates when they are no more than k) is full, and every other tile some choice could
reach is partial — a superset of the work, never an omission. With
the query and key inputs (:func:`from_data`) the real choice is computed (by row chunk: no
``[q, kv]`` mask is formed) and the tiles are classified exactly for that data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...errors import AttncompError
from .. import expr as E
from ..program import Program
from ..selection import Chooser, candidates, deciding_rows, index_lists, query_block, sizes
from .density import Density
from .layout import BlockLayout, Runs

ROW_CHUNK = 1 << 22  # (query, key block) choices evaluated at once, per group


def block_predicate(program: Program, expr: E.Expr, block: int, query_block: int, q_len: int) -> Program:
    """``program`` with its mask narrowed by a selection predicate of ``j`` read at key
    ``n`` (``j = n // block``) and at the row that decides query ``m``'s choice (itself, or
    its query block's last row), and no selection: a static Program to classify."""
    m = E.var("m")
    mapping = {E.var("j"): E.binary("floordiv", E.var("n"), E.const(block))}
    if query_block > 1:
        last = E.binary("add", E.binary("mul", E.binary("floordiv", m, E.const(query_block)), E.const(query_block)),
                        E.const(query_block - 1))
        mapping[m] = E.binary("minimum", last, E.const(q_len - 1))
    at_keys = E.substitute(expr, mapping)
    mask = at_keys if program.mask is None else E.binary("and", program.mask, at_keys)
    return replace(program, mask=mask, selection=None)


def _keys(runs: Runs, layout: BlockLayout, shape: tuple[int, int]) -> np.ndarray:
    """The tiles of ``runs`` as sorted int64 keys ``(group * nq + row) * nk + col``, with the
    layout's groups broadcast to ``shape`` (batch, heads)."""
    nq, nk = layout.num_q_blocks, layout.num_kv_blocks
    csr = runs.csr()
    rows, cols = csr.rows(), csr.indices.astype(np.int64)
    out = []
    for b in range(shape[0]):
        for h in range(shape[1]):
            src = (b % layout.shape[0]) * layout.shape[1] + h % layout.shape[1]
            lo, hi = src * nq, (src + 1) * nq
            inside = (rows >= lo) & (rows < hi)
            g = b * shape[1] + h
            out.append(((rows[inside] - lo + g * nq) * nk) + cols[inside])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def _runs(keys: np.ndarray, rows: int, nk: int) -> Runs:
    return Runs.build(rows, keys // nk, keys % nk, keys % nk + 1)


def _assemble(like: BlockLayout, shape, partial_keys, full_keys, kind: str, start: float, name: str,
              high: float | None = None) -> BlockLayout:
    """The layout of these tiles; its mask density is a range: from the full tiles' area to
    ``high`` (default: the visited area), the data deciding in between."""
    rows = shape[0] * shape[1] * like.num_q_blocks
    nk = like.num_kv_blocks
    layout = BlockLayout(like.q_len, like.kv_len, like.block, shape, _runs(partial_keys, rows, nk),
                         _runs(full_keys, rows, nk), name=name, stats={"selection": kind}, selection=kind)
    low = layout._area(layout.full) / (layout.groups * layout.q_len * layout.kv_len)
    high = layout.density if high is None else high
    layout._density = Density(high, low, high, bound=True)
    layout.analysis_time_s = time.perf_counter() - start
    return layout


def sure_choice(program: Program, tensors: dict, params: dict, batch: int, heads: int, q_len: int, kv_len: int):
    """The blocks chosen whatever the data: the forced ones, and for top-k every candidate of a
    row with at most k candidates (for top-p, a row's only candidate). A function of rows ->
    bool ``[batch, heads, rows, blocks]``."""
    sel = program.selection
    _, count, nb = sizes(sel, params, kv_len, program.name)

    size = query_block(sel, params, program.name)

    def choice(rows: torch.Tensor) -> torch.Tensor:
        eligible, forced = candidates(sel, batch, heads, deciding_rows(rows, size, q_len), nb, tensors, params,
                                      program.name)
        cand = eligible | forced
        limit = count if sel.rule == "topk" else 1 if sel.rule == "top_p" else 0
        return forced | (cand & (cand.sum(-1, keepdim=True) <= limit))
    return choice


def structural(program: Program, analyze, tensors: dict, params: dict, block_shape, batch: int, heads: int,
               start: float) -> BlockLayout:
    """The layout every choice fits in (see the module docstring); ``analyze(program)`` is the
    exact static analysis at the problem's sizes."""
    sel = program.selection
    block, _, _ = sizes(sel, params, 1 << 30, program.name)
    static = analyze(replace(program, selection=None))
    reach_pred = sel.eligible if sel.forced is None else E.binary("or", sel.eligible, sel.forced)
    reach = analyze(block_predicate(program, reach_pred, block, query_block(sel, params, program.name),
                                    static.q_len))
    letters = set().union(*(E.letters_of(e) for e in (sel.eligible, sel.forced) if e is not None))
    shape = tuple(max(a, b) for a, b in zip(reach.shape, static.shape))
    shape = (max(shape[0], batch if "b" in letters else 1), max(shape[1], heads if "h" in letters else 1))
    _, every = chosen_tiles(sure_choice(program, tensors, params, shape[0], shape[1], reach.q_len, reach.kv_len), shape,
                            program, params, block_shape, reach.q_len, reach.kv_len)
    visited = np.union1d(_keys(reach.partial, reach, shape), _keys(reach.full, reach, shape))
    full = visited[every.reshape(-1)[visited] & np.isin(visited, _keys(static.full, static, shape))]
    partial = np.setdiff1d(visited, full, assume_unique=True)
    return _assemble(reach, shape, partial, full, "structural", start, program.name, high=reach.mask_density)


def chosen_tiles(choice, shape: tuple[int, int], program: Program, params: dict, block_shape, q_len: int,
                 kv_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (b, h, query tile, key tile): whether some row of the tile chose a block the key
    tile overlaps, and whether every row chose every such block; bool ``[B, H, q tiles, key
    tiles]``. ``choice(rows)`` gives the rows' choices (broadcast to ``shape``), a chunk of
    rows at a time: no ``[q, kv]`` mask is formed."""
    block, _, nb = sizes(program.selection, params, kv_len, program.name)
    bm, bn = block_shape
    B, H = shape
    nq, nk = -(-q_len // bm), -(-kv_len // bn)
    first = np.arange(nk) * bn // block                               # blocks each key tile overlaps
    last = np.minimum((np.arange(nk) * bn + bn - 1) // block, nb - 1)
    some = np.zeros((B, H, nq, nk), dtype=bool)
    every = np.zeros((B, H, nq, nk), dtype=bool)
    step = max(1, ROW_CHUNK // max(1, nb * H * B) // bm) * bm
    for m0 in range(0, q_len, step):
        rows = torch.arange(m0, min(q_len, m0 + step))
        c = choice(rows).expand(B, H, len(rows), nb)
        tiles = -(-len(rows) // bm)
        pad = tiles * bm - len(rows)
        t0 = m0 // bm
        for fill, out in ((False, some), (True, every)):
            padded = torch.nn.functional.pad(c, (0, 0, 0, pad), value=fill).view(B, H, tiles, bm, nb)
            per_tile = (padded.any(3) if not fill else padded.all(3)).cpu().numpy()
            cum = np.zeros(per_tile.shape[:-1] + (nb + 1,), dtype=np.int64)
            np.cumsum(per_tile, axis=-1, out=cum[..., 1:])       # over the blocks of each key tile
            hits = cum[..., last + 1] - cum[..., first]
            out[:, :, t0:t0 + tiles] = hits > 0 if not fill else hits == (last - first + 1)
    return some, every


def from_data(program: Program, analyze, inputs: dict, tensors: dict, params: dict, block_shape, start: float,
              lists: list | None = None) -> BlockLayout:
    """The exact layout for these query and key inputs (the choice is made on their device);
    ``lists``, where given, receives each row chunk's chosen blocks (:func:`index_lists`)."""
    sel = program.selection
    q, k = inputs[sel.q].detach(), inputs[sel.k].detach()
    group = q.shape[1] // k.shape[1]
    chooser = Chooser(sel, q, k, tensors, params, program.name)

    def choice(rows: torch.Tensor) -> torch.Tensor:
        c = chooser(rows)
        if lists is not None:
            lists.append(index_lists(c))
        return c.repeat_interleave(group, 1) if sel.shared else c
    return combine(program, analyze(replace(program, selection=None)), choice, (q.shape[0], q.shape[1]), params,
                   block_shape, start)


def combine(program: Program, static: BlockLayout, choice, shape: tuple[int, int], params: dict, block_shape,
            start: float) -> BlockLayout:
    """The layout of the static mask's ``static`` layout restricted to ``choice(rows)`` (bool
    ``[B, H, rows, blocks]`` for groups ``shape``): exact for that choice."""
    some, every = chosen_tiles(choice, shape, program, params, block_shape, static.q_len, static.kv_len)
    visited = np.union1d(_keys(static.partial, static, shape), _keys(static.full, static, shape))
    full = visited[every.reshape(-1)[visited] & np.isin(visited, _keys(static.full, static, shape))]
    partial = np.setdiff1d(visited[some.reshape(-1)[visited]], full, assume_unique=True)
    return _assemble(static, shape, partial, full, "data", start, program.name)


def chosen_lists(lists: list) -> torch.Tensor:
    """The row chunks' chosen blocks as one int32 ``[B, H or H_kv, M, width]``, -1 padded."""
    width = max(t.shape[-1] for t in lists)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=-1) for t in lists], dim=2)


@dataclass
class RowCounts:
    """Key tiles (``block_n`` keys wide) each query row visits in a per-token kernel (NSA's
    group-centric loading, one token per tile), ``[batch, heads, q_len]`` over the groups:
    ``low == high`` where the count cannot depend on the data (``exact``), else the range it
    can take; ``kind`` is "structural" or "data" (computed from given inputs: exact)."""

    low: np.ndarray
    high: np.ndarray
    kind: str

    @property
    def exact(self) -> np.ndarray:
        return self.low == self.high


def _tiles_per_block(static: BlockLayout, rows: slice, shape, nb: int, block: int) -> np.ndarray:
    """Per (group of ``shape``, row in ``rows``, key block): the row's static tiles in the block."""
    nq, bn = static.num_q_blocks, static.block[1]
    out = np.zeros((shape[0], shape[1], rows.stop - rows.start, nb), dtype=np.int64)
    for b in range(shape[0]):
        for h in range(shape[1]):
            g = (b % static.shape[0]) * static.shape[1] + h % static.shape[1]
            for runs in (static.partial, static.full):
                csr = runs.csr(slice(g * nq + rows.start, g * nq + rows.stop))
                np.add.at(out[b, h], (csr.rows(), csr.indices.astype(np.int64) * bn // block), 1)
    return out


def row_counts(program: Program, analyze, tensors: dict, params: dict, block_n: int, batch: int, heads: int,
               inputs: dict | None = None) -> RowCounts:
    """See :class:`RowCounts`; ``analyze(program, block)`` is the static analysis."""
    sel = program.selection
    static = analyze(replace(program, selection=None), (1, block_n))
    q_len, kv_len = static.q_len, static.kv_len
    block, count, nb = sizes(sel, params, kv_len, program.name)
    size = query_block(sel, params, program.name)
    if block % block_n:
        raise AttncompError(f"per-row tile counts need key tiles inside selection blocks: block_n={block_n} must "
                            f"divide the selection's block of {block} keys", variant=program.name)
    if inputs is not None:
        q, k = (inputs[n].detach() for n in (sel.q, sel.k))
        chooser = Chooser(sel, q, k, tensors, params, program.name)
        shape = (q.shape[0], q.shape[1])
    else:
        letters = set().union(*(E.letters_of(e) for e in (sel.eligible, sel.forced) if e is not None))
        shape = (max(static.shape[0], batch if "b" in letters else 1),
                 max(static.shape[1], heads if "h" in letters else 1))
    low = np.zeros(shape + (q_len,), dtype=np.int64)
    high = np.zeros(shape + (q_len,), dtype=np.int64)
    step = max(1, ROW_CHUNK // max(1, nb * shape[0] * shape[1]))
    for m0 in range(0, q_len, step):
        rows = slice(m0, min(q_len, m0 + step))
        t = torch.from_numpy(_tiles_per_block(static, rows, shape, nb, block))
        index = torch.arange(rows.start, rows.stop)
        if inputs is not None:
            chosen = chooser(index)
            if sel.shared:
                chosen = chosen.repeat_interleave(q.shape[1] // k.shape[1], 1)
            low[..., rows] = high[..., rows] = (t * chosen.cpu()).sum(-1).numpy()
            continue
        eligible, forced = candidates(sel, shape[0], shape[1], deciding_rows(index, size, q_len), nb, tensors,
                                      params, program.name)
        free = (eligible & ~forced).expand(t.shape)
        sure = (t * forced).sum(-1)
        if sel.rule != "topk":  # threshold, top-p: any number of the free candidates
            low[..., rows], high[..., rows] = sure.numpy(), (sure + (t * free).sum(-1)).numpy()
            continue
        need = (count - forced.expand(t.shape).sum(-1, keepdim=True)).clamp_min(0)
        rank = torch.arange(nb).expand(t.shape)
        for out, fill, descending in ((low, torch.iinfo(torch.int64).max, False), (high, -1, True)):
            ordered = torch.where(free, t, fill).sort(-1, descending=descending).values
            take = (rank < need) & (ordered != fill)
            out[..., rows] = (sure + (ordered * take).sum(-1)).numpy()
    return RowCounts(low, high, "data" if inputs is not None else "structural")
