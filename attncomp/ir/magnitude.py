"""Static bounds on |value| of integer expressions, for any sequence up to a length.

Two consumers need to know, before any length is given, whether integer arithmetic can
reach the edge of its dtype: the simplifier (rearranging ``(q - 5) - (kv - 5) >= 0`` into
``q >= kv`` is exact only when nothing wraps) and the Triton printer (an ``int64`` node
that provably fits ``int32`` is computed in ``int32``, which is faster and gives the same
value). The bound is an interval-free over-approximation: indices below ``index_max``,
loads within their dtype, constants as written.

>>> from attncomp.ir import expr as E
>>> m, n = E.var("m"), E.var("n")
>>> magnitude(E.binary("sub", m, n), 2 ** 31)  # indices below 2**31: |q - kv| < 2**32
4294967294
>>> fits(E.binary("mul", m, E.const(3000000)), 2 ** 31, "int32"), fits(E.binary("sub", m, n), 2 ** 30, "int32")
(False, True)
"""

from __future__ import annotations

import math

from . import dtypes as D
from . import expr as E
from .ops import Op
from .rewrite import walk

INF = math.inf
CAP = 2 ** 64  # past every integer dtype: bounds above it are inf (and stay small enough to multiply)


def _load(e: E.Expr, index_max: int, b: list) -> float:
    lo, hi = D.IRANGE.get(e.tdtype, (-INF, INF))
    return max(abs(lo), abs(hi))


def _floordiv(e, index_max, b):
    return max(b[0], 1) if e.dtype != E.FLOAT else INF


def _mod(e, index_max, b):
    d = e.src[1]
    return abs(d.arg) if d.op == Op.CONST and e.dtype == E.INT else b[1]


def _pow(e, index_max, b):
    if b[0] <= 1:
        return 1
    try:
        return b[0] ** b[1] if b[1] < 4096 else INF
    except OverflowError:
        return INF


def _lshift(e, index_max, b):
    return b[0] * 2 ** b[1] if b[1] < 4096 else INF


RULES = {
    Op.VAR: lambda e, index_max, b: INF if e.arg == "score" else index_max - 1,
    Op.CONST: lambda e, index_max, b: abs(e.arg),
    Op.PARAM: lambda e, index_max, b: INF if e.arg[1] is None else abs(e.arg[1]),
    Op.LOAD: _load,
    Op.ADD: lambda e, index_max, b: b[0] + b[1], Op.SUB: lambda e, index_max, b: b[0] + b[1],
    Op.MUL: lambda e, index_max, b: b[0] * b[1], Op.NEG: lambda e, index_max, b: b[0],
    Op.ABS: lambda e, index_max, b: b[0], Op.INVERT: lambda e, index_max, b: b[0] + 1,
    Op.FLOORDIV: _floordiv, Op.MOD: _mod, Op.POW: _pow, Op.LSHIFT: _lshift,
    Op.RSHIFT: lambda e, index_max, b: b[0],
    Op.MINIMUM: lambda e, index_max, b: max(b), Op.MAXIMUM: lambda e, index_max, b: max(b),
    Op.WHERE: lambda e, index_max, b: max(b[1], b[2]),
    Op.AND: lambda e, index_max, b: 2 * max(b), Op.OR: lambda e, index_max, b: 2 * max(b),
    Op.XOR: lambda e, index_max, b: 2 * max(b),
    Op.FLOOR: lambda e, index_max, b: b[0], Op.CEIL: lambda e, index_max, b: b[0],
    Op.RELU: lambda e, index_max, b: b[0],
}


def magnitudes(expr: E.Expr, index_max: int) -> dict[E.Expr, float]:
    """An upper bound on |value| of every node of ``expr`` (inf where unknown, 1 for bools)."""
    out: dict[E.Expr, float] = {}
    for node in walk(expr):
        if node.dtype == E.BOOL:
            out[node] = 1
            continue
        rule = RULES.get(node.op)
        bound = INF if rule is None else rule(node, index_max, [out[s] for s in node.src])
        out[node] = INF if bound != bound or bound > CAP else bound  # nan (inf * 0) is unknown
    return out


def magnitude(expr: E.Expr, index_max: int) -> float:
    return magnitudes(expr, index_max)[expr]


def fits(expr: E.Expr, index_max: int, dtype: str | None = None) -> bool:
    """Whether ``expr`` provably stays inside ``dtype`` (default: its own dtype)."""
    lo, hi = D.IRANGE[dtype or expr.tdtype]
    return magnitude(expr, index_max) <= min(-lo - 1, hi)


def no_wrap(expr: E.Expr, index_max: int) -> bool:
    """Whether no integer node of ``expr`` can wrap (nor come near 2**62, where integer
    rearrangements of it could), so integer algebra on it is exact."""
    bounds = magnitudes(expr, index_max)
    return all(bounds[n] <= min(D.IRANGE[n.tdtype][1], 2 ** 62) for n in bounds
               if n.dtype == E.INT and n.src and n.op != Op.LOAD)  # a leaf holds a value of its dtype


def leaves_int32(e: E.Expr, index_max: int) -> bool:
    """Whether torch computes node ``e`` in int64 where int32 would not do: its value may
    leave int32, or it meets a Python integer past int32 (a compiled kernel with int32
    indices would wrap, or refuse the literal).

    >>> from attncomp.ir import expr as E
    >>> m, n = E.var("m"), E.var("n")
    >>> leaves_int32(E.binary("mul", m, E.const(3000000)), 2 ** 30), leaves_int32(E.binary("ge", m, n), 2 ** 30)
    (True, False)
    >>> leaves_int32(E.binary("lt", m, E.const(2 ** 40)), 2 ** 30)
    True
    """
    if not e.src or e.op == Op.LOAD:  # a load reads its value; its indices are nodes of their own
        return False
    computed = D.infer(Op.ADD, (e.src[0].tdtype, e.src[1].tdtype)) if e.op in E.COMPARE else e.tdtype
    if computed != "int64":
        return False
    if any(s.op == Op.CONST and s.dtype == E.INT and not -2 ** 31 <= s.arg < 2 ** 31 for s in e.src):
        return True
    return e.op not in E.COMPARE and not fits(e, index_max, "int32")
