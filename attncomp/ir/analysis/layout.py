"""``BlockLayout``: which (query block, key block) tiles are empty, partial or full.

Per (b, h) group and query-block row, the partial and the full key blocks are kept as
**runs** of consecutive key blocks (``Runs``: ``offsets`` int64 of length groups * rows + 1
into ``start``/``stop``), so memory grows with the runs of the pattern, not with its tiles:
causal attention over 16M tokens is one run of full tiles and one partial tile per row
(131,072 rows), where a tile list would hold 8.6 billion entries. Tile lists (``CSR``)
are materialized only where a consumer needs them (a FlexAttention BlockMask, a kernel
launch), by row chunk. Groups are ``batch x heads`` for masks that read ``b`` and ``h``; a
mask that does not read one broadcasts over it (size 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..picture import EMPTY, FULL, PARTIAL
from .density import Density, PartialTiles
from .tiles import Grid, Rects


@dataclass
class CSR:
    """Materialized tile lists: row ``r`` holds key blocks ``indices[offsets[r]:offsets[r + 1]]``."""

    offsets: np.ndarray  # int64 [rows + 1]
    indices: np.ndarray  # int32

    @staticmethod
    def build(rows: int, key: np.ndarray, start: np.ndarray, stop: np.ndarray) -> CSR:
        """Rows from segments: segment s puts blocks ``start[s] .. stop[s]-1`` in row ``key[s]``."""
        order = np.lexsort((start, key))
        key, start, stop = key[order], start[order], stop[order]
        counts = (stop - start).astype(np.int64)
        offsets = np.zeros(rows + 1, dtype=np.int64)
        offsets[1:] = np.bincount(key, weights=counts, minlength=rows)
        np.cumsum(offsets, out=offsets)
        total = int(offsets[-1])
        # indices rise by one inside a segment and jump between segments: write the jumps
        # into an array of ones and take its running sum (one pass over the output)
        keep = counts > 0
        start, stop, counts = start[keep], stop[keep], counts[keep]
        delta = np.ones(total, dtype=np.int32)
        if len(counts):
            first = np.cumsum(counts) - counts
            delta[first[1:]] = (start[1:] - stop[:-1] + 1).astype(np.int32)
            delta[0] = start[0]
        indices = np.cumsum(delta, dtype=np.int32)
        return CSR(offsets, indices)

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self) -> np.ndarray:
        """The row of every stored index."""
        return np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int64), self.counts())


@dataclass
class Runs:
    """Per row, the maximal runs ``[start, stop)`` of consecutive key blocks, ascending:
    row ``r``'s runs are ``offsets[r]:offsets[r + 1]``.

    >>> runs = Runs.build(2, np.array([0, 0, 1]), np.array([0, 2, 5]), np.array([2, 4, 6]))
    >>> runs.start.tolist(), runs.stop.tolist(), runs.counts().tolist()
    ([0, 5], [4, 6], [4, 1])
    >>> runs = Runs.build(2, np.array([0, 0, 1]), np.array([0, 3, 5]), np.array([2, 4, 6]))
    >>> runs.runs_per_row().tolist(), runs.csr().indices.tolist()
    ([2, 1], [0, 1, 3, 5])
    """

    offsets: np.ndarray  # int64 [rows + 1]
    start: np.ndarray  # int64 [runs]
    stop: np.ndarray  # int64 [runs]

    @staticmethod
    def build(rows: int, key: np.ndarray, start: np.ndarray, stop: np.ndarray) -> Runs:
        """Runs from disjoint segments: segment s covers blocks ``start[s] .. stop[s]-1`` of
        row ``key[s]``; segments that touch are merged."""
        keep = stop > start
        key, start, stop = key[keep].astype(np.int64), start[keep].astype(np.int64), stop[keep].astype(np.int64)
        order = np.lexsort((start, key))
        key, start, stop = key[order], start[order], stop[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = (key[1:] != key[:-1]) | (start[1:] != stop[:-1])
        last = np.ones(len(key), dtype=bool)
        last[:-1] = first[1:]
        key, start, stop = key[first], start[first], stop[last]
        offsets = np.zeros(rows + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(np.bincount(key, minlength=rows))
        return Runs(offsets, start, stop)

    @property
    def num_rows(self) -> int:
        return len(self.offsets) - 1

    def total(self) -> int:
        """Number of tiles over all rows."""
        return int((self.stop - self.start).sum())

    def runs_per_row(self) -> np.ndarray:
        return np.diff(self.offsets)

    def run_rows(self) -> np.ndarray:
        """The row of every run."""
        return np.repeat(np.arange(self.num_rows, dtype=np.int64), self.runs_per_row())

    def counts(self) -> np.ndarray:
        """Tiles per row."""
        cum = np.zeros(len(self.start) + 1, dtype=np.int64)
        np.cumsum(self.stop - self.start, out=cum[1:])
        return cum[self.offsets[1:]] - cum[self.offsets[:-1]]

    def csr(self, rows: slice = slice(None)) -> CSR:
        """The tile lists of a contiguous range of rows (all by default), materialized:
        memory grows with the tiles of those rows, so large layouts are walked by chunk."""
        r0, r1, _ = rows.indices(self.num_rows)
        lo, hi = self.offsets[r0], self.offsets[r1]
        return CSR.build(r1 - r0, self.run_rows()[lo:hi] - r0, self.start[lo:hi], self.stop[lo:hi])

    def row(self, r: int) -> np.ndarray:
        """The key blocks of row ``r``."""
        lo, hi = self.offsets[r], self.offsets[r + 1]
        return np.concatenate([np.arange(a, b) for a, b in zip(self.start[lo:hi], self.stop[lo:hi])] or
                              [np.zeros(0, np.int64)])


@dataclass
class BlockLayout:
    """The exact tile classification of a mask for one problem size.

    ``counts`` is ``{"empty", "partial", "full"}`` over all groups; ``density`` the area of
    visited tiles over the total area; ``mask_density`` the fraction of (q, kv) pairs the
    mask keeps (the FLOP-wise figure, computed on first use: exact when that is cheap,
    else estimated, with its 95% interval in ``density_ci``); ``partial``/``full`` the
    per-row runs of key blocks; ``shape`` the (batch, heads) of the groups (1 where
    broadcast).
    """

    q_len: int
    kv_len: int
    block: tuple[int, int]
    shape: tuple[int, int]
    partial: Runs
    full: Runs
    analysis_time_s: float = 0.0
    name: str = "mask"
    stats: dict = field(default_factory=dict)  # levels, rectangles classified, tiles sampled / dense
    # the partial tiles and what counts their kept pairs (None: there are none)
    partials: PartialTiles | None = field(default=None, repr=False)
    # the mask as a torch function of (b, h, q_idx, kv_idx), interpreting the IR: the
    # default mask_mod of a BlockMask built from this layout
    mask_mod: Callable | None = field(default=None, repr=False)
    # None: the mask alone, exact. With a data-dependent selection stage: "structural" (exact
    # where the data cannot matter, partial wherever some choice could reach) or "data"
    # (exact for the query and key inputs it was computed from)
    selection: str | None = None
    _density: Density | None = field(default=None, repr=False)
    _touched: np.ndarray | None = field(default=None, repr=False)

    # --- geometry --------------------------------------------------------------------------
    @property
    def groups(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def num_q_blocks(self) -> int:
        return -(-self.q_len // self.block[0])

    @property
    def num_kv_blocks(self) -> int:
        return -(-self.kv_len // self.block[1])

    def _heights(self) -> np.ndarray:
        bm = self.block[0]
        return np.minimum(self.q_len - np.arange(self.num_q_blocks) * bm, bm)

    def _widths(self) -> np.ndarray:
        bn = self.block[1]
        return np.minimum(self.kv_len - np.arange(self.num_kv_blocks) * bn, bn)

    # --- summaries ---------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, int]:
        p, f = self.partial.total(), self.full.total()
        return {"empty": self.groups * self.num_q_blocks * self.num_kv_blocks - p - f, "partial": p, "full": f}

    def _area(self, runs: Runs) -> int:
        """In-bounds area of the tiles in ``runs``: whole blocks, less what the last key
        block lacks when ``kv_len`` is not a multiple of the block."""
        bn = self.block[1]
        heights = np.tile(self._heights(), self.groups).astype(np.int64)
        area = int(np.dot(runs.counts(), heights)) * bn
        short = bn - int(self._widths()[-1])
        if short:
            ends = runs.run_rows()[runs.stop == self.num_kv_blocks]
            area -= short * int(heights[ends].sum())
        return area

    @property
    def density(self) -> float:
        """Visited (partial + full) tile area over the whole ``q_len x kv_len`` area."""
        return (self._area(self.partial) + self._area(self.full)) / (self.groups * self.q_len * self.kv_len)

    @property
    def mask_density(self) -> float:
        """Fraction of (q, kv) pairs the mask keeps, counted on first use: exact when the
        distinct partial tiles are few enough to count, else a sampled estimate (see
        ``density_ci`` and ``mask_density_exact``)."""
        return self.kept().value

    @property
    def density_ci(self) -> tuple[float, float]:
        """The 95% interval of ``mask_density`` (both ends equal it when it is exact)."""
        d = self.kept()
        return d.low, d.high

    @property
    def mask_density_exact(self) -> bool:
        """Whether ``mask_density`` is exact rather than estimated from samples."""
        return self.kept().exact

    def mask_density_text(self, percent: bool = False) -> str:
        """The mask density as text, labelled when it is an estimate.

        >>> import attncomp as ac
        >>> ac.analyze(ac.variants.causal(), 1024, block=128).mask_density_text(percent=True)
        '50.05%'
        """
        d = self.kept()
        show = (lambda x: f"{100 * x:.2f}%") if percent else (lambda x: f"{x:.4f}")
        if d.bound:
            return f"{show(d.low)} to {show(d.high)} (the data-dependent selection decides)"
        if d.exact:
            return show(d.value)
        half = (d.high - d.low) / 2 * (100 if percent else 1)
        return (f"{show(d.value)} (estimated from {d.sampled_points:,} sampled pairs; 95% interval "
                f"+-{half:.2g}{'%' if percent else ''})")

    def kept(self) -> Density:
        """The mask density with its interval and how it was obtained (computed once)."""
        if self._density is None:
            full = self._area(self.full)
            value, low, high, sampled = self.partials.kept() if self.partials else (0.0, 0.0, 0.0, 0)
            total = self.groups * self.q_len * self.kv_len
            self._density = Density((full + value) / total, (full + low) / total, (full + high) / total, sampled)
        return self._density

    def full_runs(self) -> np.ndarray:
        """Per (b, h, q block), how many runs of consecutive full key blocks the row has
        (``[batch, heads, q_blocks]`` of the groups): what a chunked linear kernel loads a
        prefix state pair for."""
        return self.full.runs_per_row().reshape(self.shape + (self.num_q_blocks,))

    def kv_blocks_touched(self) -> np.ndarray:
        """Per group, how many distinct key blocks at least one visited tile reads: the K/V a
        kernel must load at least once (``[groups]``; FlashDecoding's floor). Computed once."""
        if self._touched is None:
            self._touched = self._kv_blocks_touched()
        return self._touched

    def _kv_blocks_touched(self) -> np.ndarray:
        # per group, +1 where a run starts and -1 where it stops: a key block is touched
        # where the running sum is positive (memory grows with key blocks, not tiles)
        nk = self.num_kv_blocks
        cover = np.zeros(self.groups * (nk + 1), dtype=np.int64)
        for runs in (self.partial, self.full):
            base = runs.run_rows() // self.num_q_blocks * (nk + 1)
            np.add.at(cover, base + runs.start, 1)
            np.add.at(cover, base + runs.stop, -1)
        depth = np.cumsum(cover.reshape(self.groups, nk + 1), axis=1)[:, :nk]
        return (depth > 0).sum(axis=1)

    @property
    def tile_bound(self) -> float:
        """Total tiles over visited tiles: the speedup bound of a perfect block-sparse kernel."""
        c = self.counts
        visited = c["partial"] + c["full"]
        return math.inf if visited == 0 else (visited + c["empty"]) / visited

    def row_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Per (b, h, q block): number of partial and of full key blocks, shaped
        ``[batch, heads, q_blocks]`` — the work of each CTA, for scheduling."""
        shape = self.shape + (self.num_q_blocks,)
        return self.partial.counts().reshape(shape), self.full.counts().reshape(shape)

    def tiles(self, kind: str, b: int = 0, h: int = 0) -> list[tuple[int, int]]:
        """(q block, kv block) pairs of one kind (``"partial"`` or ``"full"``) in one group."""
        runs = getattr(self, kind)
        g = (b % self.shape[0]) * self.shape[1] + (h % self.shape[1])
        return [(row, int(j)) for row in range(self.num_q_blocks) for j in runs.row(g * self.num_q_blocks + row)]

    # --- pictures ---------------------------------------------------------------------------
    def class_grid(self, b: int = 0, h: int = 0, max_cells: int | None = None) -> np.ndarray:
        """Tile classes of one group as a 2-D array (0 empty, 1 partial, 2 full); with
        ``max_cells``, cells of several tiles: 2 if all full, 0 if all empty, else 1."""
        nq, nk = self.num_q_blocks, self.num_kv_blocks
        ci = 1 if not max_cells else -(-nq // max_cells)
        cj = 1 if not max_cells else -(-nk // max_cells)
        rows_out = -(-nq // ci)
        g = (b % self.shape[0]) * self.shape[1] + (h % self.shape[1])
        sums = []
        for runs in (self.partial, self.full):
            lo, hi = runs.offsets[g * nq], runs.offsets[(g + 1) * nq]
            cell_row = (runs.run_rows()[lo:hi] - g * nq) // ci
            # tiles per (cell row, key block) from run boundaries, then summed per cell column
            cover = np.zeros((rows_out, nk + 1), dtype=np.int64)
            np.add.at(cover, (cell_row, runs.start[lo:hi]), 1)
            np.add.at(cover, (cell_row, runs.stop[lo:hi]), -1)
            per_block = np.cumsum(cover, axis=1)[:, :nk]
            sums.append(np.add.reduceat(per_block, np.arange(0, nk, cj), axis=1))
        size = np.outer(np.bincount(np.arange(nq) // ci), np.bincount(np.arange(nk) // cj))
        partial, full = sums
        return np.where(full == size, 2, np.where(partial + full == 0, 0, 1)).astype(np.int8)

    def show(self, b: int = 0, h: int = 0, max_cells: int = 64) -> str:
        """Text picture: █ full, ▒ partial (or a mix, when a cell holds several tiles), · empty."""
        chars = np.array([EMPTY, PARTIAL, FULL])
        grid = self.class_grid(b, h, max_cells)
        return "\n".join("".join(chars[row]) for row in grid)

    def save_png(self, path: str, b: int = 0, h: int = 0, max_pixels: int = 1024, scale: int | None = None) -> str:
        """Write the tile picture as a PNG (empty white, partial amber, full blue)."""
        from ..picture import write_png

        grid = self.class_grid(b, h, max_pixels)
        colours = np.array([[255, 255, 255], [244, 170, 40], [40, 90, 200]], dtype=np.uint8)
        scale = scale or max(1, 512 // max(grid.shape))
        image = np.repeat(np.repeat(colours[grid], scale, axis=0), scale, axis=1)
        write_png(path, image)
        return path

    def summary(self) -> dict:
        c = self.counts
        return {"name": self.name, "q_len": self.q_len, "kv_len": self.kv_len, "block": list(self.block),
                "groups": list(self.shape), "counts": c, "density": self.density,
                "mask_density": self.mask_density, "mask_density_ci": list(self.density_ci),
                "mask_density_exact": self.mask_density_exact, "tile_bound": self.tile_bound,
                "analysis_time_s": self.analysis_time_s}


def from_tiles(grid: Grid, full_rects: Rects, full_tiles: Rects, partial_tiles: Rects, shape, **kwargs) -> BlockLayout:
    """Assemble the per-row runs from proven-full rectangles and classified single tiles."""
    nq = grid.nq
    rows = len(grid.group_b) * nq
    heights = full_rects.i1 - full_rects.i0
    total = int(heights.sum())
    first = np.cumsum(heights) - heights
    seg_row = np.repeat(full_rects.g * nq + full_rects.i0 - first, heights) + np.arange(total)
    key = np.concatenate([seg_row, full_tiles.g * nq + full_tiles.i0])
    start = np.concatenate([np.repeat(full_rects.j0, heights), full_tiles.j0])
    stop = np.concatenate([np.repeat(full_rects.j1, heights), full_tiles.j1])
    full = Runs.build(rows, key, start, stop)
    partial = Runs.build(rows, partial_tiles.g * nq + partial_tiles.i0, partial_tiles.j0, partial_tiles.j1)
    return BlockLayout(grid.q_len, grid.kv_len, (grid.bm, grid.bn), shape, partial, full, **kwargs)
