"""Hoist masking out of a softmax score mod into the mask.

A score mod ``where(c, score, -inf)`` (or ``where(c, -inf, score)``, or an additive
``score + where(c, 0, -inf)``) gives weight exp(-inf) = 0 to the pairs where ``c`` fails,
which is exactly what a mask does; as a mask, though, the analysis sees it and kernels
skip the empty tiles. Valid for softmax attention (a row left with no pair gives 0 either
way) when ``c`` reads only indices and runtime tensors, not the score.
"""

from __future__ import annotations

import math

from .. import expr as E
from ..program import Program
from ..softmax import SoftmaxParts, match_softmax, softmax_program


def _is_neg_inf(e: E.Expr) -> bool:
    return e.op == "const" and isinstance(e.arg, float) and math.isinf(e.arg) and e.arg < 0


def _index_only(c: E.Expr) -> bool:
    return E.var("score") not in set(E.walk(c)) and not any(n.op in ("ref",) + tuple(E.REDUCTIONS) for n in E.walk(c))


def split_score(score: E.Expr) -> tuple[list[E.Expr], E.Expr]:
    """(conditions, remaining score mod) with every hoistable ``-inf`` condition pulled out."""
    conds: list[E.Expr] = []
    while True:
        if score.op == "where" and _index_only(score.src[0]):
            c, a, b = score.src
            if _is_neg_inf(b) and not _is_neg_inf(a):
                conds.append(c)
                score = a
                continue
            if _is_neg_inf(a) and not _is_neg_inf(b):
                conds.append(E.unary("invert", c))
                score = b
                continue
        if score.op == "add":
            for keep, bias in (score.src, score.src[::-1]):
                if bias.op == "where" and _index_only(bias.src[0]) and bias.src[1].op == "const" \
                        and bias.src[1].arg == 0 and _is_neg_inf(bias.src[2]):
                    conds.append(bias.src[0])
                    score = keep
                    break
            else:
                return conds, score
            continue
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
    new = SoftmaxParts(mask, None if score == E.var("score") else score, parts.scale, parts.q, parts.k, parts.v)
    return softmax_program(new, program.name, program.bindings, program.source)
