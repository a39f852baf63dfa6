"""Hoist masking out of a softmax score mod into the mask.

A score mod ``where(c, score, -inf)`` (or ``where(c, -inf, score)``, or an additive
``score + where(c, 0, -inf)``) gives weight exp(-inf) = 0 to the pairs where ``c`` fails,
which is exactly what a mask does; as a mask, though, the analysis sees it and kernels
skip the empty tiles. Valid for softmax attention (a row left with no pair gives 0 either
way) when ``c`` reads only indices and runtime tensors, not the score.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .. import expr as E
from ..ops import Op
from ..program import Program
from ..rewrite import Pat, Rules
from ..softmax import match_softmax, softmax_program


def _is_neg_inf(e: E.Expr) -> bool:
    return e.op == "const" and isinstance(e.arg, float) and math.isinf(e.arg) and e.arg < 0


def _index_only(c: E.Expr) -> bool:
    return E.var("score") not in set(E.walk(c)) and not any(n.op in ("ref",) + tuple(E.REDUCTIONS) for n in E.walk(c))


_COND = Pat(name="c", test=_index_only)
_NEG_INF = Pat(Op.CONST, test=_is_neg_inf)
_SCORE = Pat(name="x", test=lambda e: not _is_neg_inf(e))
# One hoistable condition off the top of a score mod: (condition, the rest).
_PEEL = Rules([
    (Pat(Op.WHERE, _COND, _SCORE, _NEG_INF), lambda c, x: (c, x)),                 # where(c, x, -inf)
    (Pat(Op.WHERE, _COND, _NEG_INF, _SCORE), lambda c, x: (E.unary("invert", c), x)),  # where(c, -inf, x)
    (Pat(Op.ADD, Pat(name="x"), Pat(Op.WHERE, _COND, Pat(Op.CONST, test=lambda z: z.arg == 0), _NEG_INF)),
     lambda c, x: (c, x)),                                                           # x + where(c, 0, -inf)
    (Pat(Op.ADD, Pat(Op.WHERE, _COND, Pat(Op.CONST, test=lambda z: z.arg == 0), _NEG_INF), Pat(name="x")),
     lambda c, x: (c, x)),                                                           # where(c, 0, -inf) + x
])


def split_score(score: E.Expr) -> tuple[list[E.Expr], E.Expr]:
    """(conditions, remaining score mod) with every hoistable ``-inf`` condition pulled out.

    >>> from attncomp.ir.expr import var, const, binary, where
    >>> s, m, n = var("score"), var("m"), var("n")
    >>> conds, rest = split_score(where(binary("ge", m, n), binary("mul", s, const(2.0)), const(-float("inf"))))
    >>> [str(c) for c in conds], str(rest)
    (['m >= n'], 'score * 2.0')
    """
    conds: list[E.Expr] = []
    while (peeled := _PEEL.rewrite(score)) is not None:
        cond, score = peeled
        conds.append(cond)
    return conds, score


def hoist_masks(program: Program) -> Program:
    """The Program with ``-inf`` conditions of its softmax score mod moved into the mask."""
    parts, _ = match_softmax(program)
    if parts is None or parts.score is None:
        return program
    conds, score = split_score(parts.score)
    if not conds:
        return program
    mask = parts.mask
    for c in conds:
        mask = c if mask is None else E.binary("and", mask, c)
    new = replace(parts, mask=mask, score=None if score == E.var("score") else score)
    return softmax_program(new, program.name, program.bindings, program.source, program.selection)
