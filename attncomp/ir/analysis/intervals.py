"""Three-valued interval/affine evaluation of masks over many rectangles at once.

Each rectangle fixes ``b`` and ``h`` and gives ranges ``m in [mlo, mhi]``,
``n in [nlo, nhi]``. An integer or float subexpression is bounded by an affine form
``cm*m + cn*n + r`` with ``r in [lo, hi]``; keeping the coefficients of ``m`` and ``n``
exact lets ``(m - n) - (m - 100)`` cancel to ``100 - n`` instead of widening, the
weakness of plain interval arithmetic (Moore's dependency problem). A boolean
subexpression is a pair (can be true, can be false): true and not false means the mask
holds on the whole rectangle, false and not true means it holds nowhere, both means
undecided. Everything is sound (never claims more than holds); undecided rectangles are
refined by the caller. Arrays are float64 (exact for integers below 2**53), one entry per
rectangle, with +-inf for unbounded.

Bounds hold under torch's semantics (``fit``): an integer node whose range may leave its
dtype (int64 wraps, int32 loads wrap) or 2**52 (where float64 bounds stop being exact) is
unknown; a float node is widened by its dtype's rounding error (each operation rounds,
and mixed int/float operands are converted with rounding) and is unknown when it may
overflow or when an operand is unbounded (``inf - inf`` is NaN); where all its operands
are single values it is exactly what torch computes from them. Float ``%`` and ``//``
have their own rules. A rectangle is full or empty only when that holds for the values
torch computes; everything else is left to the exact point evaluation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import dtypes as D
from .. import expr as E
from ..ops import Op

INF = np.inf


@dataclass
class Aff:
    """``cm*m + cn*n + r`` with ``r`` in ``[lo, hi]`` (per-rectangle arrays)."""

    cm: np.ndarray
    cn: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


@dataclass
class Tri:
    """A boolean over a rectangle: whether it can be true, whether it can be false."""

    t: np.ndarray
    f: np.ndarray


@dataclass
class Box:
    """The rectangles: b, h (points) and the m, n ranges, each an array of length R."""

    b: np.ndarray
    h: np.ndarray
    mlo: np.ndarray
    mhi: np.ndarray
    nlo: np.ndarray
    nhi: np.ndarray
    # ranges of further integer variables (the digits of a grid layout, see .digits)
    extra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _nan0(x):
    """0 * inf is nan; as a bound of a product with an exact zero it is 0."""
    x = np.asarray(x, dtype=np.float64)
    bad = np.isnan(x)
    if bad.any():
        x = np.where(bad, 0.0, x)
    return x


def total(a: Aff, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Exact range of the affine part over the rectangle plus the remainder interval
    (coefficients and index ranges are finite, so no 0 * inf arises here)."""
    m1, m2 = a.cm * box.mlo, a.cm * box.mhi
    n1, n2 = a.cn * box.nlo, a.cn * box.nhi
    return a.lo + np.minimum(m1, m2) + np.minimum(n1, n2), a.hi + np.maximum(m1, m2) + np.maximum(n1, n2)


def interval(lo, hi, like) -> Aff:
    zero = np.zeros_like(like, dtype=np.float64)
    return Aff(zero, zero, np.asarray(lo, dtype=np.float64) + zero, np.asarray(hi, dtype=np.float64) + zero)


def _corners(fn, alo, ahi, blo, bhi):
    with np.errstate(all="ignore"):
        vals = [_nan0(fn(x, y)) for x in (alo, ahi) for y in (blo, bhi)]
    return np.minimum.reduce(vals), np.maximum.reduce(vals)


def _floordiv(alo, ahi, dlo, dhi):
    safe = (dlo > 0) | (dhi < 0)
    lo, hi = _corners(lambda x, y: np.floor(x / y), alo, ahi, np.where(safe, dlo, 1), np.where(safe, dhi, 1))
    return np.where(safe, lo, -INF), np.where(safe, hi, INF)


def _mod(alo, ahi, dlo, dhi):
    point = (dlo == dhi) & np.isfinite(dlo) & (dlo != 0)
    d = np.where(point, dlo, 1.0)
    finite = np.isfinite(alo) & np.isfinite(ahi)
    same_period = finite & (np.floor(np.where(finite, alo, 0) / d) == np.floor(np.where(finite, ahi, 0) / d))
    exact_lo, exact_hi = np.mod(np.where(finite, alo, 0), d), np.mod(np.where(finite, ahi, 0), d)
    # Python's % takes the divisor's sign: results in [0, d-1] for d > 0, [d+1, 0] for d < 0
    lo = np.where(dlo > 0, 0.0, np.where(dhi < 0, dlo + 1, -INF))
    hi = np.where(dlo > 0, dhi - 1, np.where(dhi < 0, 0.0, INF))
    return np.where(point & same_period, exact_lo, lo), np.where(point & same_period, exact_hi, hi)


def _float_mod(alo, ahi, dlo, dhi):
    """torch.remainder on floats: fmod, then the divisor added when the signs differ; the
    result lies in [0, d] for d > 0 (d itself when a tiny negative remainder rounds up).
    Within one period it is ``a - k*d`` (the caller widens for rounding)."""
    point = (dlo == dhi) & np.isfinite(dlo) & (dlo != 0) & np.isfinite(alo) & np.isfinite(ahi)
    d = np.where(point, dlo, 1.0)
    k = np.floor(np.where(point, alo, 0) / d)
    same = point & (k == np.floor(np.where(point, ahi, 0) / d))
    lo = np.where(dlo > 0, 0.0, np.where(dhi < 0, dlo, -INF))
    hi = np.where(dlo > 0, dhi, np.where(dhi < 0, 0.0, INF))
    inner_lo, inner_hi = np.minimum(alo - k * d, ahi - k * d), np.maximum(alo - k * d, ahi - k * d)
    return np.where(same, np.maximum(inner_lo, np.minimum(lo, 0)), lo), np.where(same, inner_hi, hi)


def _float_floordiv(alo, ahi, dlo, dhi):
    """torch's float floor division (fmod-based, as Python's) is within one of floor(a / d)."""
    lo, hi = _floordiv(alo, ahi, dlo, dhi)
    return lo - 1, hi + 1


def _next_pow2_minus1(x):
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(x) & (x > 0), 2.0 ** np.ceil(np.log2(np.maximum(x, 1) + 1)) - 1, np.where(x == 0, 0, INF))


def _bitwise(op, alo, ahi, blo, bhi):
    points = (alo == ahi) & (blo == bhi) & np.isfinite(alo) & np.isfinite(blo)
    fn = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op]
    exact = fn(np.where(points, alo, 0).astype(np.int64), np.where(points, blo, 0).astype(np.int64)).astype(np.float64)
    nonneg = (alo >= 0) & (blo >= 0)
    top = _next_pow2_minus1(np.maximum(ahi, bhi))
    lo = {"and": 0.0 * alo, "or": np.maximum(alo, blo), "xor": 0.0 * alo}[op]
    hi = {"and": np.minimum(ahi, bhi), "or": top, "xor": top}[op]
    lo, hi = np.where(nonneg, lo, -INF), np.where(nonneg, hi, INF)
    return np.where(points, exact, lo), np.where(points, exact, hi)


def _shift(op, alo, ahi, slo, shi):
    ok = (slo >= 0) & np.isfinite(shi) & (shi < 62)
    scale = (lambda x, s: x * 2.0 ** s) if op == "lshift" else (lambda x, s: np.floor(x / 2.0 ** s))
    lo, hi = _corners(scale, alo, ahi, np.where(ok, slo, 0), np.where(ok, shi, 0))
    return np.where(ok, lo, -INF), np.where(ok, hi, INF)


def _pow(alo, ahi, blo, bhi):
    # x ** y is monotone in each operand where x > 0 (any exponent: Radial attention's
    # 2 ** -floor(log2(dt)) window), and where x >= 0 with y >= 0: extremes at the corners
    ok = (alo > 0) | ((alo >= 0) & (blo >= 0))
    lo, hi = _corners(np.power, np.where(ok, alo, 0), np.where(ok, ahi, 0), np.where(ok, blo, 0), np.where(ok, bhi, 0))
    return np.where(ok, lo, -INF), np.where(ok, hi, INF)


def _trunc(x):
    return np.where(np.isfinite(x), np.trunc(np.nan_to_num(x)), x)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _increasing(f, upper=None):
    """A monotone increasing op: ``[f(lo), upper(hi)]`` (``upper`` defaults to ``f``; give
    both when the op is only close to monotone and needs an envelope). NaN (log of a
    negative, ...) widens to unbounded."""
    upper = upper or f

    def rule(lo, hi):
        with np.errstate(all="ignore"):
            flo, fhi = f(lo), upper(hi)
        bad = np.isnan(flo) | np.isnan(fhi)
        return np.where(bad, -INF, flo), np.where(bad, INF, fhi)
    return rule


def _abs(lo, hi):
    return np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0)), np.maximum(np.abs(lo), np.abs(hi))


def _truediv(alo, ahi, blo, bhi):
    safe = (blo > 0) | (bhi < 0)
    lo, hi = _corners(np.divide, alo, ahi, np.where(safe, blo, 1), np.where(safe, bhi, 1))
    return np.where(safe, lo, -INF), np.where(safe, hi, INF)


# Bounds of an op's value from the ranges of its operands: f(lo, hi) or f(alo, ahi, blo, bhi).
RANGES = {
    Op.ABS: _abs, Op.INVERT: lambda lo, hi: (-hi - 1, -lo - 1),  # ~x == -x - 1 on integers
    Op.EXP: _increasing(np.exp), Op.EXP2: _increasing(np.exp2), Op.LOG: _increasing(np.log),
    Op.LOG2: _increasing(np.log2), Op.SQRT: _increasing(np.sqrt), Op.TANH: _increasing(np.tanh),
    Op.SIGMOID: _increasing(lambda x: 0.5 * (1 + np.tanh(0.5 * x))), Op.RELU: _increasing(lambda x: np.maximum(x, 0)),
    Op.ELU: _increasing(_elu),
    # torch's softplus is x past its threshold 20, a hair below log(1 + e^x): bounded by
    # min(log(1 + e^x), max(x, 20)) below and log(1 + e^x) above. torch's vectorized exp and
    # log1p differ from numpy's by a few ulps: a relative 1e-12 margin covers them.
    Op.SOFTPLUS: _increasing(lambda x: np.minimum(np.logaddexp(0, x), np.maximum(x, 20.0)) * (1 - 1e-12) - 1e-300,
                             lambda x: np.logaddexp(0, x) * (1 + 1e-12) + 1e-300),
    Op.LOGSIGMOID: _increasing(lambda x: -np.logaddexp(0, -x) * (1 + 1e-12) - 1e-300,
                               lambda x: -np.logaddexp(0, -x) * (1 - 1e-12) + 1e-300),
    Op.FLOOR: _increasing(np.floor), Op.CEIL: _increasing(np.ceil),
    Op.INT: _increasing(_trunc), Op.FLOAT: _increasing(lambda x: x),
    Op.MINIMUM: lambda alo, ahi, blo, bhi: (np.minimum(alo, blo), np.minimum(ahi, bhi)),
    Op.MAXIMUM: lambda alo, ahi, blo, bhi: (np.maximum(alo, blo), np.maximum(ahi, bhi)),
    Op.FLOORDIV: _floordiv, Op.MOD: _mod, Op.TRUEDIV: _truediv, Op.POW: _pow,
    Op.AND: functools.partial(_bitwise, "and"), Op.OR: functools.partial(_bitwise, "or"),
    Op.XOR: functools.partial(_bitwise, "xor"),
    Op.LSHIFT: functools.partial(_shift, "lshift"), Op.RSHIFT: functools.partial(_shift, "rshift"),
}


def _add(ev, e: E.Expr) -> Aff:
    a, b = ev.aff(e.src[0]), ev.aff(e.src[1])
    return Aff(a.cm + b.cm, a.cn + b.cn, a.lo + b.lo, a.hi + b.hi)


def _sub(ev, e: E.Expr) -> Aff:
    a, b = ev.aff(e.src[0]), ev.aff(e.src[1])
    return Aff(a.cm - b.cm, a.cn - b.cn, a.lo - b.hi, a.hi - b.lo)


def _neg(ev, e: E.Expr) -> Aff:
    a = ev.aff(e.src[0])
    return Aff(-a.cm, -a.cn, -a.hi, -a.lo)


def _select(ev, e: E.Expr) -> Aff:
    c = ev(e.src[0])
    (xlo, xhi), (ylo, yhi) = ev.rng(e.src[1]), ev.rng(e.src[2])
    lo = np.where(c.t & ~c.f, xlo, np.where(c.f & ~c.t, ylo, np.minimum(xlo, ylo)))
    hi = np.where(c.t & ~c.f, xhi, np.where(c.f & ~c.t, yhi, np.maximum(xhi, yhi)))
    return interval(lo, hi, ev.like)


# Float versions of ops whose integer rule assumes exact integers.
FLOAT_RANGES = {Op.MOD: _float_mod, Op.FLOORDIV: _float_floordiv}
EXACT = 2.0 ** 52  # integers beyond this are not exact in float64 bounds
TINY = 2.0 ** -126  # absolute slack for underflow to subnormals or zero


def _unknown_where(v: Aff, bad: np.ndarray) -> Aff:
    zero = np.zeros_like(v.lo)
    return Aff(np.where(bad, zero, v.cm), np.where(bad, zero, v.cn), np.where(bad, -INF, v.lo), np.where(bad, INF, v.hi))


# Ops that keep the affine form exact (the point of carrying m and n coefficients).
AFFINE = {Op.ADD: _add, Op.SUB: _sub, Op.NEG: _neg, Op.MUL: lambda ev, e: ev.mul(ev.aff(e.src[0]), ev.aff(e.src[1])),
          Op.WHERE: _select}


def _compare(always, never):
    """A comparison ``a OP b`` from the range of ``a - b``: whether it always / never holds."""
    def rule(ev, e: E.Expr) -> Tri:
        common = D.infer(Op.ADD, (e.src[0].tdtype, e.src[1].tdtype))  # both sides are compared in it
        a, b = (ev.converted(s, common) for s in e.src)
        lo, hi = total(Aff(a.cm - b.cm, a.cn - b.cn, a.lo - b.hi, a.hi - b.lo), ev.box)
        unknown = np.isnan(lo) | np.isnan(hi)
        return Tri(~never(lo, hi) | unknown, ~always(lo, hi) | unknown)
    return rule


def _where_bool(ev, e: E.Expr) -> Tri:
    c, x, y = (ev(s) for s in e.src)
    return Tri((c.t & x.t) | (c.f & y.t), (c.t & x.f) | (c.f & y.f))


def _logic(rule):
    return lambda ev, e: rule(ev(e.src[0]), ev(e.src[1]))


def _unknown_bool(ev, e: E.Expr) -> Tri:
    return Tri(np.ones(ev.like.shape, bool), np.ones(ev.like.shape, bool))


def _identity(ev, e: E.Expr) -> Tri:
    return ev(e.src[0])


_AND = _logic(lambda a, b: Tri(a.t & b.t, a.f | b.f))
_OR = _logic(lambda a, b: Tri(a.t | b.t, a.f & b.f))

# Three-valued rules for boolean-valued ops. torch computes bool arithmetic in bool:
# ``+`` and ``max`` are a logical or, ``*`` and ``min`` a logical and.
BOOLEAN = {
    Op.ADD: _OR, Op.MAXIMUM: _OR, Op.MUL: _AND, Op.MINIMUM: _AND,
    Op.ABS: _identity, Op.RELU: _identity, Op.FLOOR: _identity, Op.CEIL: _identity,
    Op.LT: _compare(lambda lo, hi: hi < 0, lambda lo, hi: lo >= 0),
    Op.LE: _compare(lambda lo, hi: hi <= 0, lambda lo, hi: lo > 0),
    Op.GT: _compare(lambda lo, hi: lo > 0, lambda lo, hi: hi <= 0),
    Op.GE: _compare(lambda lo, hi: lo >= 0, lambda lo, hi: hi < 0),
    Op.EQ: _compare(lambda lo, hi: (lo == 0) & (hi == 0), lambda lo, hi: (lo > 0) | (hi < 0)),
    Op.NE: _compare(lambda lo, hi: (lo > 0) | (hi < 0), lambda lo, hi: (lo == 0) & (hi == 0)),
    Op.INVERT: lambda ev, e: (lambda x: Tri(x.f, x.t))(ev(e.src[0])),
    Op.WHERE: _where_bool,
    Op.AND: _AND, Op.OR: _OR,
    Op.XOR: _logic(lambda a, b: Tri((a.t & b.f) | (a.f & b.t), (a.t & b.t) | (a.f & b.f))),
}

LoadFn = Callable[[E.TensorDecl, list[tuple[np.ndarray, np.ndarray]]], tuple[np.ndarray, np.ndarray]]


class IntervalEvaluator:
    """Evaluate a mask expression over a Box. ``load(decl, index_ranges)`` returns the
    min/max of a runtime tensor over the index box (see ``summaries``)."""

    def __init__(self, box: Box, params: dict, load: LoadFn):
        self.box, self.params, self.load_fn = box, params, load
        self.memo: dict = {}
        self.like = box.mlo
        self.leaves = {Op.VAR: self.var, Op.CONST: self.constant, Op.PARAM: self.constant, Op.LOAD: self.load}

    def __call__(self, e: E.Expr):
        if e not in self.memo:
            self.memo[e] = self.eval(e)
        return self.memo[e]

    def aff(self, e: E.Expr) -> Aff:
        v = self(e)
        if isinstance(v, Tri):  # a bool in arithmetic is 0 or 1
            return interval(np.where(v.f, 0.0, 1.0), np.where(v.t, 1.0, 0.0), self.like)
        return v

    def rng(self, e: E.Expr):
        return total(self.aff(e), self.box)

    def eval(self, e: E.Expr):
        op = e.op
        if op in self.leaves:
            return self.leaves[op](e)
        if e.dtype == E.BOOL:
            return BOOLEAN.get(op, _unknown_bool)(self, e)
        if op in AFFINE:
            out = self.fit(e, AFFINE[op](self, e))
        elif op in RANGES:
            rule = FLOAT_RANGES.get(op, RANGES[op]) if e.dtype == E.FLOAT else RANGES[op]
            lo, hi = rule(*(bound for s in e.src for bound in total(self.converted(s, e.tdtype), self.box)))
            out = self.fit(e, interval(lo, hi, self.like))
        else:
            raise ValueError(f"no interval rule for {op}")
        return self.exact_points(e, out) if e.dtype == E.FLOAT else out

    def exact_points(self, e: E.Expr, out: Aff) -> Aff:
        """Where every operand of a float op is a single value over a rectangle, its value
        is what torch computes from them, exactly: computed here by torch in the node's
        dtype, not widened by a rounding bound. (Radial attention's window
        ``2 ** -floor(log2(dt))`` over a tile within one pair of frames: ``dt`` is one
        number, and a widened ``log2(1)`` would straddle 0 and leave the tile undecided.)"""
        if D.is_weak(e.tdtype):  # Python arithmetic on Python numbers: left to the bounds
            return out
        bounds = [total(self.aff(s), self.box) for s in e.src]
        point = np.logical_and.reduce([(lo == hi) & np.isfinite(lo) for lo, hi in bounds])
        if not point.any():
            return out
        args = []
        for s, (lo, _) in zip(e.src, bounds):
            values = lo[point]
            if D.is_weak(s.tdtype):  # a Python number: one value, promoted by category only
                if not (values == values[0]).all():
                    return out
                args.append({E.BOOL: bool, E.INT: int, E.FLOAT: float}[s.dtype](values[0]))
            else:
                args.append(torch.from_numpy(values).to(D.torch_dtype(s.tdtype)))
        with np.errstate(all="ignore"):
            exact = D.TORCH_FN[e.op](*args)
            exact = exact.to(torch.float64).numpy() if isinstance(exact, torch.Tensor) else np.full(int(point.sum()), float(exact))
        where = np.zeros_like(point)
        where[point] = np.isfinite(exact)
        if not where.any():
            return out
        value = np.zeros(point.shape)
        value[point] = exact
        zero = np.zeros_like(out.lo)
        return Aff(np.where(where, zero, out.cm), np.where(where, zero, out.cn),
                   np.where(where, value, out.lo), np.where(where, value, out.hi))

    def converted(self, e: E.Expr, to: str) -> Aff:
        """``e``'s bounds as an operand of an op computed in dtype ``to``: converting an
        integer (or a wider float) to a float rounds it."""
        a = self.aff(e)
        if D.KIND[to] != E.FLOAT or e.tdtype == to or e.dtype == E.BOOL:
            return a
        lo, hi = total(a, self.box)
        with np.errstate(all="ignore"):
            w = D.EPS[to] * np.maximum(np.abs(lo), np.abs(hi))
        return Aff(a.cm, a.cn, a.lo - w, a.hi + w)

    def fit(self, e: E.Expr, v: Aff) -> Aff:
        """``v`` as torch computes node ``e`` (see the module docstring): unknown where an
        integer may wrap or a float may overflow, widened by a float's rounding."""
        lo, hi = total(v, self.box)
        with np.errstate(all="ignore"):
            if e.dtype == E.INT:
                imin, imax = D.IRANGE[e.tdtype]
                bad = ~((lo >= max(imin, -EXACT)) & (hi <= min(imax, EXACT)))
                return _unknown_where(v, bad) if bad.any() else v
            mag = np.maximum(np.abs(lo), np.abs(hi))
            operands = sum((np.maximum(np.abs(a), np.abs(b)) for a, b in
                            (total(self.aff(s), self.box) for s in e.src if s.op != Op.VAR or s.arg != "score")),
                           np.zeros_like(mag))
            w = D.EPS[e.tdtype] * (3 * mag + operands) + TINY
            bad = ~(mag + w < D.FMAX[e.tdtype]) | ~np.isfinite(operands)
            return _unknown_where(Aff(v.cm, v.cn, v.lo - w, v.hi + w), bad)

    def var(self, e: E.Expr):
        like, box = self.like, self.box
        one, zero = np.ones_like(like), np.zeros_like(like)
        if e.arg == "m":
            return Aff(one, zero, zero, zero)
        if e.arg == "n":
            return Aff(zero, one, zero, zero)
        if e.arg in box.extra:
            return interval(*box.extra[e.arg], like)
        value = box.b if e.arg == "b" else box.h
        return interval(value, value, like)

    def constant(self, e: E.Expr):
        value = e.arg if e.op == Op.CONST else self.params[e.arg[0]]
        if e.dtype == E.BOOL:
            return Tri(np.full(self.like.shape, bool(value)), np.full(self.like.shape, not value))
        return interval(float(value), float(value), self.like)

    def load(self, e: E.Expr):
        lo, hi = self.load_fn(e.arg, [self.rng(s) for s in e.src])
        if e.dtype == E.BOOL:
            return Tri(hi > 0, lo <= 0)
        return interval(lo, hi, self.like)

    def mul(self, a: Aff, b: Aff) -> Aff:
        (alo, ahi), (blo, bhi) = total(a, self.box), total(b, self.box)
        lo, hi = _corners(np.multiply, alo, ahi, blo, bhi)
        b_point = (b.cm == 0) & (b.cn == 0) & (b.lo == b.hi) & np.isfinite(b.lo)
        a_point = (a.cm == 0) & (a.cn == 0) & (a.lo == a.hi) & np.isfinite(a.lo)
        k = np.where(b_point, b.lo, np.where(a_point, a.lo, 0.0))
        base = Aff(np.where(b_point, a.cm, b.cm), np.where(b_point, a.cn, b.cn),
                   np.where(b_point, a.lo, b.lo), np.where(b_point, a.hi, b.hi))
        with np.errstate(all="ignore"):
            r1, r2 = _nan0(base.lo * k), _nan0(base.hi * k)
        scaled = a_point | b_point
        return Aff(np.where(scaled, base.cm * k, 0.0), np.where(scaled, base.cn * k, 0.0),
                   np.where(scaled, np.minimum(r1, r2), lo), np.where(scaled, np.maximum(r1, r2), hi))


def classify(mask: E.Expr, box: Box, params: dict, load: LoadFn) -> Tri:
    """Can the mask be true / false somewhere in each rectangle."""
    return IntervalEvaluator(box, params, load)(mask)
