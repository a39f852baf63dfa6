"""Translations that leave a mask unchanged, so that tiles are copies of one another.

A mask ``f(b, h, m, n)`` is *invariant* under the shift ``(t_m, t_n)`` when
``f(b, h, m + t_m, n + t_n) == f(b, h, m, n)`` for every index. Causal and window masks
read ``m`` and ``n`` only through ``m - n`` (invariant under ``(t, t)``); ``(m + n) % 2``
is invariant under ``(2, 0)`` and ``(0, 2)``. A shift by whole tiles then maps a tile
onto one with the same class and the same number of kept pairs, which is what lets the
analysis count one tile per class (exact density at 16M tokens) and classify one period
of a periodic mask (all tiles partial at 1M tokens).

The proof is a small abstract interpretation: each integer node shifts by a known
amount ``d`` (``m`` by ``t_m``, ``n`` by ``t_n``; ``a + b`` by ``d_a + d_b``; ``a // c`` by
``d_a / c`` when ``c`` divides it, since ``(x + kc) // c == x // c + k`` under floor
division; ``a % c`` not at all when ``c`` divides ``d_a``), and a comparison of two
integers that shift alike does not change. Anything else is invariant only when all its
operands are. Shifts are proven only through int64 arithmetic on small constants, where
the indices of any analyzable problem cannot wrap; any other node is "unknown", which
only means fewer tiles are shared (never a wrong answer).
"""

from __future__ import annotations

from .. import expr as E

SAFE_CONST = 1 << 31  # |c| below this: c * index or index + c cannot reach int64's limits
MAX_PERIOD = 8  # tile periods tried along each direction


def shift(expr: E.Expr, tm: int, tn: int) -> int | None:
    """How much ``expr`` changes when ``m`` grows by ``tm`` and ``n`` by ``tn``: an integer
    (0 means unchanged, for any dtype), or None when that is not proven.

    >>> m, n = E.var("m"), E.var("n")
    >>> shift(E.binary("ge", m, n), 128, 128), shift(E.binary("ge", m, n), 128, 0)
    (0, None)
    >>> parity = E.binary("eq", E.binary("mod", E.binary("add", m, n), E.const(2)), E.const(0))
    >>> shift(parity, 128, 0), shift(parity, 1, 0)
    (0, None)
    """
    memo: dict[E.Expr, int | None] = {}

    def visit(node: E.Expr) -> int | None:
        if node not in memo:
            memo[node] = _rule(node, [visit(s) for s in node.src], tm, tn)
        return memo[node]

    return visit(expr)


def _int_const(node: E.Expr) -> int | None:
    if node.op == "const" and node.dtype == E.INT and abs(int(node.arg)) < SAFE_CONST:
        return int(node.arg)
    return None


def _rule(node: E.Expr, d: list[int | None], tm: int, tn: int) -> int | None:
    op = node.op
    if op == "var":
        return {"m": tm, "n": tn}.get(node.arg, 0)
    if op in ("const", "param"):
        return 0 if op == "param" or node.dtype != E.INT or _int_const(node) is not None else None
    if all(x == 0 for x in d):  # a function of unchanged operands is unchanged
        return 0
    if any(x is None for x in d):
        return None
    integer = node.tdtype == "int64" and all(s.dtype == E.INT for s in node.src)
    if op in ("lt", "le", "gt", "ge", "eq", "ne"):
        return 0 if all(s.dtype == E.INT for s in node.src) and d[0] == d[1] else None
    if op == "where":
        return d[1] if d[0] == 0 and d[1] == d[2] and node.dtype == E.INT else None
    if not integer:
        return None
    if op == "add":
        return d[0] + d[1]
    if op == "sub":
        return d[0] - d[1]
    if op == "neg":
        return -d[0]
    if op in ("minimum", "maximum"):
        return d[0] if d[0] == d[1] else None
    if op == "mul":
        c = [_int_const(s) for s in node.src]
        return c[0] * d[1] if c[0] is not None else c[1] * d[0] if c[1] is not None else None
    c = _int_const(node.src[1]) if len(node.src) == 2 else None
    if op == "floordiv" and c and d[1] == 0 and d[0] % c == 0:
        return d[0] // c
    if op == "mod" and c and d[1] == 0 and d[0] % c == 0:
        return 0
    return None


def tile_periods(mask: E.Expr, bm: int, bn: int) -> tuple[int | None, int | None, int | None]:
    """The smallest tile periods (up to MAX_PERIOD) along query blocks, key blocks and the
    diagonal: ``pi`` with the mask invariant under ``(pi * bm, 0)``, ``pj`` under
    ``(0, pj * bn)``, ``pd`` under ``(pd * bm, pd * bn)``; None where none is proven.

    >>> m, n = E.var("m"), E.var("n")
    >>> tile_periods(E.binary("ge", m, n), 64, 64)
    (None, None, 1)
    >>> tile_periods(E.binary("eq", E.binary("mod", n, E.const(256)), E.const(0)), 128, 128)
    (1, 2, 2)
    """
    def first(tm: int, tn: int) -> int | None:
        return next((p for p in range(1, MAX_PERIOD + 1) if shift(mask, p * tm, p * tn) == 0), None)

    return first(bm, 0), first(0, bn), first(bm, bn)
