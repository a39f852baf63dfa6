"""Fold parameters and integer/boolean constants, and apply exact algebraic identities.

Only integer and boolean arithmetic is folded: float expressions are left for the
backends, which evaluate them in their own precision (float32 in kernels), so folding
here can never change a result. Identities used (all exact for Python integers):
``x & True = x``, ``x | False = x``, ``~~x = x``, ``x + 0 = x``, ``x * 1 = x``,
``x * 0 = 0``, ``x // 1 = x``, ``x % 1 = 0``, ``(x // a) // b = x // (a * b)`` for
``a, b > 0`` (floor division composes), ``(x % a) % b = x % b`` for ``a, b > 0`` with
``b`` dividing ``a`` (x and x % a differ by a multiple of b), ``where(True, a, b) = a``, ``where(c, a, a) = a``,
``min(x, x) = max(x, x) = x``.
"""

from __future__ import annotations

import operator
from dataclasses import replace

from .. import expr as E
from ..program import Program

_PY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "mod": operator.mod, "minimum": min, "maximum": max, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge, "eq": operator.eq, "ne": operator.ne,
    "lshift": operator.lshift, "rshift": operator.rshift,
}


def _const_value(node: E.Expr):
    args = [s.arg for s in node.src]
    op = node.op
    if op in ("floordiv", "mod") and args[1] == 0:
        return None  # leave division by zero for the evaluator to report
    if op in ("lshift", "rshift") and args[1] < 0:
        return None
    if op in _PY:
        return _PY[op](*(int(a) if isinstance(a, bool) and op not in E.COMPARE else a for a in args))
    if op in ("and", "or", "xor"):
        fn = {"and": operator.and_, "or": operator.or_, "xor": operator.xor}[op]
        return bool(fn(*args)) if node.dtype == E.BOOL else fn(int(args[0]), int(args[1]))
    if op == "neg":
        return -int(args[0])
    if op == "abs":
        return abs(int(args[0]))
    if op == "invert":
        return (not args[0]) if node.dtype == E.BOOL else ~int(args[0])
    if op == "where":
        return args[1] if args[0] else args[2]
    if op == "pow" and args[1] >= 0:
        return int(args[0]) ** int(args[1])
    return None


def _is(node: E.Expr, value) -> bool:
    return node.op == "const" and node.arg == value and type(node.arg) is type(value)


def fold_expr(expr: E.Expr, fold_params: bool = True) -> E.Expr:
    """``expr`` with parameters replaced by their values (optional), integer/boolean
    constant subexpressions evaluated, and the identities above applied."""
    done: dict[E.Expr, E.Expr] = {}
    for node in E.walk(expr):
        src = tuple(done[s] for s in node.src)
        if node.op == "param" and fold_params and node.arg[1] is not None:
            done[node] = E.const(node.arg[1])
            continue
        new = node if src == node.src else E.rebuild(node, src)
        done[node] = _simplify_node(new)
    return done[expr]


def _simplify_node(e: E.Expr) -> E.Expr:
    if e.dtype != E.FLOAT and e.src and all(s.op == "const" for s in e.src) and e.op not in E.REDUCTIONS:
        value = _const_value(e)
        if value is not None:
            return E.const(bool(value) if e.dtype == E.BOOL else int(value))
    op, src = e.op, e.src
    same = lambda x: x if x.dtype == e.dtype else None
    if op == "where":
        c, a, b = src
        if c.op == "const":
            return same(a if c.arg else b) or e
        if a == b:
            return a
    if len(src) != 2:
        if op == "invert" and src[0].op == "invert":
            return src[0].src[0]
        return e
    a, b = src
    if e.dtype == E.BOOL and op in ("and", "or"):
        unit, zero = (True, False) if op == "and" else (False, True)
        if _is(a, unit) or a == b:
            return b
        if _is(b, unit):
            return a
        if _is(a, zero) or _is(b, zero):
            return E.const(zero)
    if e.dtype != E.INT:
        return e
    if op == "add":
        return (same(b) if _is(a, 0) else None) or (same(a) if _is(b, 0) else None) or e
    if op == "sub" and _is(b, 0):
        return same(a) or e
    if op == "mul":
        if _is(a, 0) or _is(b, 0):
            return E.const(0)
        return (same(b) if _is(a, 1) else None) or (same(a) if _is(b, 1) else None) or e
    if op == "floordiv":
        if _is(b, 1):
            return same(a) or e
        if a.op == "floordiv" and a.src[1].op == "const" and b.op == "const" and a.src[1].arg > 0 and b.arg > 0:
            return E.binary("floordiv", a.src[0], E.const(a.src[1].arg * b.arg))
    if op == "mod" and _is(b, 1):
        return E.const(0)
    if op == "mod" and a.op == "mod" and a.src[1].op == "const" and b.op == "const" and b.arg > 0 \
            and a.src[1].arg > 0 and a.src[1].arg % b.arg == 0:
        return E.binary("mod", a.src[0], b)
    if op in ("minimum", "maximum") and a == b:
        return a
    return e


def fold(program: Program, fold_params: bool = True) -> Program:
    """The Program with its mask and equations folded (the same object if nothing changed)."""
    mask = fold_expr(program.mask, fold_params) if program.mask is not None else None
    if mask is not None and mask.op == "const" and mask.arg is True:
        mask = None
    eqns = tuple(replace(e, rhs=fold_expr(e.rhs, fold_params)) for e in program.eqns)
    if mask == program.mask and eqns == program.eqns:
        return program
    return replace(program, mask=mask, eqns=eqns)
