"""Softmax attention as a Program, and recognising it again.

``softmax_program`` builds the three equations ``S = Q K``, ``P = softmax[n](score(S *
scale))``, ``O = P V``; ``match_softmax`` takes any Program apart into those
:class:`SoftmaxParts` (or says which equation breaks the pattern), so passes and backends
read a score mod and a mask whichever way the user wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import expr as E
from .program import Eqn, InputDecl, Program
from .verify import verify

BHMN = ("b", "h", "m", "n")
QKV = (InputDecl("Q", ("b", "h", "m", "d")), InputDecl("K", ("b", "h", "n", "d")), InputDecl("V", ("b", "h", "n", "e")))


@dataclass(frozen=True)
class SoftmaxParts:
    """Softmax attention ``softmax(score_mod(Q K^T * scale)) V`` under ``mask``.

    ``score`` is an expression of ``var("score")`` (None: the identity); ``scale`` is the
    value of the scale parameter (None: 1/sqrt(head_dim)); ``sink`` a logit per row (of b,
    h, m) in the normalizer with no value, or None; q, k, v name the inputs.
    """

    mask: E.Expr | None
    score: E.Expr | None
    scale: float | None
    sink: E.Expr | None = None
    q: str = "Q"
    k: str = "K"
    v: str = "V"


def softmax_program(parts: SoftmaxParts, name: str, bindings=(), source=None, selection=None) -> Program:
    s_scaled = E.binary("mul", E.ref("S", BHMN), E.param("scale", parts.scale))
    logits = s_scaled if parts.score is None else E.substitute(parts.score, {E.var("score"): s_scaled})
    eqns = (
        Eqn("S", BHMN, E.binary("mul", E.ref("Q", QKV[0].letters), E.ref("K", QKV[1].letters))),
        Eqn("P", BHMN, E.reduce("softmax", "n", logits, parts.sink)),
        Eqn("O", ("b", "h", "m", "e"), E.binary("mul", E.ref("P", BHMN), E.ref("V", QKV[2].letters))),
    )
    program = Program(QKV, eqns, parts.mask, selection, name=name, bindings=tuple(bindings), source=source)
    verify(program)
    return program


def match_softmax(program: Program) -> tuple[SoftmaxParts | None, str]:
    """Recognise ``program`` as softmax attention with a score mod and mask.

    Returns ``(parts, "")`` or ``(None, reason)`` saying which equation breaks the pattern.
    """
    if len(program.eqns) != 3:
        return None, f"it has {len(program.eqns)} equations; softmax attention has 3 (S = QK, P = softmax(S), O = PV)"
    e_s, e_p, e_o = program.eqns
    inputs = {i.name: i.letters for i in program.inputs}

    def refs(expr):
        if expr.op == "mul" and all(s.op == "ref" for s in expr.src):
            return [(s.arg, tuple(v.arg for v in s.src)) for s in expr.src]
        return None

    qk = refs(e_s.rhs)
    if not (qk and e_s.letters == BHMN and [l for _, l in qk] == [QKV[0].letters, QKV[1].letters]
            and all(inputs.get(n) == l for n, l in qk)):
        return None, f"`{e_s}` is not the score contraction S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]"
    pv = refs(e_o.rhs)
    if not (pv and e_o.letters == ("b", "h", "m", "e") and pv[0] == (e_p.name, BHMN)
            and pv[1][1] == QKV[2].letters and inputs.get(pv[1][0]) == QKV[2].letters):
        return None, f"`{e_o}` is not the value contraction O[b,h,m,e] = P[b,h,m,n] * V[b,h,n,e]"
    if not (e_p.letters == BHMN and e_p.rhs.op == "softmax" and e_p.rhs.arg == "n"):
        return None, f"`{e_p}` is not a softmax over n"
    logits = e_p.rhs.src[0]
    s_ref = E.ref(e_s.name, BHMN)
    scales = {n.src[1].arg[1] for n in E.walk(logits)
              if n.op == "mul" and n.src[0] == s_ref and n.src[1].op == "param" and n.src[1].arg[0] == "scale"}
    scale = next(iter(scales)) if scales else 1.0
    score = E.substitute(logits, {E.binary("mul", s_ref, E.param("scale", scale)): E.var("score")} if scales
                         else {s_ref: E.var("score")})
    if any(n.op in ("ref",) + tuple(E.REDUCTIONS) for n in E.walk(score)):
        return None, f"the softmax argument in `{e_p}` reads tensors other than S * scale or reduces again"
    sink = e_p.rhs.src[1] if len(e_p.rhs.src) == 2 else None
    return SoftmaxParts(program.mask, None if score == E.var("score") else score, scale, sink,
                        qk[0][0], qk[1][0], pv[1][0]), ""
