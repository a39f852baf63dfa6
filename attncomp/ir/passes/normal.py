"""Softmax attention however it is spelled: one normal form, so every backend lowers it.

A cascade that computes ``softmax(score(Q K^T * scale)) V`` may name its intermediates or
not, put the scale on the contraction (``S = Q * K * scale``) or on its own line
(``T = S * scale``), apply the softmax inside the value contraction
(``O = softmax[n](S) * V``), or write the softmax out as torch computes it,
``exp(X - max[n](X)) / sum[n](exp(X - max[n](X)))``. This pass rewrites each of them to the
three equations of :func:`attncomp.ir.softmax.softmax_program` (``S = Q * K``,
``P = softmax[n](...)``, ``O = P * V``), which the kernels lower and the simulator prices.

Each step is an identity of the cascade semantics (:mod:`attncomp.ir.program`):

- inlining an equation that is not a contraction into its uses: its value at a masked
  pair is zero, and every use at a masked pair is zeroed or skipped as well;
- moving scalar factors out of a contraction: ``sum_d(Q K c) = c sum_d(Q K)``;
- ``exp(X - max X) / sum exp(X - max X)`` is softmax as torch defines it (the max
  subtracted); ``exp(X) / sum exp(X)`` is not rewritten, as it overflows where softmax
  does not, and a kernel must compute what the cascade says.

The rewrite is kept only when the result is softmax attention; any other cascade is
returned unchanged (its own lowering reads it as written).
"""

from __future__ import annotations

from dataclasses import replace

from .. import expr as E
from ..program import Eqn, Program
from ..softmax import BHMN, match_softmax
from .dead import eliminate_dead


def normalize_softmax(program: Program) -> Program:
    """``program`` in the three-equation softmax form if it is softmax attention written
    another way; otherwise ``program`` itself.

    >>> import attncomp as ac
    >>> spec = ac.cascade('''
    ...     S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d] * scale
    ...     E[b,h,m,n] = exp(S - max[n](S))
    ...     O[b,h,m,e] = E * V[b,h,n,e] / sum[n](E)
    ... ''')
    >>> print("\\n".join(str(e) for e in normalize_softmax(spec).eqns))
    S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
    P[b,h,m,n] = softmax[n](S[b,h,m,n] * scale)
    O[b,h,m,e] = P[b,h,m,n] * V[b,h,n,e]
    """
    if match_softmax(program)[0] is not None:
        return program
    out = _inline(program)
    out = _scalars_out_of_contractions(out)
    out = eliminate_dead(_split_softmax(out))
    if match_softmax(out)[0] is None:
        return program
    return out


def _factors(expr: E.Expr) -> list[E.Expr]:
    """The operands of a product ``a * b / c`` (``1 / c`` for a divisor)."""
    if expr.op == "mul":
        return _factors(expr.src[0]) + _factors(expr.src[1])
    if expr.op == "truediv":
        return _factors(expr.src[0]) + [E.binary("truediv", E.const(1.0), expr.src[1])]
    return [expr]


def _product(factors: list[E.Expr]) -> E.Expr:
    out = factors[0]
    for f in factors[1:]:
        out = E.binary("mul", out, f)
    return out


def _refs(expr: E.Expr, name: str) -> set[E.Expr]:
    return {n for n in E.walk(expr) if n.op == "ref" and n.arg == name}


def _inline(program: Program) -> Program:
    """Equations that are not contractions (every letter on the right is on the left, or
    bound by a reduction), read only with their own letters, substituted into their uses."""
    eqns = list(program.eqns)
    i = 0
    while i < len(eqns) - 1:
        eqn = eqns[i]
        own = E.ref(eqn.name, eqn.letters)
        uses = set().union(*(_refs(e.rhs, eqn.name) for e in eqns[i + 1:]))
        if E.letters_of(eqn.rhs) <= set(eqn.letters) and uses == {own}:
            eqns = eqns[:i] + [Eqn(e.name, e.letters, E.substitute(e.rhs, {own: eqn.rhs}), e.line)
                               for e in eqns[i + 1:]]
            continue
        i += 1
    return replace(program, eqns=tuple(eqns))


def _scalars_out_of_contractions(program: Program) -> Program:
    """``S = Q * K * c`` (``c`` free of index letters) becomes ``S = Q * K``, and its uses
    read ``S * c``."""
    eqns = list(program.eqns)
    for i, eqn in enumerate(eqns[:-1]):
        factors = _factors(eqn.rhs)
        tensors = [f for f in factors if f.op == "ref"]
        scalars = [f for f in factors if f.op != "ref"]
        if len(tensors) != 2 or not scalars or any(E.letters_of(f) or _has_refs(f) for f in scalars):
            continue
        own = E.ref(eqn.name, eqn.letters)
        scaled = E.binary("mul", own, _product(scalars))
        eqns[i] = Eqn(eqn.name, eqn.letters, _product(tensors), eqn.line)
        eqns[i + 1:] = [Eqn(e.name, e.letters, E.substitute(e.rhs, {own: scaled}), e.line) for e in eqns[i + 1:]]
    return replace(program, eqns=tuple(eqns))


def _has_refs(expr: E.Expr) -> bool:
    return any(n.op in ("ref", "load") for n in E.walk(expr))


def _softmax_argument(weights: list[E.Expr]) -> E.Expr | None:
    """``X`` if the product of ``weights`` is ``softmax[n](X)``, spelled as the reduction or
    as ``exp(X - max[n](X)) * (1 / sum[n](exp(X - max[n](X))))``."""
    if len(weights) == 1 and weights[0].op == "softmax" and weights[0].arg == "n":
        return weights[0].src[0]
    if len(weights) != 2:
        return None
    for numerator, inverse in (weights, weights[::-1]):
        if not (inverse.op == "truediv" and inverse.src[0] == E.const(1.0)):
            continue
        total = inverse.src[1]
        if not (total.op == "reduce_sum" and total.arg == "n" and total.src[0] == numerator):
            continue
        if numerator.op != "exp" or numerator.src[0].op != "sub":
            continue
        x, peak = numerator.src[0].src
        if peak.op == "reduce_max" and peak.arg == "n" and peak.src[0] == x:
            return x
    return None


def _split_softmax(program: Program) -> Program:
    """``O[b,h,m,e] = W * V[b,h,n,e]`` with ``W`` a softmax over ``n`` becomes ``P = softmax[n](X)``
    and ``O = P * V``."""
    last = program.eqns[-1]
    factors = _factors(last.rhs)
    values = [f for f in factors if f.op == "ref" and tuple(s.arg for s in f.src) == ("b", "h", "n", "e")]
    if last.letters != ("b", "h", "m", "e") or len(values) != 1:
        return program
    x = _softmax_argument([f for f in factors if f is not values[0]])
    if x is None:
        return program
    name = next(c for c in ("P", "P_", "P__", "Weights") if c not in {e.name for e in program.eqns}
                and c not in {i.name for i in program.inputs})
    softmax = Eqn(name, BHMN, E.reduce("softmax", "n", x), last.line)
    output = Eqn(last.name, last.letters, E.binary("mul", E.ref(name, BHMN), values[0]), last.line)
    return replace(program, eqns=program.eqns[:-1] + (softmax, output))
