"""How many pairs the partial tiles keep: exact when that is cheap, otherwise estimated.

Full tiles keep their whole area and empty ones nothing, so the mask density is exact but
for the partial tiles. Those are counted

1. **once per class of copies**: a shift of whole tiles that leaves the mask unchanged
   (:mod:`.shift`) maps a tile onto one that keeps the same pairs, so causal attention at
   16M tokens counts one diagonal tile, not 131,072;
2. **exactly** for masks on grid coordinates (:mod:`.digits`: a product of per-component
   counts), and for others while the distinct tiles hold at most ``EXACT_POINTS`` points
   (the interval subdivision of :func:`.tiles.refine`, point by point only where it must);
3. otherwise **estimated** by stratified sampling: ``SAMPLE_POINTS`` points drawn
   uniformly from the partial area (strata: runs of tiles in (group, row, column) order,
   points allotted by area), the kept fraction of each stratum with an Agresti-Coull
   variance, and an interval from their sum (Cochran, *Sampling Techniques*, 5.9). The
   interval is built at 99% (z = 2.576) so that it holds in at least 95% of uses, as a
   user reading "95%" expects, rather than in 95% on average (a normal approximation to
   a few skewed strata covers slightly less than its nominal level). The draw is seeded,
   so an analysis is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .digits import grid_refine, unique_rows
from .tiles import CHUNK_POINTS, Grid, PointEvaluator, Rects, refine

EXACT_POINTS = 1 << 26  # distinct partial-tile points counted exactly (about 0.3-1 s)
SAMPLE_POINTS = 1 << 18  # points sampled otherwise: a 95% interval of at most +-0.2% of the partial area
STRATA = 32
Z = 2.5758293035489  # two-sided 99%: the stated 95% holds with margin


@dataclass(frozen=True)
class Density:
    """The fraction of (q, kv) pairs a mask keeps, with its 95% interval (``low == high ==
    value`` when exact) and the number of points sampled (0 when exact)."""

    value: float
    low: float
    high: float
    sampled_points: int = 0
    bound: bool = False  # [low, high] is the range a data-dependent selection can give

    @property
    def exact(self) -> bool:
        return self.sampled_points == 0 and not self.bound


@dataclass
class PartialTiles:
    """Partial tiles of a (representative) grid, each standing for ``weight`` tiles of the
    layout, and what evaluates the mask on them."""

    grid: Grid
    tiles: Rects
    weight: np.ndarray
    points: PointEvaluator
    params: dict
    load: object
    periods: tuple[int | None, int | None, int | None]  # shift.tile_periods of the mask, found by the analysis

    def kept(self) -> tuple[float, float, float, int]:
        """Kept pairs in all partial tiles of the layout: (value, low, high, points sampled)."""
        reps, weight = self._classes()
        on_grid = grid_refine(self.points, self.grid, self.params, self.load, reps, True, None)
        if on_grid is not None:  # a grid mask: counted per component of its digits, exactly
            value = float(np.dot(on_grid.astype(np.float64), weight))
            return value, value, value, 0
        areas = _areas(self.grid, reps)
        if float(areas.sum()) <= EXACT_POINTS:
            count = refine(self.points, self.grid, self.params, self.load, reps, count=True)
            value = float(np.dot(count.astype(np.float64), weight))
            return value, value, value, 0
        return self._sampled(reps, weight, areas, SAMPLE_POINTS)

    def _classes(self) -> tuple[Rects, np.ndarray]:
        """One tile per class of copies, with the summed weight of its class."""
        t, g = self.tiles, self.grid
        pi, pj, pd = self.periods
        if not len(t) or not (pi or pj or pd):
            return t, self.weight.astype(np.float64)
        i, j = t.i0.copy(), t.j0.copy()
        if pi and pj:
            a, c = i % pi, j % pj
        elif pd:
            a, c = i - j, i % pd
        else:
            a, c = (i % pi, j) if pi else (i, j % pj)
        # tiles cut by the end of the sequence are smaller: each is its own class
        edge = ((i == g.nq - 1) & (g.q_len % g.bm != 0)) | ((j == g.nk - 1) & (g.kv_len % g.bn != 0))
        a, c = np.where(edge, i, a), np.where(edge, j, c)
        first, inverse = unique_rows(np.stack([t.g, edge.astype(np.int64), a, c], axis=1))
        weight = np.bincount(inverse, weights=self.weight.astype(np.float64), minlength=len(first))
        return t.take(first), weight

    def _sampled(self, reps: Rects, weight: np.ndarray, areas: np.ndarray, n: int) -> tuple[float, float, float, int]:
        order = np.lexsort((reps.j0, reps.i0, reps.g))
        reps, weight, areas = reps.take(order), weight[order], areas[order]
        mass = weight * areas  # points of the layout each representative stands for
        total = float(mass.sum())
        cum = np.cumsum(mass)
        # strata of about equal area, cut between tiles
        cuts = np.searchsorted(cum, total * np.arange(1, STRATA) / STRATA, side="left")
        bounds = np.unique(np.concatenate(([0], np.minimum(cuts + 1, len(reps)), [len(reps)])))
        rng = np.random.default_rng(0)
        tiles, strata, sizes = [], [], []
        for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            area = float(mass[lo:hi].sum())
            k = max(64, int(round(n * area / total)))
            tiles.append(lo + rng.choice(hi - lo, size=k, p=mass[lo:hi] / area))
            strata.append(np.full(k, s))
            sizes.append(area)
        tiles, strata = np.concatenate(tiles), np.concatenate(strata)
        kept = self._evaluate(reps.take(tiles), rng)
        x = np.bincount(strata, weights=kept, minlength=len(sizes))
        k = np.bincount(strata, minlength=len(sizes)).astype(np.float64)
        sizes = np.array(sizes)
        value = float(np.dot(sizes, x / k))
        p = (x + 2) / (k + 4)  # Agresti-Coull: a sane variance when a stratum sees all or none
        half = Z * math.sqrt(float(np.dot(sizes ** 2, p * (1 - p) / (k + 4))))
        return value, max(0.0, value - half), min(total, value + half), len(tiles)

    def _evaluate(self, tiles: Rects, rng) -> np.ndarray:
        """The mask at one uniform point of each tile (in bounds)."""
        g = self.grid
        q0, q1 = tiles.i0 * g.bm, np.minimum((tiles.i0 + 1) * g.bm, g.q_len)
        k0, k1 = tiles.j0 * g.bn, np.minimum((tiles.j0 + 1) * g.bn, g.kv_len)
        m = q0 + (rng.random(len(tiles)) * (q1 - q0)).astype(np.int64)
        n = k0 + (rng.random(len(tiles)) * (k1 - k0)).astype(np.int64)
        out = []
        for s in range(0, len(tiles), CHUNK_POINTS):
            sl = slice(s, s + CHUNK_POINTS)
            v = self.points.at(g.group_b[tiles.g[sl]], g.group_h[tiles.g[sl]], torch.from_numpy(m[sl])[:, None],
                               ("t", "s"), torch.from_numpy(n[sl])[:, None], ("t", "s"))
            out.append(v[:, 0].numpy())
        return np.concatenate(out).astype(np.float64)


def _areas(grid: Grid, t: Rects) -> np.ndarray:
    h = np.minimum(t.i1 * grid.bm, grid.q_len) - t.i0 * grid.bm
    w = np.minimum(t.j1 * grid.bn, grid.kv_len) - t.j0 * grid.bn
    return (h * w).astype(np.float64)
