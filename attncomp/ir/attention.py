"""Building Programs: ``attention`` (softmax attention from mask/score functions) and
``cascade`` (any einsum cascade from text), and recognising softmax attention again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AttncompError, TraceError, function_location, located, user_location
from . import expr as E
from .parse import parse_program
from .program import Eqn, InputDecl, Program
from .trace import trace_function, tracing
from .verify import verify

BHMN = ("b", "h", "m", "n")
QKV = (InputDecl("Q", ("b", "h", "m", "d")), InputDecl("K", ("b", "h", "n", "d")), InputDecl("V", ("b", "h", "n", "e")))


@dataclass(frozen=True)
class SoftmaxParts:
    """Softmax attention ``softmax(score_mod(Q K^T * scale)) V`` under ``mask``.

    ``score`` is an expression of ``var("score")`` (None: the identity); ``scale`` is the
    value of the scale parameter (None: 1/sqrt(head_dim)); q, k, v name the inputs.
    """

    mask: E.Expr | None
    score: E.Expr | None
    scale: float | None
    q: str = "Q"
    k: str = "K"
    v: str = "V"


def softmax_program(parts: SoftmaxParts, name: str, bindings=(), source=None) -> Program:
    s_scaled = E.binary("mul", E.ref("S", BHMN), E.param("scale", parts.scale))
    logits = s_scaled if parts.score is None else E.substitute(parts.score, {E.var("score"): s_scaled})
    eqns = (
        Eqn("S", BHMN, E.binary("mul", E.ref("Q", QKV[0].letters), E.ref("K", QKV[1].letters))),
        Eqn("P", BHMN, E.reduce("softmax", "n", logits)),
        Eqn("O", ("b", "h", "m", "e"), E.binary("mul", E.ref("P", BHMN), E.ref("V", QKV[2].letters))),
    )
    program = Program(QKV, eqns, parts.mask, name=name, bindings=tuple(bindings), source=source)
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
    return SoftmaxParts(program.mask, None if score == E.var("score") else score, scale, qk[0][0], qk[1][0], pv[1][0]), ""


def _fn_name(fn) -> str | None:
    name = getattr(fn, "__name__", None)
    return None if name in (None, "<lambda>") else name


def _parts_of(arg, role: str, variant: str) -> SoftmaxParts:
    parts, why = match_softmax(arg)
    if parts is None:
        raise TraceError(located(f"{variant}: {role}={arg.name} is not softmax attention ({why})", user_location()))
    return parts


def attention(mask=None, score=None, *, scale: float | None = None, name: str | None = None) -> Program:
    """Softmax attention ``softmax(score(Q K^T * scale)) V`` restricted to ``mask``.

    ``mask(b, h, q_idx, kv_idx) -> bool`` and ``score(score, b, h, q_idx, kv_idx)`` are
    written exactly as for FlexAttention; either may also be a Program, whose mask or
    score mod is reused (``ac.attention(mask=sliding_window(256), score=softcap(30.0))``).

    >>> import attncomp as ac
    >>> spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, name="causal")
    >>> print(spec)
    # attncomp program: causal
    input Q[b,h,m,d], K[b,h,n,d], V[b,h,n,e]
    mask[b,h,m,n] = m >= n
    S[b,h,m,n] = Q * K
    P[b,h,m,n] = softmax[n](S * scale)
    O[b,h,m,e] = P * V
    <BLANKLINE>
    """
    where = user_location()
    variant = name or "+".join(n for n in (_fn_name(mask), _fn_name(score)) if n) or "attention"
    bindings: list = []
    mask_expr = score_expr = None
    if isinstance(mask, Program):
        mask_expr, bindings = mask.mask, list(mask.bindings)
    if isinstance(score, Program):
        score_expr = _parts_of(score, "score", variant).score
        bindings += [b for b in score.bindings if b not in bindings]
    reserved = {n for n, _ in bindings}
    with tracing(variant, reserved) as state:
        if mask is not None and not isinstance(mask, Program):
            if not callable(mask):
                raise TraceError(located(f"{variant}: mask must be a function (b, h, q_idx, kv_idx) or a Program, got {mask!r}", where))
            mask_expr = trace_function(mask, "mask", variant)
        if score is not None and not isinstance(score, Program):
            if not callable(score):
                raise TraceError(located(f"{variant}: score must be a function (score, b, h, q_idx, kv_idx) "
                                         f"or a Program, got {score!r}", where))
            score_expr = trace_function(score, "score", variant)
            if E.var("score") not in set(E.walk(score_expr)):
                raise TraceError(located(
                    f"{variant}: score function {_fn_name(score) or 'lambda'} ignores its score argument, so the "
                    f"attention weights would not depend on q.k (it returns {score_expr}); return an expression of score",
                    function_location(score)))
    if mask_expr is not None and mask_expr == E.const(True):
        mask_expr = None
    return softmax_program(SoftmaxParts(mask_expr, score_expr, scale), variant, bindings + list(state.bindings()), where)


def cascade(text: str, mask=None, score=None, params: dict | None = None, name: str | None = None) -> Program:
    """Parse an einsum cascade (syntax in :mod:`attncomp.ir.parse`) into a Program.

    ``mask`` and ``score`` are FlexAttention-style functions; the text calls the score
    function as ``score(x)``. ``params`` gives values to named scalars in the text.

    >>> import attncomp as ac
    >>> spec = ac.cascade('''
    ... S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
    ... O[b,h,m,e] = sigmoid(S * scale + bias) * V[b,h,n,e]
    ... ''', params={"bias": -4.0}, name="sigmoid")
    >>> spec.params
    {'scale': None, 'bias': -4.0}
    """
    where = user_location()
    variant = name or "cascade"
    if not isinstance(text, str):
        raise AttncompError(located(f"{variant}: ac.cascade expects the cascade as text, got {type(text).__name__}", where))
    with tracing(variant) as state:
        mask_expr = trace_function(mask, "mask", variant) if mask is not None else None
        score_expr = trace_function(score, "score", variant) if score is not None else None
    return parse_program(text, variant, mask_expr, score_expr, params, where, state.bindings())
