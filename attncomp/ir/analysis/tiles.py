"""Exact tile classification by recursive subdivision.

The tile grid of every (b, h) group starts as one rectangle. A level classifies all open
rectangles at once with the interval/affine evaluator: a rectangle proven full or empty
is settled as a whole (empty ones are never enumerated), an undecided one is halved along
its longer side. Cost grows with the boundary of the pattern, not its area: causal
attention over 8192 x 8192 tiles settles in about 26 levels of a few thousand
rectangles each.

Single tiles the intervals cannot settle are decided exactly: first a few sample points
per tile (corners, centre, edge midpoints) — one true and one false sample prove the tile
partial — then, only for tiles whose samples all agree, every point of the tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import expr as E
from ..evaluate import Env, Value, align, evaluate
from .intervals import Box, classify

CHUNK_POINTS = 1 << 22  # points evaluated per batch of dense tiles (32 MiB of int64 per index)


@dataclass
class Grid:
    """The problem: lengths, block sizes, and the (b, h) value of each group."""

    q_len: int
    kv_len: int
    bm: int
    bn: int
    group_b: np.ndarray
    group_h: np.ndarray

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

    def take(self, sel) -> "Rects":
        return Rects(self.g[sel], self.i0[sel], self.i1[sel], self.j0[sel], self.j1[sel])

    @staticmethod
    def concat(parts: list["Rects"]) -> "Rects":
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return Rects(z, z, z, z, z)
        return Rects(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("g", "i0", "i1", "j0", "j1")))

    def box(self, grid: Grid) -> Box:
        f = lambda x: x.astype(np.float64)
        return Box(f(grid.group_b[self.g]), f(grid.group_h[self.g]),
                   f(self.i0 * grid.bm), f(np.minimum(self.i1 * grid.bm, grid.q_len) - 1),
                   f(self.j0 * grid.bn), f(np.minimum(self.j1 * grid.bn, grid.kv_len) - 1))

    def halves(self) -> "Rects":
        """Each rectangle split in two along its longer side (in tiles)."""
        tall = (self.i1 - self.i0) >= (self.j1 - self.j0)
        im, jm = (self.i0 + self.i1) // 2, (self.j0 + self.j1) // 2
        first = Rects(self.g, self.i0, np.where(tall, im, self.i1), self.j0, np.where(tall, self.j1, jm))
        second = Rects(self.g, np.where(tall, im, self.i0), self.i1, np.where(tall, self.j0, jm), self.j1)
        return Rects.concat([first, second])


def subdivide(mask: E.Expr, grid: Grid, params: dict, load, stats: dict | None = None) -> tuple[Rects, Rects]:
    """Proven-full rectangles and undecided single tiles (empty space is dropped).
    ``stats`` receives the number of levels and of rectangles the intervals classified."""
    G = len(grid.group_b)
    todo = Rects(np.arange(G, dtype=np.int64), np.zeros(G, np.int64), np.full(G, grid.nq, np.int64),
                 np.zeros(G, np.int64), np.full(G, grid.nk, np.int64))
    full, leaves = [], []
    levels = rects = 0
    while len(todo):
        levels, rects = levels + 1, rects + len(todo)
        tri = classify(mask, todo.box(grid), params, load)
        full.append(todo.take(tri.t & ~tri.f))
        undecided = tri.t & tri.f
        single = undecided & (todo.i1 - todo.i0 == 1) & (todo.j1 - todo.j0 == 1)
        leaves.append(todo.take(single))
        todo = todo.take(undecided & ~single).halves()
    if stats is not None:
        stats.update(levels=levels, rectangles=rects)
    return Rects.concat(full), Rects.concat(leaves)


class PointEvaluator:
    """Evaluates the mask exactly at points of many tiles, with the IR's own evaluator."""

    def __init__(self, mask: E.Expr, grid: Grid, tensors: dict, params: dict, variant: str):
        self.mask, self.grid, self.tensors, self.params, self.variant = mask, grid, tensors, params, variant

    def at(self, g: np.ndarray, m: torch.Tensor, m_letters: tuple[str, str],
           n: torch.Tensor, n_letters: tuple[str, str]) -> torch.Tensor:
        """Mask values for tile ``t`` of group ``g[t]`` at query indices ``m`` (a tensor over
        ``m_letters``, e.g. ("t", "i")) and key indices ``n``; bool tensor over the union."""
        grid = self.grid
        gt = torch.from_numpy(g)
        index = {"b": Value(torch.from_numpy(grid.group_b)[gt], ("t",)),
                 "h": Value(torch.from_numpy(grid.group_h)[gt], ("t",)),
                 "m": Value(m, m_letters), "n": Value(n, n_letters)}
        env = Env(order=("t", "s", "i", "j"), index=index, tensors=self.tensors, params=self.params,
                  variant=self.variant)
        v = evaluate(self.mask, env)
        sizes = dict(zip(m_letters, m.shape)) | dict(zip(n_letters, n.shape))
        out = tuple(x for x in env.order if x in sizes)
        return align(Value(v.t.to(torch.bool), v.letters), out).expand([sizes[x] for x in out])

    def samples(self, tiles: Rects) -> tuple[np.ndarray, np.ndarray]:
        """(any sample true, any sample false) per tile, at 11 points spread over the tile."""
        grid = self.grid
        fr = torch.tensor([0, 0, 1, 1, 0.5, 0.25, 0.75, 0, 0.5, 1, 0.5], dtype=torch.float64)
        fc = torch.tensor([0, 1, 0, 1, 0.5, 0.75, 0.25, 0.5, 0, 0.5, 1], dtype=torch.float64)
        m0, n0 = torch.from_numpy(tiles.i0 * grid.bm), torch.from_numpy(tiles.j0 * grid.bn)
        hm = torch.clamp(grid.q_len - m0, max=grid.bm) - 1
        hn = torch.clamp(grid.kv_len - n0, max=grid.bn) - 1
        m = m0[:, None] + (fr[None, :] * hm[:, None]).round().long()
        n = n0[:, None] + (fc[None, :] * hn[:, None]).round().long()
        v = self.at(tiles.g, m, ("t", "s"), n, ("t", "s"))
        return v.any(1).numpy(), (~v).any(1).numpy()

    def dense(self, tiles: Rects, count: bool = False):
        """Per tile: (all true, any true), or the number of true points with ``count``.
        Rows/columns past the end are clamped onto the last one, which changes neither."""
        grid = self.grid
        per_chunk = max(1, CHUNK_POINTS // (grid.bm * grid.bn))
        outs = []
        for s in range(0, len(tiles), per_chunk):
            part = tiles.take(slice(s, s + per_chunk))
            m = torch.clamp(torch.from_numpy(part.i0 * grid.bm)[:, None] + torch.arange(grid.bm)[None, :], max=grid.q_len - 1)
            n = torch.clamp(torch.from_numpy(part.j0 * grid.bn)[:, None] + torch.arange(grid.bn)[None, :], max=grid.kv_len - 1)
            v = self.at(part.g, m, ("t", "i"), n, ("t", "j"))
            if count:
                rows = torch.from_numpy(np.minimum(grid.q_len - part.i0 * grid.bm, grid.bm))
                cols = torch.from_numpy(np.minimum(grid.kv_len - part.j0 * grid.bn, grid.bn))
                inside = (torch.arange(grid.bm)[None, :, None] < rows[:, None, None]) & \
                         (torch.arange(grid.bn)[None, None, :] < cols[:, None, None])
                outs.append((v & inside).sum((1, 2)).numpy())
            else:
                outs.append((v.all(2).all(1).numpy(), v.any(2).any(1).numpy()))
        if count:
            return np.concatenate(outs) if outs else np.zeros(0, np.int64)
        if not outs:
            return np.zeros(0, bool), np.zeros(0, bool)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def resolve_leaves(points: PointEvaluator, leaves: Rects, stats: dict | None = None) -> tuple[Rects, Rects]:
    """Split undecided tiles into (full, partial) exactly; empty ones are dropped.
    ``stats`` receives how many tiles were sampled and how many evaluated densely."""
    if stats is not None:
        stats.update(sampled_tiles=len(leaves), dense_tiles=0)
    if not len(leaves):
        return leaves, leaves
    some_true, some_false = points.samples(leaves)
    mixed = some_true & some_false
    rest = leaves.take(~mixed)
    if stats is not None:
        stats["dense_tiles"] = len(rest)
    all_true, any_true = points.dense(rest)
    full = rest.take(all_true)
    partial = Rects.concat([leaves.take(mixed), rest.take(any_true & ~all_true)])
    return full, partial
