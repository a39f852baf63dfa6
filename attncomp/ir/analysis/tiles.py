"""Exact tile classification by recursive subdivision.

The tile grid of every (b, h) group starts as one rectangle. A level classifies all open
rectangles at once with the interval/affine evaluator: a rectangle proven full or empty
is settled as a whole (empty ones are never enumerated), an undecided one is halved along
its longer side. Cost grows with the boundary of the pattern, not its area: causal
attention over 8192 x 8192 tiles settles in about 26 levels of a few thousand
rectangles each.

Single tiles the intervals cannot settle are decided exactly: a few sample points per tile
(corners and a jittered lattice) — one true and one false sample prove the tile partial
— then the same subdivision inside the tile at point resolution, with only boxes of a few
dozen points evaluated point by point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import expr as E
from ..evaluate import Env, Value, align, evaluate
from .intervals import Box, classify

CHUNK_POINTS = 1 << 22  # points evaluated per batch of boxes (32 MiB of int64 per index)
SMALL_BOX = 4096  # boxes of at most this many points are evaluated point by point
START_GRID = 16  # the tile grid of each group starts as up to 16 x 16 rectangles


def group_shape(letters: set[str], batch: int, heads: int) -> tuple[int, int]:
    """The (batch, heads) groups an expression over ``letters`` needs: one per batch element
    where it reads ``b``, one per head where it reads ``h``; otherwise they broadcast."""
    return (batch if "b" in letters else 1, heads if "h" in letters else 1)


@dataclass
class Grid:
    """The problem: lengths, block sizes, and the (b, h) value of each group."""

    q_len: int
    kv_len: int
    bm: int
    bn: int
    group_b: np.ndarray
    group_h: np.ndarray

    @classmethod
    def of_groups(cls, q_len: int, kv_len: int, bm: int, bn: int, shape: tuple[int, int]) -> Grid:
        """The grid with one group per (b, h) of ``shape``, batch-major."""
        gb, gh = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        return cls(q_len, kv_len, bm, bn, gb.reshape(-1).astype(np.int64), gh.reshape(-1).astype(np.int64))

    @property
    def nq(self) -> int:
        return -(-self.q_len // self.bm)

    @property
    def nk(self) -> int:
        return -(-self.kv_len // self.bn)


@dataclass
class Rects:
    """Rectangles of tiles ``[i0, i1) x [j0, j1)`` in group ``g`` (int64 arrays)."""

    g: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    j0: np.ndarray
    j1: np.ndarray

    def __len__(self) -> int:
        return len(self.g)

    def take(self, sel) -> Rects:
        return Rects(self.g[sel], self.i0[sel], self.i1[sel], self.j0[sel], self.j1[sel])

    @staticmethod
    def concat(parts: list[Rects]) -> Rects:
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return Rects(z, z, z, z, z)
        return Rects(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("g", "i0", "i1", "j0", "j1")))

    def box(self, grid: Grid) -> Box:
        f = lambda x: x.astype(np.float64)
        return Box(f(grid.group_b[self.g]), f(grid.group_h[self.g]),
                   f(self.i0 * grid.bm), f(np.minimum(self.i1 * grid.bm, grid.q_len) - 1),
                   f(self.j0 * grid.bn), f(np.minimum(self.j1 * grid.bn, grid.kv_len) - 1))

    def halves(self) -> Rects:
        """Each rectangle split in two along its longer side."""
        tall = (self.i1 - self.i0) >= (self.j1 - self.j0)
        im, jm = (self.i0 + self.i1) // 2, (self.j0 + self.j1) // 2
        first = Rects(self.g, self.i0, np.where(tall, im, self.i1), self.j0, np.where(tall, self.j1, jm))
        second = Rects(self.g, np.where(tall, im, self.i0), self.i1, np.where(tall, self.j0, jm), self.j1)
        return Rects.concat([first, second])

    def quarters(self) -> Rects:
        """Each rectangle split in two along each side longer than one (fewer levels than
        halving, so less per-level overhead)."""
        out = self
        for axis in ("i", "j"):
            lo, hi = getattr(out, axis + "0"), getattr(out, axis + "1")
            mid = np.where(hi - lo > 1, (lo + hi) // 2, hi)
            first = Rects(out.g, out.i0, mid if axis == "i" else out.i1, out.j0, mid if axis == "j" else out.j1)
            second = Rects(out.g, mid if axis == "i" else out.i0, out.i1, mid if axis == "j" else out.j0, out.j1)
            both = Rects.concat([first, second])
            out = both.take((both.i1 > both.i0) & (both.j1 > both.j0))
        return out

    @staticmethod
    def grid(groups: int, rows: int, cols: int, per_side: int) -> Rects:
        """Each group's ``rows x cols`` tiles cut into up to ``per_side x per_side`` rectangles."""
        ri, cj = (_distinct(np.linspace(0, n, min(per_side, n) + 1).astype(np.int64)) for n in (rows, cols))
        g, a, c = np.meshgrid(np.arange(groups), np.arange(len(ri) - 1), np.arange(len(cj) - 1), indexing="ij")
        g, a, c = g.ravel(), a.ravel(), c.ravel()
        return Rects(g.astype(np.int64), ri[a], ri[a + 1], cj[c], cj[c + 1])


def _distinct(ascending: np.ndarray) -> np.ndarray:
    """The distinct values of an ascending array (``np.unique`` imports ``numpy.ma`` on first
    use, 15 ms of a cold analysis)."""
    return ascending[np.concatenate(([True], ascending[1:] != ascending[:-1]))]


def subdivide(mask: E.Expr, grid: Grid, params: dict, load, stats: dict | None = None) -> tuple[Rects, Rects]:
    """Proven-full rectangles and undecided single tiles (empty space is dropped).
    ``stats`` receives the number of levels and of rectangles the intervals classified."""
    # Start from a coarse grid of rectangles: the top levels of a halving would settle
    # almost nothing for masks whose pattern spans the whole sequence.
    todo = Rects.grid(len(grid.group_b), grid.nq, grid.nk, START_GRID)
    full, leaves = [], []
    levels = rects = 0
    while len(todo):
        levels, rects = levels + 1, rects + len(todo)
        tri = classify(mask, todo.box(grid), params, load)
        full.append(todo.take(tri.t & ~tri.f))
        undecided = tri.t & tri.f
        single = undecided & (todo.i1 - todo.i0 == 1) & (todo.j1 - todo.j0 == 1)
        leaves.append(todo.take(single))
        todo = todo.take(undecided & ~single).quarters()
    if stats is not None:
        stats.update(levels=levels, rectangles=rects)
    return Rects.concat(full), Rects.concat(leaves)


class PointEvaluator:
    """Evaluates the mask exactly at points, batched over many boxes, with the IR's own
    evaluator; each box has its own (b, h) and query/key ranges."""

    def __init__(self, mask: E.Expr, tensors: dict, params: dict, variant: str):
        self.mask, self.tensors, self.params, self.variant = mask, tensors, params, variant

    def at(self, b, h, m: torch.Tensor, m_letters: tuple[str, str], n: torch.Tensor,
           n_letters: tuple[str, str]) -> torch.Tensor:
        """Mask values for box ``t`` (with ``b[t]``, ``h[t]``) at query indices ``m`` (a
        tensor over ``m_letters``, e.g. ("t", "i")) and key indices ``n``."""
        index = {"b": Value(torch.from_numpy(b), ("t",)), "h": Value(torch.from_numpy(h), ("t",)),
                 "m": Value(m, m_letters), "n": Value(n, n_letters)}
        env = Env(order=("t", "s", "i", "j"), index=index, tensors=self.tensors, params=self.params,
                  variant=self.variant)
        v = evaluate(self.mask, env)
        sizes = dict(zip(m_letters, m.shape)) | dict(zip(n_letters, n.shape))
        out = tuple(x for x in env.order if x in sizes)
        return align(Value(v.t.to(torch.bool), v.letters), out).expand([sizes[x] for x in out])

    def samples(self, b, h, r: Rects) -> tuple[np.ndarray, np.ndarray]:
        """(some sample true, some sample false) per box (rects in points), at its four
        corners and one random point in each cell of an 8 x 8 grid over it (a jittered
        lattice, seeded). A regular lattice would pair row and column offsets alike, and
        on tile-major grid layouts (NATTEN) those are correlated coordinates that can miss
        a tile's kept pairs every time."""
        gen = torch.Generator().manual_seed(len(r))
        cells = torch.arange(8, dtype=torch.float64)
        corner = torch.tensor([0.0, 0.0, 1.0, 1.0])
        fr = torch.cat([corner, (cells.repeat_interleave(8) + torch.rand(64, generator=gen, dtype=torch.float64)) / 8])
        fc = torch.cat([corner.roll(1), (cells.repeat(8) + torch.rand(64, generator=gen, dtype=torch.float64)) / 8])
        m0, n0 = torch.from_numpy(r.i0), torch.from_numpy(r.j0)
        hm, hn = torch.from_numpy(r.i1 - r.i0 - 1), torch.from_numpy(r.j1 - r.j0 - 1)
        m = m0[:, None] + (fr[None, :] * hm[:, None]).round().long()
        n = n0[:, None] + (fc[None, :] * hn[:, None]).round().long()
        v = self.at(b, h, m, ("t", "s"), n, ("t", "s"))
        return v.any(1).numpy(), (~v).any(1).numpy()

    def boxes(self, b, h, r: Rects, count: bool = False):
        """Every point of each box (rects in points, at most CHUNK_POINTS at a time): per
        box (any true, any false), or its number of true points with ``count``. Boxes are
        padded to the largest by repeating their last row/column, which changes neither."""
        if not len(r):
            return np.zeros(0, np.int64) if count else (np.zeros(0, bool), np.zeros(0, bool))
        sm, sn = int((r.i1 - r.i0).max()), int((r.j1 - r.j0).max())
        per_chunk = max(1, CHUNK_POINTS // (sm * sn))
        outs = []
        for s in range(0, len(r), per_chunk):
            sl = slice(s, s + per_chunk)
            part = r.take(sl)
            i0, i1 = torch.from_numpy(part.i0)[:, None], torch.from_numpy(part.i1)[:, None]
            j0, j1 = torch.from_numpy(part.j0)[:, None], torch.from_numpy(part.j1)[:, None]
            m = torch.minimum(i0 + torch.arange(sm)[None, :], i1 - 1)
            n = torch.minimum(j0 + torch.arange(sn)[None, :], j1 - 1)
            v = self.at(b[sl], h[sl], m, ("t", "i"), n, ("t", "j"))
            if count:
                inside = (torch.arange(sm)[None, :, None] < (i1 - i0)[:, :, None]) & \
                         (torch.arange(sn)[None, None, :] < (j1 - j0)[:, :, None])
                outs.append((v & inside).sum((1, 2)).numpy())
            else:
                outs.append((v.any(2).any(1).numpy(), (~v).any(2).any(1).numpy()))
        if count:
            return np.concatenate(outs)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def _points(grid: Grid, tiles: Rects) -> tuple[np.ndarray, np.ndarray, Rects]:
    """(b, h, point rectangles) of tiles: tile ``[i0, i1) x [j0, j1)`` covers points
    ``[i0*bm, min(i1*bm, q_len)) x ...``."""
    r = Rects(np.arange(len(tiles), dtype=np.int64), tiles.i0 * grid.bm, np.minimum(tiles.i1 * grid.bm, grid.q_len),
              tiles.j0 * grid.bn, np.minimum(tiles.j1 * grid.bn, grid.kv_len))
    return grid.group_b[tiles.g], grid.group_h[tiles.g], r


def refine(points: PointEvaluator, grid: Grid, params: dict, load, tiles: Rects, count: bool = False,
           stats: dict | None = None):
    """Decide tiles the tile-level intervals could not, exactly, by the same subdivision
    at point resolution: sub-boxes proven all-true or all-false are evidence, boxes of at
    most SMALL_BOX points are evaluated point by point. Returns per tile (some true, some
    false) — a tile with both is partial, and its refinement stops early — or, with
    ``count``, the number of true points per tile. (Masks on grid coordinates are
    decided in digit space by the callers first: :mod:`.digits`.)"""
    b, h, todo = _points(grid, tiles)
    T = len(tiles)
    pgrid = Grid(grid.q_len, grid.kv_len, 1, 1, b, h)
    if count:
        kept = np.zeros(T, dtype=np.int64)
    else:
        some_true, some_false = points.samples(b, h, todo)
    small, rects = [], 0
    while len(todo):
        if not count:
            todo = todo.take(~(some_true & some_false)[todo.g])
        rects += len(todo)
        tri = classify(points.mask, todo.box(pgrid), params, load)
        full, empty = tri.t & ~tri.f, tri.f & ~tri.t
        if count:
            np.add.at(kept, todo.g[full], ((todo.i1 - todo.i0) * (todo.j1 - todo.j0))[full])
        else:
            some_true[todo.g[full]] = True
            some_false[todo.g[empty]] = True
        undecided = tri.t & tri.f
        tiny = undecided & ((todo.i1 - todo.i0) * (todo.j1 - todo.j0) <= SMALL_BOX)
        small.append(todo.take(tiny))
        todo = todo.take(undecided & ~tiny).quarters()
    small = Rects.concat(small)
    if stats is not None:
        stats.update(refined_tiles=T, refine_rectangles=rects, dense_boxes=len(small))
    if count:
        np.add.at(kept, small.g, points.boxes(b[small.g], h[small.g], small, count=True))
        return kept
    small = small.take(~(some_true & some_false)[small.g])  # tiles already proven partial are done
    if len(small):
        t, f = points.boxes(b[small.g], h[small.g], small)
        some_true[small.g[t]] = True
        some_false[small.g[f]] = True
    return some_true, some_false


def resolve_leaves(points: PointEvaluator, grid: Grid, params: dict, load, leaves: Rects,
                   stats: dict | None = None, decide=None) -> tuple[Rects, Rects]:
    """Split undecided tiles into (full, partial) exactly; empty ones are dropped.
    ``decide`` (as :func:`.digits.grid_refine`) is tried first; None from it means refine."""
    if not len(leaves):
        if stats is not None:
            stats.update(refined_tiles=0, refine_rectangles=0, dense_boxes=0)
        return leaves, leaves
    decided = decide(points, grid, params, load, leaves, False, stats) if decide else None
    some_true, some_false = decided if decided is not None else refine(points, grid, params, load, leaves, stats=stats)
    return leaves.take(some_true & ~some_false), leaves.take(some_true & some_false)
