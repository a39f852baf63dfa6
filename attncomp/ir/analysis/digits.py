"""Grid masks analyzed per coordinate: the token index as digits of a mixed radix.

A video or image mask (VARIANTS.md group B) reads per-axis coordinates recovered from the
1-D token index with ``//`` and ``%``. In a tile-major layout (``variants.grids``) a
block of ``V = t*h*w`` tokens is one box of the grid, and the mask reads ``m // V`` (which
box) and ``m % V // (h*w)``, ``m % V // w % h``, ``m % V % w`` (where in it). Over one tile
these are independent digits of ``m % V``, so the tile is a *product* box in digit space;
interval reasoning on ``m`` itself cannot see that (64 consecutive tokens span every
column of the box), and without it every partial tile of a 3-D neighborhood would be
decided point by point. NATTEN reasons per axis for the same reason.

Here the mask is rewritten on digit variables, ``m = V * m_tile + sum(d_l * c_l)`` over
the cuts ``1 = c_0 < c_1 < ... < c_k = V`` that its divisors and moduli define (each
dividing the next), and undecided tiles are refined by subdividing digit boxes: a box is
split along its widest digit, so a per-axis term becomes exact as soon as its digit is
narrow, and a product mask is decided in a few levels. Boxes of single points are
evaluated exactly; it is the same answer as point by point, found by subdivision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import expr as E
from ..evaluate import Env, Value, align, evaluate
from ..rewrite import walk
from .intervals import Box, classify
from .tiles import Grid, PointEvaluator, Rects

MAX_BOXES = 1 << 21  # boxes per level; beyond it the caller's point refinement is cheaper


def _int(node: E.Expr) -> int | None:
    return int(node.arg) if node.op == "const" and node.dtype == E.INT else None


@dataclass(frozen=True)
class Digits:
    """``letter = top * tile + sum(d_l * cuts[l])`` with ``top = cuts[-1]``, digit ``l`` in
    ``[0, cuts[l+1] / cuts[l])`` and ``tile = letter // top`` unbounded."""

    letter: str
    cuts: tuple[int, ...]

    @property
    def top(self) -> int:
        return self.cuts[-1]

    @property
    def sizes(self) -> list[int]:
        return [b // a for a, b in zip(self.cuts[:-1], self.cuts[1:])]

    def combo(self, lo: int | None, hi: int | None) -> E.Expr | None:
        """``x // lo % (hi / lo)`` in digits (``x // lo`` with ``hi`` None); None unless both
        are cuts (then the identity is exact), so a pattern that does not align is left as
        it is and only its ``x`` rewritten."""
        if lo not in self.cuts or (hi is not None and (hi not in self.cuts or hi <= lo)):
            return None
        terms = []
        for l, (c, size) in enumerate(zip(self.cuts[:-1], self.sizes)):
            if c >= lo and (hi is None or c * size <= hi):
                terms.append((E.var(f"{self.letter}_d{l}"), c // lo))
        if hi is None:
            terms.append((E.var(f"{self.letter}_tile"), self.top // lo))
        out = E.const(0, "int64")
        for i, (v, scale) in enumerate(terms):
            term = v if scale == 1 else E.binary("mul", v, E.const(scale))
            out = term if i == 0 else E.binary("add", out, term)
        return out

    def match(self, node: E.Expr) -> E.Expr | None:
        """The digit form of ``node`` if it is one of this letter's coordinate patterns."""
        x, op, src = E.var(self.letter), node.op, node.src
        if node == x:
            return self.combo(1, None)
        if op == "floordiv" and src[0] == x:
            return self.combo(_int(src[1]), None)
        if op == "mod" and src[0] == x:
            return self.combo(1, _int(src[1]))
        if op == "mod" and src[0].op == "floordiv" and src[0].src[0] == x:
            a, b = _int(src[0].src[1]), _int(src[1])
            return self.combo(a, a * b) if a and b else None
        if op == "floordiv" and src[0].op == "mod" and src[0].src[0] == x:
            a, b = _int(src[1]), _int(src[0].src[1])
            return E.const(0, "int64") if a and b and 0 < b <= a else self.combo(a, b)
        if op == "mod" and src[0].op == "floordiv" and src[0].src[0].op == "mod" and src[0].src[0].src[0] == x:
            a, c, b = _int(src[0].src[1]), _int(src[1]), _int(src[0].src[0].src[1])
            return self.combo(a, a * c) if a and c and b and a * c <= b else None
        return None


def find(mask: E.Expr, letter: str, block: int) -> Digits | None:
    """The digit decomposition of ``letter`` in ``mask`` for tiles of ``block`` indices: the
    cuts its divisors and moduli define, each dividing the next, with ``block`` one of them
    or a multiple of the largest. None when there is nothing to decompose or it does not align."""
    x = E.var(letter)
    cuts: set[int | None] = {1}
    for n in walk(mask):
        if n.op in ("floordiv", "mod") and n.src[0] == x:  # x // a, x % b
            cuts.add(_int(n.src[1]))
        inner = n.src[0] if len(n.src) == 2 else None  # binary ops only
        if inner is not None and inner.op in ("floordiv", "mod") and inner.src[0] == x:
            a, c = _int(inner.src[1]), _int(n.src[1])
            if n.op == "mod" and inner.op == "floordiv" and a and c:  # x // a % c
                cuts.add(a * c)
            elif n.op == "floordiv" and inner.op == "mod" and c and a and c < a:  # x % b // c
                cuts.add(c)
        if n.op == "mod" and inner is not None and inner.op == "floordiv" and inner.src[0].op == "mod" \
                and inner.src[0].src[0] == x:  # x % b // a % c
            a, c, b = _int(inner.src[1]), _int(n.src[1]), _int(inner.src[0].src[1])
            if a and c and b and a * c <= b:
                cuts.add(a * c)
    if None in cuts or min(cuts) < 1 or len(cuts) == 1:
        return None
    if block < max(cuts):
        cuts.add(block)
    chain = sorted(cuts)
    if any(b % a for a, b in zip(chain[:-1], chain[1:])) or (block > chain[-1] and block % chain[-1]):
        return None
    return Digits(letter, tuple(chain))


def rewrite(mask: E.Expr, digits: list[Digits]) -> E.Expr:
    memo: dict[E.Expr, E.Expr] = {}

    def go(node: E.Expr) -> E.Expr:
        if node not in memo:
            found = next((r for d in digits if (r := d.match(node)) is not None), None)
            memo[node] = found if found is not None else \
                (E.rebuild(node, tuple(go(s) for s in node.src)) if node.src else node)
        return memo[node]
    return go(mask)


class DigitBoxes:
    """Per tile, the starting box in digit space (or the plain index range for a letter
    that does not decompose)."""

    def __init__(self, grid: Grid, tiles: Rects, digits: dict[str, Digits | None]):
        self.names: list[str] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        for letter, block, length, first in (("m", grid.bm, grid.q_len, tiles.i0), ("n", grid.bn, grid.kv_len, tiles.j0)):
            start, stop = first * block, np.minimum((first + 1) * block, length)  # [start, stop)
            d = digits[letter]
            if d is None:
                self._add(letter, start, stop - 1)
                continue
            top = d.top
            self._add(f"{letter}_tile", start // top, (stop - 1) // top)
            for l, (c, size) in enumerate(zip(d.cuts[:-1], d.sizes)):
                if c >= block:  # the tile lies inside one box of this digit: fixed
                    value = (start // c) % size
                    self._add(f"{letter}_d{l}", value, value)
                else:
                    self._add(f"{letter}_d{l}", np.zeros_like(start), np.full_like(start, size - 1))

    def _add(self, name, lo, hi):
        self.names.append(name)
        self.lo.append(np.asarray(lo, dtype=np.int64))
        self.hi.append(np.asarray(hi, dtype=np.int64))


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct row's first occurrence, each row's distinct-row number) of
    an int array ``[N, k]``: the columns ranked and packed into one int64 key where it fits
    (``np.unique(axis=0)`` sorts rows as bytes, 1.5 s for 100,000 rows of ten columns)."""
    key = np.zeros(len(rows), dtype=np.int64)
    span = 1
    for col in rows.T:
        values, code = np.unique(col, return_inverse=True)
        span *= len(values)
        if span >= 1 << 62:
            _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
            return first, inverse.reshape(-1)
        key = key * len(values) + code.reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def conjuncts(mask: E.Expr) -> list[E.Expr]:
    """The operands of the mask's top-level ``&``."""
    if mask.op == "and" and mask.dtype == E.BOOL:
        return conjuncts(mask.src[0]) + conjuncts(mask.src[1])
    return [mask]


def components(terms: list[E.Expr], names: list[str]) -> list[tuple[E.Expr, list[str]]]:
    """Conjuncts grouped by the variables they share (connected components): over a box,
    which is a product of variable ranges, the kept set of the mask is the product of the
    kept sets of its components, as NATTEN's per-axis windows are."""
    parent = {n: n for n in names}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    used = [[v.arg for v in walk(t) if v.op == "var" and v.arg in parent] for t in terms]
    for vs in used:
        for v in vs[1:]:
            parent[root(v)] = root(vs[0])
    groups: dict[str, list[int]] = {}
    for i, vs in enumerate(used):
        groups.setdefault(root(vs[0]) if vs else "", []).append(i)
    out = []
    for key, idx in groups.items():
        expr = terms[idx[0]]
        for i in idx[1:]:
            expr = E.binary("and", expr, terms[i])
        out.append((expr, sorted({v for i in idx for v in used[i]}) if key else []))
    return out


def grid_refine(points: PointEvaluator, grid: Grid, params: dict, load, tiles: Rects, count: bool,
                stats: dict | None):
    """:func:`.tiles.refine` for masks on grid coordinates: each tile's kept pairs are the
    product of its components' kept points, each counted by subdividing the few digits it
    reads. None where the mask does not decompose into at least two components (or the
    boxes would not stay few)."""
    digits = {letter: find(points.mask, letter, block) for letter, block in (("m", grid.bm), ("n", grid.bn))}
    if all(d is None for d in digits.values()) or not len(tiles):
        return None
    for letter, block, length in (("m", grid.bm, grid.q_len), ("n", grid.bn, grid.kv_len)):
        if digits[letter] is not None and length % min(block, digits[letter].top):
            return None  # a short last tile is not a product of digit ranges
    mask = rewrite(points.mask, [d for d in digits.values() if d is not None])
    boxes = DigitBoxes(grid, tiles, digits)
    sizes = dict(zip(boxes.names, (hi - lo + 1 for lo, hi in zip(boxes.lo, boxes.hi))))
    kept = np.ones(len(tiles), dtype=np.int64)
    # the kept set is a product: some pair is kept iff every component keeps a point, and
    # some pair is not iff some component misses one
    some_true, some_false = np.ones(len(tiles), dtype=bool), np.zeros(len(tiles), dtype=bool)
    evaluated = 0
    parts = components(conjuncts(mask), boxes.names)
    if sum(1 for _, names in parts if names) < 2:
        return None  # no product to exploit: sampling and point refinement serve better
    for expr, names in parts:
        c = _count(expr, names, boxes, points, grid, tiles, params, load, count)
        if c is None:
            return None
        evaluated += c[-1]
        if count:
            kept *= c[0]
        else:
            some_true &= c[0]
            some_false |= c[1]
        for n in names:
            sizes.pop(n)
    for size in sizes.values():  # digits no term reads
        kept *= size
    if stats is not None:
        stats.update(refined_tiles=len(tiles), refine_rectangles=evaluated, dense_boxes=0, grid_digits=True)
    return kept if count else (some_true, some_false)


def _count(expr: E.Expr, names: list[str], boxes: DigitBoxes, points: PointEvaluator, grid: Grid, tiles: Rects,
           params: dict, load, count: bool) -> tuple | None:
    """Per tile, the points of the box over ``names`` where ``expr`` holds, by subdivision
    (widest variable halved; single points the intervals leave open are evaluated); or,
    without ``count``, whether it holds somewhere and fails somewhere, stopping at both.
    The number of boxes evaluated comes last. Tiles whose boxes over ``names`` (and
    ``b``, ``h``) coincide are decided once: a component of a 3-D neighborhood reads one
    axis, whose tile coordinates take a few dozen values among 100,000 tiles."""
    index = {n: i for i, n in enumerate(boxes.names)}
    start = np.stack([grid.group_b[tiles.g], grid.group_h[tiles.g]] + [boxes.lo[index[n]] for n in names] +
                     [boxes.hi[index[n]] for n in names], axis=1)
    first, inverse = unique_rows(start)
    start, distinct = start[first], len(first)
    group_b, group_h = start[:, 0], start[:, 1]
    owner = np.arange(distinct)
    lo = [start[:, 2 + i] for i in range(len(names))]
    hi = [start[:, 2 + len(names) + i] for i in range(len(names))]
    kept = np.zeros(distinct, dtype=np.int64)
    some_true, some_false = np.zeros(distinct, dtype=bool), np.zeros(distinct, dtype=bool)
    evaluated = 0
    f64 = lambda a: a.astype(np.float64)
    while len(owner):
        if not count:
            keep = ~(some_true & some_false)[owner]
            owner, lo, hi = owner[keep], [x[keep] for x in lo], [y[keep] for y in hi]
            if not len(owner):
                break
        if len(owner) > MAX_BOXES:
            return None
        evaluated += len(owner)
        b, h = group_b[owner], group_h[owner]
        get = dict(zip(names, zip(lo, hi)))
        zero = np.zeros(len(owner))
        box = Box(f64(b), f64(h), *(f64(x) for x in get.get("m", (zero, zero))),
                  *(f64(x) for x in get.get("n", (zero, zero))),
                  extra={k: (f64(x), f64(y)) for k, (x, y) in get.items() if k not in ("m", "n")})
        tri = classify(expr, box, params, load)
        width = np.stack([y - x for x, y in zip(lo, hi)]) if names else np.zeros((1, len(owner)), np.int64)
        volume = np.prod(width + 1, axis=0)
        undecided = tri.t & tri.f
        at_point = undecided & (width == 0).all(axis=0)
        holds, fails = tri.t & ~tri.f, tri.f & ~tri.t
        if at_point.any():  # a point the intervals leave open: evaluate it exactly
            sel = np.flatnonzero(at_point)
            env_index = {"b": Value(torch.from_numpy(b[sel]), ("t",)), "h": Value(torch.from_numpy(h[sel]), ("t",))}
            env_index |= {n: Value(torch.from_numpy(x[sel]), ("t",)) for n, x in zip(names, lo)}
            env = Env(order=("t",), index=env_index, tensors=points.tensors, params=points.params,
                      variant=points.variant)
            v = align(evaluate(expr, env), ("t",)).to(torch.bool).expand(len(sel)).numpy()
            holds[sel], fails[sel] = v, ~v
            undecided &= ~at_point
        np.add.at(kept, owner[holds], volume[holds])
        some_true[owner[holds]] = True
        some_false[owner[fails]] = True
        sel = np.flatnonzero(undecided)
        axis = np.argmax(width[:, sel], axis=0)
        owner = np.concatenate([owner[sel], owner[sel]])
        new_lo, new_hi = [], []
        for v, (x, y) in enumerate(zip(lo, hi)):
            x, y = x[sel], y[sel]
            mid, split = (x + y) // 2, axis == v
            new_lo.append(np.concatenate([x, np.where(split, mid + 1, x)]))
            new_hi.append(np.concatenate([np.where(split, mid, y), y]))
        lo, hi = new_lo, new_hi
    if count:
        return kept[inverse], evaluated
    return some_true[inverse], some_false[inverse], evaluated
