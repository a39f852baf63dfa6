"""Exact block-sparsity analysis: ``analyze(spec, q_len, kv_len, block)`` -> BlockLayout.

The classification equals evaluating the mask at every (q, kv) pair — proven, not
sampled: interval/affine reasoning settles whole rectangles of tiles, per-block min/max
summaries bound runtime-tensor loads, and only tiles the reasoning cannot settle are
evaluated point by point (see :mod:`.tiles`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ...errors import AttncompError, api_boundary
from .. import expr as E
from ..arguments import block_shape, known_tensors, positive_int
from ..evaluate import mask_mod
from ..plan import Plan, plan_of
from ..program import Program
from ..runtime import check_runtime_tensors
from ..selection import sizes as selection_sizes
from . import periodic, selected
from .density import Density, PartialTiles
from .digits import grid_refine
from .intervals import IntervalEvaluator
from .layout import CSR, BlockLayout, Runs, from_tiles
from .loads import check_loads
from .shift import tile_periods
from .summaries import RangeTable
from .tiles import Grid, PointEvaluator, Rects, group_shape, resolve_leaves, subdivide

__all__ = ["BlockLayout", "CSR", "Runs", "analyze", "group_shape", "row_counts"]

@api_boundary
def analyze(spec: Program | Plan, q_len: int = 4096, kv_len: int | None = None, block=(128, 128), tensors: dict | None = None,
            batch: int = 1, heads: int = 1, inputs: dict | None = None) -> BlockLayout:
    """Classify every (query block, key block) tile of ``spec``'s mask as empty, partial or full.

    ``tensors`` gives runtime tensors (captured ones are used by default). Masks that read
    ``b`` or ``h`` get a layout per batch element / head; others broadcast. A spec with a
    data-dependent selection stage gets the layout every choice fits in
    (``layout.selection == "structural"``), or, given the query and key ``inputs`` by name
    (``inputs={"Q": q, "K": k}``), the exact layout of their choice (``"data"``).

    >>> import attncomp as ac
    >>> layout = ac.analyze(ac.variants.causal(), q_len=8192, kv_len=8192, block=(128, 128))
    >>> layout.counts
    {'empty': 2016, 'partial': 64, 'full': 2016}
    >>> print(ac.analyze(ac.variants.sliding_window(256), 1024, block=128).show())
    ▒·······
    █▒······
    ▒█▒·····
    ·▒█▒····
    ··▒█▒···
    ···▒█▒··
    ····▒█▒·
    ·····▒█▒
    """
    start = time.perf_counter()
    if not isinstance(spec, (Program, Plan)):
        hint = ("Wrap a mask function as ac.attention(mask=fn)" if callable(spec) else
                "Build one with ac.attention, ac.cascade or attncomp.variants")
        raise AttncompError(f"ac.analyze expects a Program, got {type(spec).__name__}", hint=hint)
    kv_len = q_len if kv_len is None else kv_len
    for name, value in (("q_len", q_len), ("kv_len", kv_len), ("batch", batch), ("heads", heads)):
        positive_int(name, value, spec.name)
    bm, bn = block_shape(block, spec.name)
    planned = plan_of(spec)
    tensors = known_tensors(planned.spec, tensors)
    if planned.program.selection is not None:
        return _selected_layout(planned, q_len, kv_len, (bm, bn), tensors, batch, heads, inputs, start)
    if inputs is not None:
        raise AttncompError("inputs= is for specs with a selection stage; this one's layout does not depend on "
                            "Q or K", variant=spec.name)
    return planned.layout((q_len, kv_len, (bm, bn), batch, heads), tensors,
                          lambda: _classify(planned, q_len, kv_len, bm, bn, tensors, batch, heads, start))


@api_boundary
def row_counts(spec: Program | Plan, q_len: int, kv_len: int | None = None, block_n: int = 64,
               tensors: dict | None = None, batch: int = 1, heads: int = 1,
               inputs: dict | None = None) -> selected.RowCounts:
    """For a spec with a selection stage: the key tiles (``block_n`` wide) each query row
    visits, as a per-token kernel walks them — exact where the data cannot change the count
    (MoBA's and NSA's top-k over full blocks), else its range; with ``inputs`` (Q and K by
    name) the counts of their choice.

    >>> import attncomp as ac
    >>> from attncomp.ir.analysis import row_counts
    >>> counts = row_counts(ac.variants.moba(block_size=64, top_k=3), 256, block_n=32)
    >>> bool(counts.exact.all()), counts.high[0, 0, [0, 63, 64, 255]].tolist()
    (True, [1, 2, 3, 6])
    """
    kv_len = q_len if kv_len is None else kv_len
    for name, value in (("q_len", q_len), ("kv_len", kv_len), ("batch", batch), ("heads", heads),
                        ("block_n", block_n)):
        positive_int(name, value, spec.name)
    planned = plan_of(spec)
    program = planned.program
    if program.selection is None:
        raise AttncompError("row_counts is for specs with a selection stage; analyze gives the others' layouts",
                            variant=spec.name)
    tensors = known_tensors(planned.spec, tensors)
    params = {k: v for k, v in program.params.items() if v is not None}
    values = {**dict(planned.spec.bindings), **tensors}
    return selected.row_counts(program, lambda p, block: analyze(p, q_len, kv_len, block, tensors=tensors,
                                                                  batch=batch, heads=heads),
                               values, params, block_n, batch, heads, inputs)


def _selected_layout(planned: Plan, q_len: int, kv_len: int, block: tuple[int, int], tensors: dict, batch: int,
                     heads: int, inputs: dict | None, start: float) -> BlockLayout:
    program = planned.program
    params = {k: v for k, v in program.params.items() if v is not None}
    selection_sizes(program.selection, params, kv_len, program.name)  # checked before any work
    values = {**dict(planned.spec.bindings), **tensors}

    def static(p: Program) -> BlockLayout:
        return analyze(p, q_len, kv_len, block, tensors=tensors, batch=batch, heads=heads)
    if inputs is None:
        return planned.layout((q_len, kv_len, block, batch, heads), tensors,
                              lambda: selected.structural(program, static, values, params, block, batch, heads,
                                                          start))
    if not isinstance(inputs, dict) or {program.selection.q, program.selection.k} - set(inputs):
        raise AttncompError(f"inputs must be a dict with the selection's query and key inputs "
                            f"{program.selection.q!r} and {program.selection.k!r}", variant=program.name)
    q, k = inputs[program.selection.q], inputs[program.selection.k]
    if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and q.dim() == k.dim() == 4
            and q.shape[2] == q_len and k.shape[2] == kv_len and q.shape[-1] == k.shape[-1]
            and k.shape[1] >= 1 and q.shape[1] % k.shape[1] == 0 and q.shape[0] == k.shape[0]):
        raise AttncompError(f"inputs: {program.selection.q} must be [B, H, q_len={q_len}, D] and "
                            f"{program.selection.k} [B, H_kv, kv_len={kv_len}, D] with H a multiple of H_kv",
                            variant=program.name)
    return selected.from_data(program, static, inputs, values, params, block, start)


def _classify(planned: Plan, q_len: int, kv_len: int, bm: int, bn: int, tensors: dict, batch: int, heads: int,
              start: float) -> BlockLayout:
    spec, program = planned.spec, planned.program
    mask = program.mask
    shape = group_shape(E.letters_of(mask) if mask is not None else set(), batch, heads)
    grid = Grid.of_groups(q_len, kv_len, bm, bn, shape)
    G = len(grid.group_b)
    root = Rects(np.arange(G), np.zeros(G, np.int64), np.full(G, grid.nq), np.zeros(G, np.int64), np.full(G, grid.nk))
    if mask is None:
        empty = Rects.concat([])
        return from_tiles(grid, root, empty, empty, shape, name=spec.name, stats={"levels": 0, "rectangles": 0},
                          analysis_time_s=time.perf_counter() - start, _density=Density(1.0, 1.0, 1.0))

    periods = tile_periods(mask, bm, bn)
    pi, pj, _ = periods
    if pi and pj and (periodic.worth_reducing(grid.nq, pi) or periodic.worth_reducing(grid.nk, pj)):
        small = _classify(planned, periodic.reduced_length(q_len, bm, pi), periodic.reduced_length(kv_len, bn, pj),
                          bm, bn, tensors, batch, heads, start)
        layout = periodic.expand(small, q_len, kv_len, pi, pj)
        layout.analysis_time_s = time.perf_counter() - start
        return layout
    values = check_runtime_tensors(program, tensors, {"b": batch, "h": heads})
    params = {k: v for k, v in program.params.items() if v is not None}
    group = max(1, min(64, math.gcd(bm, bn)))
    tables = {name: RangeTable(t, group) for name, t in values.items() if name in E.tensors_of(mask)}

    def load(decl, ranges):
        return tables[decl.name].query(ranges)

    reps, members = _group_classes(mask, grid)
    rgrid = Grid(q_len, kv_len, bm, bn, grid.group_b[reps], grid.group_h[reps])
    check_loads(program, q_len, kv_len, batch, heads, values, params,
                loads=[n for n in E.walk(mask) if n.op == "load"], load_fn=load)
    stats: dict = {"groups": G, "distinct_groups": len(reps)}
    full_rects, leaves = subdivide(mask, rgrid, params, load, stats)
    points = PointEvaluator(mask, values, params, program.name)
    full_tiles, partial_tiles = resolve_leaves(points, rgrid, params, load, leaves, stats, decide=grid_refine)

    partials = PartialTiles(rgrid, partial_tiles, members.counts()[partial_tiles.g], points, params, load, periods)
    return from_tiles(grid, *(members.expand(r) for r in (full_rects, full_tiles, partial_tiles)), shape,
                      name=spec.name, analysis_time_s=time.perf_counter() - start, stats=stats,
                      partials=partials, mask_mod=mask_mod(mask, values, params, program.name))


def _group_classes(mask: E.Expr, grid: Grid) -> tuple[np.ndarray, _Members]:
    """Groups whose mask folds to the same expression once ``b`` and ``h`` are substituted
    have the same layout — ``h % 3 == ...`` over 16 heads is three classes — so only one
    representative per class is analyzed. Returns the representatives and the members."""
    from ..passes.fold import fold_expr

    keys: dict[E.Expr, int] = {}
    cls = np.empty(len(grid.group_b), dtype=np.int64)
    b, h = E.var("b"), E.var("h")
    for g, (gb, gh) in enumerate(zip(grid.group_b.tolist(), grid.group_h.tolist())):
        key = fold_expr(E.substitute(mask, {b: E.const(int(gb), "int64"), h: E.const(int(gh), "int64")}))
        cls[g] = keys.setdefault(key, len(keys))
    order = np.argsort(cls, kind="stable")
    offsets = np.searchsorted(cls[order], np.arange(len(keys) + 1))
    return order[offsets[:-1]], _Members(offsets, order)


class _Members(CSR):
    """Class c's groups are ``indices[offsets[c]:offsets[c + 1]]``."""

    def expand(self, rects: Rects) -> Rects:
        """Rectangles of the representatives, copied to every group of their class."""
        sizes = self.counts()[rects.g]
        copy = rects.take(np.repeat(np.arange(len(rects)), sizes))
        within = np.arange(len(copy)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        copy.g = self.indices[np.repeat(self.offsets[rects.g], sizes) + within]
        return copy


