"""Fold parameters and integer/boolean constants, and apply exact algebraic identities.

Constants fold to the value torch computes: Python numbers by Python, anything holding a
tensor's value (an index fixed to one value, ``x * 0`` of a tensor) by torch in its dtype. Identities used (all exact for Python integers):
``x & True = x``, ``x | False = x``, ``~~x = x``, ``x + 0 = x``, ``x * 1 = x``,
``x * 0 = 0``, ``x // 1 = x``, ``x % 1 = 0``, ``(x // a) // b = x // (a * b)`` for
``a, b > 0`` (floor division composes), ``(x % a) % b = x % b`` for ``a, b > 0`` with
``b`` dividing ``a`` (x and x % a differ by a multiple of b), ``where(True, a, b) = a``, ``where(c, a, a) = a``,
``min(x, x) = max(x, x) = x``, and on bools (torch computes them as logic)
``x + y = max(x, y) = x | y``, ``x * y = min(x, y) = x & y``. And one rewrite of torch's meaning: a Python integer
outside the narrow integer dtype an op computes in is written wrapped into it, as torch
converts it (``doc < 2 ** 31`` with ``doc`` int32 is ``doc < -2 ** 31``).
"""

from __future__ import annotations

import math
import operator
from dataclasses import replace

import torch

from .. import dtypes as D
from .. import expr as E
from ..ops import Op
from ..program import Program
from ..rewrite import Pat, Rules, graph_rewrite


def _divide(fn):
    return lambda a, b: None if b == 0 else fn(a, b)  # leave division by zero for the evaluator to report


def _shift(fn):
    return lambda a, b: None if b < 0 else fn(a, b)


# Python's meaning of each integer/boolean op on constants (bools count as 0/1); None: do not fold.
FOLD = {
    Op.ADD: operator.add, Op.SUB: operator.sub, Op.MUL: operator.mul, Op.FLOORDIV: _divide(operator.floordiv),
    Op.MOD: _divide(operator.mod), Op.POW: lambda a, b: int(a) ** int(b) if b >= 0 else None,
    Op.MINIMUM: min, Op.MAXIMUM: max,
    Op.LT: operator.lt, Op.LE: operator.le, Op.GT: operator.gt, Op.GE: operator.ge, Op.EQ: operator.eq,
    Op.NE: operator.ne, Op.LSHIFT: _shift(operator.lshift), Op.RSHIFT: _shift(operator.rshift),
    Op.AND: operator.and_, Op.OR: operator.or_, Op.XOR: operator.xor,
    Op.NEG: operator.neg, Op.ABS: abs, Op.INVERT: lambda a: (not a) if isinstance(a, bool) else ~a,
    Op.WHERE: lambda c, a, b: a if c else b,
    Op.INT: lambda a: None if isinstance(a, float) else int(a),  # .long() of a folded bool or int
}


def _constant(e: E.Expr) -> E.Expr | None:
    """An op of constants, evaluated: Python numbers by Python (exact integers), anything
    holding a tensor's value by torch in its dtype (float32 rounding, int64 wrapping), so
    the constant is the value torch computes."""
    if not e.src or any(s.op != Op.CONST for s in e.src) or e.op not in D.TORCH_FN:
        return None
    if D.is_weak(e.tdtype) and e.dtype != E.FLOAT:
        if e.op not in FOLD:
            return None
        value = FOLD[e.op](*(s.arg for s in e.src))
        return None if value is None else E.const(bool(value) if e.dtype == E.BOOL else int(value))
    if e.op in (Op.FLOORDIV, Op.MOD) and e.dtype != E.FLOAT and e.src[1].arg == 0:
        return None  # leave division by zero for the evaluator to report
    weak = D.is_weak(e.tdtype)
    args = [torch.tensor(s.arg, dtype=D.torch_dtype(s.tdtype)) if weak or not D.is_weak(s.tdtype) else s.arg
            for s in e.src]
    try:
        value = D.TORCH_FN[e.op](*args)
    except (RuntimeError, ZeroDivisionError):
        return None  # torch's error, reported by the evaluator at the user's line
    value = torch.as_tensor(value).item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return E.const(value, None if weak else e.tdtype)


NARROW = ("int32", "int16", "int8", "uint8")


def _wrapped_scalars(e: E.Expr) -> E.Expr | None:
    """torch converts a Python integer to the dtype an op computes in, wrapping: with
    ``doc`` int32, ``doc < 2 ** 31`` is ``doc < -2 ** 31``. The constant is written
    wrapped, so the analysis and every backend see the value torch uses."""
    if e.op not in E.BINARY and e.op != Op.WHERE:
        return None
    computed = D.infer(Op.ADD, tuple(s.tdtype for s in e.src[-2:])) if e.op in E.COMPARE else e.tdtype
    if computed not in NARROW:
        return None
    lo, hi = D.IRANGE[computed]
    span = hi - lo + 1
    src = tuple(E.const((s.arg - lo) % span + lo) if s.op == Op.CONST and s.tdtype == "py_int" and not lo <= s.arg <= hi
                else s for s in e.src)
    return e.with_src(src) if src != e.src else None


def _same_type(e: E.Expr, x: E.Expr) -> E.Expr | None:
    return x if x.tdtype == e.tdtype else None


def _zero(e: E.Expr, value) -> E.Expr:
    """The constant an identity gives (``x * 0``), with ``e``'s dtype: a tensor's value
    stays a tensor's (it promotes as one)."""
    return E.const(value, None if D.is_weak(e.tdtype) else e.tdtype)


def _const(value, name: str | None = None) -> Pat:
    return Pat(Op.CONST, arg=value, name=name)


def _positive(name: str) -> Pat:
    return Pat(Op.CONST, name=name, test=lambda c: c.arg > 0)


x, y = Pat(name="x"), Pat(name="y")
INT, BOOL = E.INT, E.BOOL

# Tried in order on each node, its children already folded; the first that applies wins.
RULES = Rules([
    (Pat(name="e"), _constant),
    (Pat(name="e"), _wrapped_scalars),
    (Pat(Op.WHERE, Pat(Op.CONST, name="c"), x, y, name="e"), lambda e, c, x, y: _same_type(e, x if c.arg else y) or e),
    (Pat(Op.WHERE, Pat(), x, x), lambda x: x),
    (Pat(Op.INVERT, Pat(Op.INVERT, x)), lambda x: x),
    # torch's bool arithmetic is logic: bool + and max are |, bool * and min are &
    (Pat({Op.ADD, Op.MAXIMUM}, x, y, dtype=BOOL), lambda x, y: E.binary(Op.OR, x, y)),
    (Pat({Op.MUL, Op.MINIMUM}, x, y, dtype=BOOL), lambda x, y: E.binary(Op.AND, x, y)),
    # x & True = x, x | False = x, x & x = x | x = x, x & False = False, x | True = True
    (Pat(Op.AND, _const(True), x, dtype=BOOL), lambda x: x), (Pat(Op.AND, x, x, dtype=BOOL), lambda x: x),
    (Pat(Op.AND, x, _const(True), dtype=BOOL), lambda x: x),
    (Pat(Op.AND, dtype=BOOL, name="e", test=lambda e: any(_is(s, False) for s in e.src)), lambda e: _zero(e, False)),
    (Pat(Op.OR, _const(False), x, dtype=BOOL), lambda x: x), (Pat(Op.OR, x, x, dtype=BOOL), lambda x: x),
    (Pat(Op.OR, x, _const(False), dtype=BOOL), lambda x: x),
    (Pat(Op.OR, dtype=BOOL, name="e", test=lambda e: any(_is(s, True) for s in e.src)), lambda e: _zero(e, True)),
    (Pat(Op.ADD, _const(0), x, dtype=INT, name="e"), _same_type), (Pat(Op.ADD, x, _const(0), dtype=INT, name="e"), _same_type),
    (Pat(Op.SUB, x, _const(0), dtype=INT, name="e"), _same_type),
    (Pat(Op.MUL, dtype=INT, name="e", test=lambda e: any(_is(s, 0) for s in e.src)), lambda e: _zero(e, 0)),
    (Pat(Op.MUL, _const(1), x, dtype=INT, name="e"), _same_type), (Pat(Op.MUL, x, _const(1), dtype=INT, name="e"), _same_type),
    (Pat(Op.FLOORDIV, x, _const(1), dtype=INT, name="e"), _same_type),
    # (x // a) // b = x // (a * b) for a, b > 0: floor division composes
    (Pat(Op.FLOORDIV, Pat(Op.FLOORDIV, x, _positive("a")), _positive("b"), dtype=INT),
     lambda x, a, b: E.binary("floordiv", x, E.const(a.arg * b.arg))),
    (Pat(Op.MOD, x, _const(1), dtype=INT, name="e"), lambda e, x: _zero(e, 0)),
    # (x % a) % b = x % b for a, b > 0 with b dividing a: x and x % a differ by a multiple of b
    (Pat(Op.MOD, Pat(Op.MOD, x, _positive("a")), _positive("b"), dtype=INT),
     lambda x, a, b: E.binary("mod", x, b) if a.arg % b.arg == 0 else None),
    (Pat({Op.MINIMUM, Op.MAXIMUM}, x, x, dtype=INT), lambda x: x),
])


def _is(node: E.Expr, value) -> bool:
    return node.op == Op.CONST and node.arg == value and type(node.arg) is type(value)


PARAMS = Rules([(Pat(Op.PARAM, name="p", test=lambda p: p.arg[1] is not None), lambda p: E.const(p.arg[1]))])
PARAMS_AND_RULES = PARAMS + RULES


def fold_expr(expr: E.Expr, fold_params: bool = True) -> E.Expr:
    """``expr`` with parameters replaced by their values (optional), integer/boolean
    constant subexpressions evaluated, and the identities above applied.

    >>> from attncomp.ir.expr import var, const, param, binary
    >>> str(fold_expr(binary("add", binary("floordiv", binary("floordiv", var("m"), const(4)), param("w", 2)), const(0))))
    'm // 8'
    """
    return graph_rewrite(expr, PARAMS_AND_RULES if fold_params else RULES)


def fold(program: Program, fold_params: bool = True) -> Program:
    """The Program with its mask and equations folded (the same object if nothing changed)."""
    mask = fold_expr(program.mask, fold_params) if program.mask is not None else None
    if mask is not None and mask.op == "const" and mask.arg is True:
        mask = None
    eqns = tuple(replace(e, rhs=fold_expr(e.rhs, fold_params)) for e in program.eqns)
    if mask == program.mask and eqns == program.eqns:
        return program
    return replace(program, mask=mask, eqns=eqns)
