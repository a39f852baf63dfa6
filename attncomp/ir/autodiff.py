"""Symbolic derivatives of expressions: one rule per op, next to the evaluation table.

``derivative(expr, x)`` is ``d expr / d x`` for a leaf ``x`` (the raw score ``qk`` of a
kernel term, or a float load of a captured tensor such as a bias table), as an expression
of the same leaves, so generated backward kernels print it like any other expression.
The rules are torch's autograd formulas, ties and kinks included: ``relu'(0) = 0``,
``abs'(0) = 0``, ``maximum``/``minimum`` split the gradient evenly between equal operands,
``softplus`` is ``x`` past its threshold 20 (derivative 1), integer and boolean
subexpressions (indices, masks, ``floor``) carry no gradient. One deliberate difference:
the unselected branch of ``where`` contributes nothing, where torch's autograd multiplies
its (possibly infinite) derivative by zero and returns NaN.

>>> from attncomp.ir import expr as E
>>> s = E.var("score")
>>> print(derivative(E.binary("mul", E.unary("tanh", E.binary("truediv", s, E.const(30.0))), E.const(30.0)), s))
(1.0 - tanh(score / 30.0) * tanh(score / 30.0)) * (1.0 / 30.0) * 30.0
"""

from __future__ import annotations

import math

from . import expr as E
from .ops import Op

ONE, ZERO, HALF = E.const(1.0), E.const(0.0), E.const(0.5)


def _mul(a: E.Expr | None, b: E.Expr | None) -> E.Expr | None:
    if a is None or b is None:
        return None
    if a == ONE:
        return b
    if b == ONE:
        return a
    return E.binary("mul", a, b)


def _add(a: E.Expr | None, b: E.Expr | None) -> E.Expr | None:
    if a is None:
        return b
    if b is None:
        return a
    return E.binary("add", a, b)


def _neg(a: E.Expr | None) -> E.Expr | None:
    return None if a is None else E.unary("neg", a)


def _sigmoid(x: E.Expr) -> E.Expr:
    return E.unary("sigmoid", x)


def _where(cond: E.Expr, a: E.Expr | None, b: E.Expr | None) -> E.Expr | None:
    if a is None and b is None:
        return None
    return E.where(cond, a if a is not None else ZERO, b if b is not None else ZERO)


def _ties(cond_a: E.Expr, node: E.Expr, da: E.Expr | None, db: E.Expr | None) -> E.Expr | None:
    """maximum / minimum: the chosen operand's derivative, half of each where they are equal."""
    a, b = node.src
    half = _add(_mul(HALF, da), _mul(HALF, db))
    return _where(E.binary("eq", a, b), half, _where(cond_a, da, db))


def _pow(node: E.Expr, da, db):
    a, b = node.src
    out = None
    if da is not None:  # b * a ** (b - 1)
        out = _mul(_mul(b, E.binary("pow", a, E.binary("sub", b, ONE))), da)
    if db is not None:  # a ** b * log(a)
        out = _add(out, _mul(_mul(node, E.unary("log", a)), db))
    return out


class NoDerivative(ValueError):
    """A float op of the differentiated leaf that has no rule (torch has none either: the
    derivative of a float ``//`` is not implemented there)."""


def _mod(n: E.Expr, da, db):
    """torch.remainder: d/da = 1, d/db = -floor(a / b)."""
    return _add(da, _neg(_mul(E.unary("floor", E.binary("truediv", *n.src)), db)))


# d(node) from its operands' derivatives (None: zero). Comparisons, logic and integer
# arithmetic carry no gradient (their results are not float); floor and ceil have zero
# derivative (piecewise constant, as in torch); any other float op without a rule raises.
FLAT = frozenset({Op.FLOOR, Op.CEIL, Op.INT})  # zero derivative everywhere
RULES = {
    Op.ADD: lambda n, da, db: _add(da, db),
    Op.SUB: lambda n, da, db: _add(da, _neg(db)),
    Op.MUL: lambda n, da, db: _add(_mul(da, n.src[1]), _mul(n.src[0], db)),
    Op.TRUEDIV: lambda n, da, db: _add(_mul(da, E.binary("truediv", ONE, n.src[1])),
                                       _neg(_mul(E.binary("truediv", n, n.src[1]), db))),
    Op.NEG: lambda n, da: _neg(da),
    Op.MOD: _mod,
    Op.POW: _pow,
    Op.MAXIMUM: lambda n, da, db: _ties(E.binary("gt", *n.src), n, da, db),
    Op.MINIMUM: lambda n, da, db: _ties(E.binary("lt", *n.src), n, da, db),
    Op.ABS: lambda n, da: _mul(_where(E.binary("gt", n.src[0], ZERO), ONE,
                                      _where(E.binary("lt", n.src[0], ZERO), E.const(-1.0), ZERO)), da),
    Op.EXP: lambda n, da: _mul(n, da),
    Op.EXP2: lambda n, da: _mul(_mul(n, E.const(math.log(2.0))), da),
    Op.LOG: lambda n, da: _mul(E.binary("truediv", ONE, n.src[0]), da),
    Op.LOG2: lambda n, da: _mul(E.binary("truediv", ONE, E.binary("mul", n.src[0], E.const(math.log(2.0)))), da),
    Op.SQRT: lambda n, da: _mul(E.binary("truediv", HALF, n), da),
    Op.TANH: lambda n, da: _mul(E.binary("sub", ONE, E.binary("mul", n, n)), da),
    Op.SIGMOID: lambda n, da: _mul(E.binary("mul", n, E.binary("sub", ONE, n)), da),
    Op.RELU: lambda n, da: _mul(_where(E.binary("gt", n.src[0], ZERO), ONE, ZERO), da),
    Op.ELU: lambda n, da: _mul(_where(E.binary("gt", n.src[0], ZERO), ONE, E.unary("exp", n.src[0])), da),
    Op.SOFTPLUS: lambda n, da: _mul(_where(E.binary("gt", n.src[0], E.const(20.0)), ONE, _sigmoid(n.src[0])), da),
    Op.LOGSIGMOID: lambda n, da: _mul(_sigmoid(E.unary("neg", n.src[0])), da),
    Op.FLOAT: lambda n, da: da,
    Op.WHERE: lambda n, dc, da, db: _where(n.src[0], da, db),
}


def derivative(expr: E.Expr, x: E.Expr) -> E.Expr | None:
    """``d expr / d x`` as an expression, or None where it is identically zero; raises
    :class:`NoDerivative` for a float op of ``x`` without a rule."""
    memo: dict[E.Expr, E.Expr | None] = {}
    for node in E.walk(expr):
        if node == x:
            memo[node] = ONE
            continue
        grads = [memo[s] for s in node.src]
        if node.dtype != E.FLOAT or node.op in FLAT or all(g is None for g in grads):
            memo[node] = None
        elif node.op not in RULES:
            raise NoDerivative(f"`{node}` ({node.op}) has no derivative")
        else:
            memo[node] = RULES[node.op](node, *grads)
    return memo[expr]


def float_loads(expr: E.Expr) -> list[E.Expr]:
    """The distinct float loads of captured tensors in ``expr``: the leaves with gradients."""
    return list(dict.fromkeys(n for n in E.walk(expr) if n.op == Op.LOAD and n.dtype == E.FLOAT))
