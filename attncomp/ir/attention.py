"""Building Programs: ``attention`` (softmax attention from mask/score functions) and
``cascade`` (any einsum cascade from text): the public entry points that trace and parse.
"""

from __future__ import annotations

import math

from ..errors import AttncompError, TraceError, api_boundary, function_location, user_location
from . import expr as E
from .capture import tracing
from .parse import parse_program
from .program import Program
from .proxy import lift
from .selection import POOLS, Selection
from .softmax import SoftmaxParts, match_softmax, softmax_program
from .trace import trace_function


def _fn_name(fn) -> str | None:
    name = getattr(fn, "__name__", None)
    return None if name in (None, "<lambda>") else name


def _check_name(name) -> None:
    if name is not None and not isinstance(name, str):
        raise AttncompError(f"name must be a string, got {type(name).__name__}")


def _parts_of(arg, role: str, variant: str) -> SoftmaxParts:
    parts, why = match_softmax(arg)
    if parts is None:
        raise TraceError(f"{role}={arg.name} is not softmax attention ({why})", variant=variant)
    return parts


@api_boundary
def attention(mask=None, score=None, *, sink=None, select: Selection | None = None, scale: float | None = None,
              name: str | None = None) -> Program:
    """Softmax attention ``softmax(score(Q K^T * scale)) V`` restricted to ``mask``.

    ``mask(b, h, q_idx, kv_idx) -> bool`` and ``score(score, b, h, q_idx, kv_idx)`` are
    written exactly as for FlexAttention; either may also be a Program, whose mask or
    score mod is reused (``ac.attention(mask=sliding_window(256), score=softcap(30.0))``).
    ``sink(b, h, q_idx)`` is a logit that joins each row's normalizer with no value vector
    (gpt-oss's learned attention sinks: ``sink=lambda b, h, q_idx: sinks[h]``); a Program
    with a sink lends it the same way. ``select`` (from :func:`selection`) chooses key blocks
    per query from the data (MoBA, NSA, Quest); the mask then applies inside them.

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
    _check_name(name)
    variant = name or "+".join(n for n in (_fn_name(mask), _fn_name(score)) if n) or "attention"
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale)):
        raise AttncompError(f"scale must be a finite number or None (1/sqrt(head_dim)), got {scale!r}", variant=variant)
    bindings: list = []
    mask_expr = score_expr = None
    if isinstance(mask, Program):
        mask_expr, bindings = mask.mask, list(mask.bindings)
    if isinstance(score, Program):
        score_expr = _parts_of(score, "score", variant).score
        bindings += [b for b in score.bindings if b not in bindings]
    sink_expr = None
    if isinstance(sink, Program):
        sink_expr = _parts_of(sink, "sink", variant).sink
        if sink_expr is None:
            raise TraceError(f"sink={sink.name} has no sink logit to reuse", variant=variant)
        bindings += [b for b in sink.bindings if b not in bindings]
    reserved = {n for n, _ in bindings}
    with tracing(variant, reserved) as state:
        if mask is not None and not isinstance(mask, Program):
            if not callable(mask):
                raise TraceError(f"mask must be a function (b, h, q_idx, kv_idx) or a Program, got {mask!r}",
                                 variant=variant)
            mask_expr = trace_function(mask, "mask", variant)
        if score is not None and not isinstance(score, Program):
            if not callable(score):
                raise TraceError(f"score must be a function (score, b, h, q_idx, kv_idx) or a Program, got {score!r}",
                                 variant=variant)
            score_expr = trace_function(score, "score", variant)
            if E.var("score") not in set(E.walk(score_expr)):
                raise TraceError(f"score function {_fn_name(score) or 'lambda'} ignores its score argument, so the "
                                 f"attention weights would not depend on q.k (it returns {score_expr})",
                                 hint="Return an expression of score", variant=variant,
                                 location=function_location(score))
        if sink is not None and not isinstance(sink, Program):
            if not callable(sink):
                raise TraceError(f"sink must be a function (b, h, q_idx) returning a logit, or a Program, got "
                                 f"{sink!r}", hint="For a learned per-head sink: sink=lambda b, h, q_idx: sinks[h]",
                                 variant=variant)
            sink_expr = trace_function(sink, "sink", variant)
    if mask_expr is not None and mask_expr == E.const(True):
        mask_expr = None
    if select is not None and not isinstance(select, Selection):
        raise AttncompError(f"select must be an ac.selection(...), got {type(select).__name__}", variant=variant)
    return softmax_program(SoftmaxParts(mask_expr, score_expr, scale, sink_expr), variant,
                           bindings + list(state.bindings()), where, selection=select)


@api_boundary
def selection(block, *, top_k=None, threshold=None, top_p=None, pool: str = "mean", eligible=None, forced=None,
              query_block=None, shared: bool = False, normalize: bool = False) -> Selection:
    """A data-dependent choice of key blocks per query (semantics: :mod:`attncomp.ir.selection`).

    ``block`` keys per block; exactly one of ``top_k`` (blocks), ``threshold`` (a gate value)
    and ``top_p`` (a share of the gate mass); ``pool`` one of mean, max, bounds (Quest);
    ``eligible`` and ``forced`` are functions ``(b, h, q_idx, kv_block) -> bool`` (None:
    every block / none); ``query_block``: one choice per block of that many queries, from
    their mean (None: per token); ``shared``: one choice per KV group; ``normalize``: gates
    as a softmax over candidates (NSA). Numbers may be ``ac.param``s.

    >>> import attncomp as ac
    >>> sel = ac.selection(64, top_k=4, eligible=lambda b, h, q_idx, kv_block: kv_block * 64 <= q_idx)
    >>> print(sel)
    select[b,h,m,j] = topk(mean(K), Q, k=4, block=64, eligible=j * 64 <= m)
    """
    rules = {"topk": top_k, "threshold": threshold, "top_p": top_p}
    given = [r for r, v in rules.items() if v is not None]
    if len(given) != 1:
        raise AttncompError(f"a selection takes exactly one of top_k, threshold, top_p; got {given or 'none'}")
    if pool not in POOLS:
        raise AttncompError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    for flag, value in (("shared", shared), ("normalize", normalize)):
        if not isinstance(value, bool):
            raise AttncompError(f"{flag} must be True or False, got {value!r}")
    rule = given[0]
    with tracing("selection") as state:
        preds = [trace_function(fn, "blocks", "selection") if fn is not None else None for fn in (eligible, forced)]
    if state.bindings():
        raise AttncompError("a selection's predicates cannot capture tensors yet; use ac.tensor(...) and pass it at "
                            "call time")
    count, size = (lift(x) for x in (rules[rule], block))
    return Selection(rule, pool, count, size, preds[0] if preds[0] is not None else E.const(True), preds[1],
                     shared=shared, normalize=normalize, query_block=lift(query_block) if query_block is not None
                     else None)


@api_boundary
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
    _check_name(name)
    variant = name or "cascade"
    if params is not None and not isinstance(params, dict):
        raise AttncompError(f"params must be a dict of parameter values by name, got {type(params).__name__}",
                            variant=variant)
    if not isinstance(text, str):
        raise AttncompError(f"ac.cascade expects the cascade as text, got {type(text).__name__}", variant=variant)
    with tracing(variant) as state:
        mask_expr = trace_function(mask, "mask", variant) if mask is not None else None
        score_expr = trace_function(score, "score", variant) if score is not None else None
    return parse_program(text, variant, mask_expr, score_expr, params, where, state.bindings())
