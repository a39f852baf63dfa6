"""``BlockLayout``: which (query block, key block) tiles are empty, partial or full.

Per (b, h) group and query-block row, the partial and the full key blocks are kept as
compressed sparse rows (``offsets`` int64 of length groups * rows + 1, ``indices``
int32, ascending within a row). Groups are ``batch x heads`` for masks that read ``b``
and ``h``; a mask that does not read one broadcasts over it (size 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..picture import EMPTY, FULL, PARTIAL
from .tiles import Grid, Rects


@dataclass
class CSR:
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
class BlockLayout:
    """The exact tile classification of a mask for one problem size.

    ``counts`` is ``{"empty", "partial", "full"}`` over all groups; ``density`` the area of
    visited tiles over the total area; ``mask_density`` the fraction of (q, kv) pairs the
    mask keeps (the FLOP-wise figure, computed on first use); ``partial``/``full`` the
    per-row block lists; ``shape`` the (batch, heads) of the groups (1 where broadcast).
    """

    q_len: int
    kv_len: int
    block: tuple[int, int]
    shape: tuple[int, int]
    partial: CSR
    full: CSR
    analysis_time_s: float = 0.0
    name: str = "mask"
    stats: dict = field(default_factory=dict)  # levels, rectangles classified, tiles sampled / dense
    _count_partial: Callable[[BlockLayout], int] | None = field(default=None, repr=False)
    # the mask as a torch function of (b, h, q_idx, kv_idx), interpreting the IR: the
    # default mask_mod of a BlockMask built from this layout
    mask_mod: Callable | None = field(default=None, repr=False)
    _mask_density: float | None = field(default=None, repr=False)
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
        p, f = len(self.partial.indices), len(self.full.indices)
        return {"empty": self.groups * self.num_q_blocks * self.num_kv_blocks - p - f, "partial": p, "full": f}

    def _area(self, csr: CSR) -> int:
        """In-bounds area of the tiles in ``csr``: whole blocks, less what the last key
        block lacks when ``kv_len`` is not a multiple of the block."""
        bn = self.block[1]
        heights = np.tile(self._heights(), self.groups).astype(np.int64)
        area = int(np.dot(csr.counts(), heights)) * bn
        short = bn - int(self._widths()[-1])
        if short:
            pos = np.flatnonzero(csr.indices == self.num_kv_blocks - 1)
            area -= short * int(heights[np.searchsorted(csr.offsets, pos, side="right") - 1].sum())
        return area

    @property
    def density(self) -> float:
        """Visited (partial + full) tile area over the whole ``q_len x kv_len`` area."""
        return (self._area(self.partial) + self._area(self.full)) / (self.groups * self.q_len * self.kv_len)

    @property
    def mask_density(self) -> float:
        """Fraction of (q, kv) pairs the mask keeps: exact (partial tiles are counted point
        by point on first use)."""
        if self._mask_density is None:
            kept = self._area(self.full) + (self._count_partial(self) if self._count_partial else 0)
            self._mask_density = kept / (self.groups * self.q_len * self.kv_len)
        return self._mask_density

    def full_runs(self) -> np.ndarray:
        """Per (b, h, q block), how many runs of consecutive full key blocks the row has
        (``[batch, heads, q_blocks]`` of the groups): what a chunked linear kernel loads a
        prefix state pair for."""
        rows, idx = self.full.rows(), self.full.indices.astype(np.int64)
        starts = np.ones(len(idx), dtype=bool)
        starts[1:] = (np.diff(idx) != 1) | (np.diff(rows) != 0)
        runs = np.bincount(rows[starts], minlength=self.groups * self.num_q_blocks)
        return runs.reshape(self.shape + (self.num_q_blocks,))

    def kv_blocks_touched(self) -> np.ndarray:
        """Per group, how many distinct key blocks at least one visited tile reads: the K/V a
        kernel must load at least once (``[groups]``; FlashDecoding's floor). Computed once."""
        if self._touched is None:
            self._touched = self._kv_blocks_touched()
        return self._touched

    def _kv_blocks_touched(self) -> np.ndarray:
        rows = self.num_q_blocks
        touched = np.zeros(self.groups * self.num_kv_blocks, dtype=bool)
        for csr in (self.partial, self.full):
            touched[csr.rows() // rows * self.num_kv_blocks + csr.indices] = True
        return touched.reshape(self.groups, self.num_kv_blocks).sum(axis=1)

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
        csr = getattr(self, kind)
        g = (b % self.shape[0]) * self.shape[1] + (h % self.shape[1])
        out = []
        for row in range(self.num_q_blocks):
            r = g * self.num_q_blocks + row
            out += [(row, int(j)) for j in csr.indices[csr.offsets[r]:csr.offsets[r + 1]]]
        return out

    # --- pictures ---------------------------------------------------------------------------
    def class_grid(self, b: int = 0, h: int = 0, max_cells: int | None = None) -> np.ndarray:
        """Tile classes of one group as a 2-D array (0 empty, 1 partial, 2 full); with
        ``max_cells``, cells of several tiles: 2 if all full, 0 if all empty, else 1."""
        nq, nk = self.num_q_blocks, self.num_kv_blocks
        ci = 1 if not max_cells else -(-nq // max_cells)
        cj = 1 if not max_cells else -(-nk // max_cells)
        rows_out, cols_out = -(-nq // ci), -(-nk // cj)
        g = (b % self.shape[0]) * self.shape[1] + (h % self.shape[1])
        sums = []
        for csr in (self.partial, self.full):
            lo, hi = csr.offsets[g * nq], csr.offsets[(g + 1) * nq]
            rows = csr.rows()[lo:hi] - g * nq
            cells = (rows // ci) * cols_out + csr.indices[lo:hi] // cj
            sums.append(np.bincount(cells, minlength=rows_out * cols_out).reshape(rows_out, cols_out))
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
                "mask_density": self.mask_density, "tile_bound": self.tile_bound,
                "analysis_time_s": self.analysis_time_s}


def from_tiles(grid: Grid, full_rects: Rects, full_tiles: Rects, partial_tiles: Rects, shape, **kwargs) -> BlockLayout:
    """Assemble the CSR rows from proven-full rectangles and classified single tiles."""
    nq = grid.nq
    rows = len(grid.group_b) * nq
    heights = full_rects.i1 - full_rects.i0
    total = int(heights.sum())
    first = np.cumsum(heights) - heights
    seg_row = np.repeat(full_rects.g * nq + full_rects.i0 - first, heights) + np.arange(total)
    key = np.concatenate([seg_row, full_tiles.g * nq + full_tiles.i0])
    start = np.concatenate([np.repeat(full_rects.j0, heights), full_tiles.j0])
    stop = np.concatenate([np.repeat(full_rects.j1, heights), full_tiles.j1])
    full = CSR.build(rows, key, start, stop)
    partial = CSR.build(rows, partial_tiles.g * nq + partial_tiles.i0, partial_tiles.j0, partial_tiles.j1)
    return BlockLayout(grid.q_len, grid.kv_len, (grid.bm, grid.bn), shape, partial, full, **kwargs)
