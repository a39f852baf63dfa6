"""Tracing FlexAttention-style functions into expressions.

``mask(b, h, q_idx, kv_idx)``, ``score(score, b, h, q_idx, kv_idx)`` and ``sink(b, h,
q_idx)`` (a softmax's sink logit) are called once with proxies; what they return is the IR. Tensors they capture (closures, globals,
helpers' locals) become runtime tensors named after the variable that holds them, with
the captured value as the default at call time.
"""

from __future__ import annotations

import inspect

import torch

from ..errors import AttncompError, TraceError, api_boundary, function_location, traceback_location
from . import expr as E
from .proxy import Proxy, lift, show

MASK_ARGS = ("b", "h", "q_idx", "kv_idx")
SCORE_ARGS = ("score",) + MASK_ARGS
SINK_ARGS = ("b", "h", "q_idx")
BLOCK_ARGS = ("b", "h", "q_idx", "kv_block")  # a selection's predicates: kv_block is the key block j


def _check_arity(fn, names: tuple[str, ...], kind: str, variant: str) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(required) <= len(names) and (varargs or len(positional) >= len(names)):
        return
    fn_name = getattr(fn, "__name__", repr(fn))
    got = ", ".join(p.name for p in positional)
    what = {"sink": "a sink function", "blocks": "a block predicate"}.get(kind, f"a FlexAttention {kind}_mod")
    raise TraceError(f"{kind} function {fn_name}({got}) takes {len(positional)} argument(s), but "
                     f"{what} takes {len(names)}: {kind}({', '.join(names)})",
                     variant=variant, location=function_location(fn))


def trace_function(fn, kind: str, variant: str) -> E.Expr:
    """Trace a ``mask`` (4 args), ``score`` (5 args) or ``sink`` (3 args) function into an Expr.

    >>> print(trace_function(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx < 8), "mask", "demo"))
    (m >= n) & (m - n < 8)
    """
    names = {"mask": MASK_ARGS, "score": SCORE_ARGS, "sink": SINK_ARGS, "blocks": BLOCK_ARGS}[kind]
    _check_arity(fn, names, kind, variant)
    args = [Proxy(E.var({"q_idx": "m", "kv_idx": "n", "kv_block": "j"}.get(x, x))) for x in names]
    fn_name = getattr(fn, "__name__", "function")
    try:
        result = fn(*args)
    except AttncompError as err:  # the boundary: the line in fn, and expressions as the user names them
        raise err.at(traceback_location(err.__traceback__) or function_location(fn), variant=variant,
                     show=show) from None
    except Exception as err:  # the user's own bug, or a torch call that rejected a proxy
        raise TraceError(f"tracing {kind} function {fn_name} failed: {type(err).__name__}: {err}", variant=variant,
                         location=traceback_location(err.__traceback__) or function_location(fn)) from None
    if isinstance(result, torch.Tensor) and not isinstance(result, Proxy):
        if result.dim() == 0:
            result = result.item()
        else:
            raise TraceError(f"{kind} function {fn_name} returned a tensor of shape {tuple(result.shape)} "
                             "that does not depend on the indices", hint="Return an expression of b, h, q_idx, kv_idx",
                             variant=variant, location=function_location(fn))
    try:
        out = lift(result)
    except AttncompError:
        raise TraceError(f"{kind} function {fn_name} returned {result!r}, not an expression", variant=variant,
                         location=function_location(fn)) from None
    try:
        E.check_depth(out, f"{kind} function {fn_name}")
    except AttncompError as err:
        raise err.at(function_location(fn), variant=variant) from None
    if kind in ("mask", "blocks") and out.dtype != E.BOOL:
        raise TraceError(f"{kind} function {fn_name} must return a boolean expression, but returned "
                         f"the {out.dtype} expression {out}", variant=variant, location=function_location(fn))
    if kind == "sink" and out.dtype == E.BOOL:
        raise TraceError(f"sink function {fn_name} returned the boolean {out}; a sink is a logit (a number)",
                         variant=variant, location=function_location(fn))
    if kind == "score" and out.dtype == E.BOOL:
        raise TraceError(f"score function {fn_name} returned the boolean {out}; a score mod returns a number",
                         hint="Use torch.where(cond, score, -float('inf')) to mask", variant=variant,
                         location=function_location(fn))
    return out


class RuntimeTensor:
    """A declared runtime tensor; index it inside masks and score mods (``doc[b, q_idx]``)."""

    def __init__(self, decl: E.TensorDecl):
        self.decl = decl

    @api_boundary
    def __getitem__(self, index) -> Proxy:
        index = index if isinstance(index, tuple) else (index,)
        return Proxy(E.load(self.decl, tuple(lift(ix) for ix in index)))

    def __repr__(self) -> str:
        return f"ac.tensor({self.decl})"


@api_boundary
def tensor(name: str, dims, dtype="int32") -> RuntimeTensor:
    """Declare a named runtime tensor read by masks or score mods.

    ``dims`` are names (``"B"`` batch, ``"H"`` query heads, others free but consistent)
    or integers; ``dtype`` a name such as ``"int32"`` or a torch dtype.

    >>> import attncomp as ac
    >>> doc = ac.tensor("doc", ("B", "L"), "int32")
    >>> print(doc[0, 5].expr)
    doc[0, 5]
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if not (isinstance(name, str) and name.isidentifier()):
        raise TraceError(f"tensor name {name!r} is not an identifier")
    if not isinstance(dtype, str) or dtype not in E.TENSOR_DTYPES:
        raise TraceError(f"tensor {name}: unknown dtype {dtype!r}; use one of {sorted(E.TENSOR_DTYPES)}")
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    for d in dims:
        if not ((isinstance(d, str) and d.isidentifier()) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)):
            raise TraceError(f"tensor {name}: dimension {d!r} must be a name like 'B' or a positive int")
    return RuntimeTensor(E.TensorDecl(name, dims, dtype))


@api_boundary
def param(name: str, value: int | float) -> Proxy:
    """A named scalar parameter usable in masks and score mods; its value can be changed
    later with ``program.with_params(name=...)``.

    >>> import attncomp as ac
    >>> W = ac.param("window", 256)
    >>> print(ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx - kv_idx < W).mask)
    m - n < window
    """
    if not (isinstance(name, str) and name.isidentifier()):
        raise TraceError(f"parameter name {name!r} is not an identifier")
    return Proxy(E.param(name, value))
