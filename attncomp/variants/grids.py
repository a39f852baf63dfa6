"""Masks on multi-dimensional token grids (VARIANTS.md group B): images and video.

Tokens of a ``(T, H, W)``-style grid are laid out in 1-D either row-major or tile-major
(``tile=(th, tw)``: tokens of one tile are contiguous, tiles in row-major order). The
layout is part of the spec because it decides which 128-token blocks are boxes of the
grid, and so which attention tiles are full. Masks are written on coordinates recovered
from the 1-D index with ``//`` and ``%``.

Neighborhood attention follows NATTEN's definition (Hassani et al., 2023; generalized
NA, Hassani et al., 2025): along an axis of length ``n`` with window ``k``, dilation
``d`` and stride ``s``, token ``i`` belongs to dilation group ``i % d`` of size
``n_g = ceil((n - i % d) / d)`` and has position ``i' = i // d`` in it; its stride-group
leader is ``c = min((i' // s) * s + s // 2, n_g - 1)``; it attends the keys ``j`` of its
dilation group with ``start <= j // d < start + k``, ``start = clamp(c - k // 2, 0, n_g - k)``.
``s = 1`` is neighborhood attention, ``s = k`` blocked attention.
"""

from __future__ import annotations

import math

import torch

from ..errors import AttncompError
from ..ir import attention
from .registry import register


def _per_axis(value, ndim: int, what: str) -> tuple[int, ...]:
    out = tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim
    if len(out) != ndim or not all(isinstance(v, int) and v >= 1 for v in out):
        raise AttncompError(f"{what} must be a positive int or {ndim} positive ints, got {value!r}")
    return out


def check_layout(shape, tile) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    shape = _per_axis(shape, len(shape) if isinstance(shape, (tuple, list)) else 1, "shape")
    if tile is None:
        return shape, None
    tile = _per_axis(tile, len(shape), "tile")
    bad = [(n, t) for n, t in zip(shape, tile) if n % t]
    if bad:
        raise AttncompError(f"tile {tile} does not divide the grid {shape} (axis length {bad[0][0]}, tile {bad[0][1]})")
    return shape, tile


def _row_major(idx, sizes):
    """Coordinates of a row-major flat index over ``sizes`` (last axis fastest)."""
    coords, stride = [], math.prod(sizes)
    for axis, n in enumerate(sizes):
        stride //= n
        c = idx // stride if stride > 1 else idx
        coords.append(c % n if axis > 0 else c)
    return coords


def coordinates(idx, shape, tile=None):
    """Grid coordinates of 1-D token index ``idx`` (a traced index) under the layout."""
    if tile is None:
        return _row_major(idx, shape)
    volume = math.prod(tile)
    tile_coords = _row_major(idx // volume, tuple(n // t for n, t in zip(shape, tile)))
    in_tile = _row_major(idx % volume, tile)
    return [tc * t + ic for tc, t, ic in zip(tile_coords, tile, in_tile)]


def _na_axis(i, j, n: int, k: int, d: int, s: int):
    """NATTEN's window membership of key coordinate j for query coordinate i on one axis."""
    same_group = None
    n_g = n
    if d > 1:
        same_group = i % d == j % d
        n_g = (n - 1 - i % d) // d + 1  # size of i's dilation group
        i, j = i // d, j // d
    leader = i if s == 1 else torch.clamp((i // s) * s + s // 2, max=n_g - 1)
    start = torch.clamp(leader - k // 2, 0, n_g - k)
    inside = (start <= j) & (j < start + k)
    return inside if same_group is None else same_group & inside


def _all(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out


def _tokens(kwargs) -> int:
    return math.prod(kwargs["shape"])


def _layout_suffix(tile) -> str:
    return "" if tile is None else "_tiled"


@register("neighborhood_1d", "B1", "1-D neighborhood attention (NATTEN)", length=_tokens,
          defaults={"shape": (128,), "window": 15})
@register("neighborhood_2d", "B1", "2-D neighborhood attention on an image grid (NATTEN)", length=_tokens,
          defaults={"shape": (12, 12), "window": 5})
@register("neighborhood_2d_tiled", "B1", "2-D neighborhood attention, tile-major token layout", length=_tokens,
          defaults={"shape": (16, 16), "window": 5, "tile": (4, 4)})
@register("neighborhood_3d", "B1", "3-D neighborhood attention on a video grid (NATTEN)", length=_tokens,
          defaults={"shape": (4, 6, 6), "window": 3})
@register("neighborhood_3d_tiled", "B1", "3-D neighborhood attention, tile-major token layout", length=_tokens,
          defaults={"shape": (4, 8, 8), "window": (3, 5, 5), "tile": (2, 4, 4)})
@register("dilated_neighborhood_1d", "B2", "1-D dilated neighborhood attention (DiNA)", length=_tokens,
          defaults={"shape": (120,), "window": 7, "dilation": 4})
@register("dilated_neighborhood_2d", "B2", "2-D dilated neighborhood attention (DiNA)", length=_tokens,
          defaults={"shape": (13, 12), "window": 3, "dilation": 2})
@register("dilated_neighborhood_3d", "B2", "3-D dilated neighborhood attention (DiNA)", length=_tokens,
          defaults={"shape": (4, 8, 8), "window": 3, "dilation": (1, 2, 2), "tile": (2, 4, 4)})
@register("strided_neighborhood_1d", "B3", "1-D strided neighborhood attention (GNA)", length=_tokens,
          defaults={"shape": (130,), "window": 16, "stride": 4})
@register("strided_neighborhood_2d", "B3", "2-D strided neighborhood attention (GNA)", length=_tokens,
          defaults={"shape": (12, 12), "window": 5, "stride": 2})
@register("blocked_neighborhood_2d", "B3", "2-D blocked attention: strided NA with stride = window (GNA)",
          length=_tokens, defaults={"shape": (16, 16), "window": 4, "stride": 4, "tile": (4, 4)})
@register("strided_neighborhood_3d", "B3", "3-D strided neighborhood attention (GNA)", length=_tokens,
          defaults={"shape": (4, 6, 6), "window": (3, 3, 3), "stride": (1, 2, 2)})
def neighborhood(shape=(64, 64), window=7, dilation=1, stride=1, tile=None):
    """Neighborhood attention on a grid, per axis window/dilation/stride (NATTEN, GNA)."""
    shape, tile = check_layout(shape, tile)
    nd = len(shape)
    k, d, s = (_per_axis(v, nd, what) for v, what in ((window, "window"), (dilation, "dilation"), (stride, "stride")))
    for axis in range(nd):
        if shape[axis] // d[axis] < k[axis]:
            raise AttncompError(f"neighborhood: axis {axis} has {shape[axis]} tokens; with dilation {d[axis]} "
                                f"its smallest group has {shape[axis] // d[axis]} < window {k[axis]}")
        if s[axis] > k[axis]:
            raise AttncompError(f"neighborhood: stride {s[axis]} exceeds window {k[axis]} on axis {axis}")

    def neighborhood(b, h, q_idx, kv_idx):
        qc, kc = coordinates(q_idx, shape, tile), coordinates(kv_idx, shape, tile)
        return _all([_na_axis(qc[a], kc[a], shape[a], k[a], d[a], s[a]) for a in range(nd)])

    kind = "blocked" if all(x == y > 1 for x, y in zip(s, k)) else "strided" if max(s) > 1 else \
        "dilated" if max(d) > 1 else ""
    name = f"{kind + '_' if kind else ''}neighborhood_{nd}d{_layout_suffix(tile)}"
    return attention(mask=neighborhood, name=name)


@register("swin", "B5", "Swin shifted windows: same (x + shift) // P window on every axis", length=_tokens,
          defaults={"shape": (12, 12), "window": 4, "shift": 2})
@register("maxvit_block", "B5", "MaxViT block attention: non-overlapping P x P windows", length=_tokens,
          defaults={"shape": (12, 12), "window": 4, "tile": (4, 4)})
def window_attention(shape=(56, 56), window=7, shift=0, tile=None):
    """Windowed attention (Swin, MaxViT block): tokens attend within the same window;
    ``shift`` offsets the windows (Swin's shifted windows, with partial windows at edges)."""
    shape, tile = check_layout(shape, tile)
    P = _per_axis(window, len(shape), "window")
    sh = _per_axis(shift, len(shape), "shift") if shift else (0,) * len(shape)

    def window_attention(b, h, q_idx, kv_idx):
        qc, kc = coordinates(q_idx, shape, tile), coordinates(kv_idx, shape, tile)
        return _all([(qc[a] + sh[a]) // P[a] == (kc[a] + sh[a]) // P[a] for a in range(len(shape))])
    return attention(mask=window_attention, name=("swin" if shift else "window_attention") + _layout_suffix(tile))


@register("maxvit_grid", "B5", "MaxViT grid attention: tokens at the same offset in a G x G grid", length=_tokens,
          defaults={"shape": (12, 12), "grid": 3})
def grid_attention(shape=(56, 56), grid=7, tile=None):
    """MaxViT grid attention: along each axis of length n, tokens with equal ``x % (n / G)``
    attend each other (a sparse, dilated global mixing)."""
    shape, tile = check_layout(shape, tile)
    G = _per_axis(grid, len(shape), "grid")
    if any(n % g for n, g in zip(shape, G)):
        raise AttncompError(f"grid_attention: grid {G} does not divide the shape {shape}")
    period = [n // g for n, g in zip(shape, G)]

    def grid_attention(b, h, q_idx, kv_idx):
        qc, kc = coordinates(q_idx, shape, tile), coordinates(kv_idx, shape, tile)
        return _all([qc[a] % period[a] == kc[a] % period[a] for a in range(len(shape))])
    return attention(mask=grid_attention, name="maxvit_grid" + _layout_suffix(tile))
