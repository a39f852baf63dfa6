"""Tracing FlexAttention-style functions into expressions.

``mask(b, h, q_idx, kv_idx)`` and ``score(score, b, h, q_idx, kv_idx)`` are called once
with proxies; what they return is the IR. Tensors they capture (closures, globals,
helpers' locals) become runtime tensors named after the variable that holds them, with
the captured value as the default at call time.
"""

from __future__ import annotations

import inspect
import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from ..errors import AttncompError, Location, TraceError, _library_dirs, function_location, located, user_location
from . import expr as E
from .proxy import Proxy, lift

_STATE: ContextVar[TraceState | None] = ContextVar("attncomp_trace", default=None)

MASK_ARGS = ("b", "h", "q_idx", "kv_idx")
SCORE_ARGS = ("score",) + MASK_ARGS


@dataclass
class TraceState:
    """Tensors captured while tracing one variant (shared by its mask and score mod)."""

    variant: str
    captured: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)

    def bindings(self) -> tuple[tuple[str, torch.Tensor], ...]:
        return tuple(self.captured.values())


@contextmanager
def tracing(variant: str, reserved: set[str] = frozenset()):
    state = TraceState(variant, reserved=set(reserved))
    token = _STATE.set(state)
    try:
        yield state
    finally:
        _STATE.reset(token)


def _torch_dtype_name(t: torch.Tensor) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in E.TENSOR_DTYPES:
        raise TraceError(located(f"captured tensor of dtype {t.dtype} is not supported", user_location()))
    return name


def _find_name(tensor: torch.Tensor) -> str | None:
    """The variable that holds ``tensor`` in the user's innermost frame that has one."""
    lib = _library_dirs()
    frame = sys._getframe(1)
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(lib):
            for scope in (frame.f_locals, frame.f_globals):
                for key, value in list(scope.items()):
                    if value is tensor and key.isidentifier() and not key.startswith("_"):
                        return key
        frame = frame.f_back
    return None


def capture(tensor: torch.Tensor) -> E.TensorDecl:
    """Register a tensor captured by a traced function as a runtime tensor."""
    state = _STATE.get()
    if state is None:
        raise TraceError(located(
            "torch tensors can only be captured inside a mask or score function passed to "
            "ac.attention / ac.cascade; declare a runtime tensor with ac.tensor(...) instead",
            user_location()))
    if id(tensor) not in state.captured:
        base = _find_name(tensor) or "tensor"
        name, k = base, 1
        taken = state.reserved | {n for n, _ in state.captured.values()}
        while name in taken or name in ("b", "h", "m", "n", "score", "mask", "scale"):
            name, k = f"{base}_{k}", k + 1
        state.captured[id(tensor)] = (name, tensor)
    name, _ = state.captured[id(tensor)]
    return E.TensorDecl(name, tuple(int(s) for s in tensor.shape), _torch_dtype_name(tensor))


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
    raise TraceError(located(
        f"{variant}: {kind} function {fn_name}({got}) takes {len(positional)} argument(s), but a "
        f"FlexAttention {kind}_mod takes {len(names)}: {kind}({', '.join(names)})",
        function_location(fn)))


def _traceback_location(tb) -> Location | None:
    lib, where = _library_dirs(), None
    while tb is not None:
        fname = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not fname.startswith(lib):
            where = Location(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def trace_function(fn, kind: str, variant: str) -> E.Expr:
    """Trace a ``mask`` (4 args) or ``score`` (5 args) function into an Expr.

    >>> print(trace_function(lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx < 8), "mask", "demo"))
    (m >= n) & (m - n < 8)
    """
    names = MASK_ARGS if kind == "mask" else SCORE_ARGS
    _check_arity(fn, names, kind, variant)
    args = [Proxy(E.var(x)) for x in ("score",) * (kind == "score") + ("b", "h", "m", "n")]
    fn_name = getattr(fn, "__name__", "function")
    try:
        result = fn(*args)
    except AttncompError as err:
        raise type(err)(f"{variant}: {err}") from None
    except Exception as err:  # the user's own bug, or a torch call that rejected a proxy
        raise TraceError(located(
            f"{variant}: tracing {kind} function {fn_name} failed: {type(err).__name__}: {err}",
            _traceback_location(err.__traceback__) or function_location(fn))) from None
    if isinstance(result, torch.Tensor) and not isinstance(result, Proxy):
        if result.dim() == 0:
            result = result.item()
        else:
            raise TraceError(located(
                f"{variant}: {kind} function {fn_name} returned a tensor of shape {tuple(result.shape)} "
                "that does not depend on the indices; return an expression of b, h, q_idx, kv_idx",
                function_location(fn)))
    try:
        out = lift(result)
    except AttncompError:
        raise TraceError(located(
            f"{variant}: {kind} function {fn_name} returned {result!r}, not an expression",
            function_location(fn))) from None
    if kind == "mask" and out.dtype != E.BOOL:
        raise TraceError(located(
            f"{variant}: mask function {fn_name} must return a boolean expression, but returned "
            f"the {out.dtype} expression {out}", function_location(fn)))
    if kind == "score" and out.dtype == E.BOOL:
        raise TraceError(located(
            f"{variant}: score function {fn_name} returned the boolean {out}; a score mod returns a "
            "number (use torch.where(cond, score, -float('inf')) to mask)", function_location(fn)))
    return out


class RuntimeTensor:
    """A declared runtime tensor; index it inside masks and score mods (``doc[b, q_idx]``)."""

    def __init__(self, decl: E.TensorDecl):
        self.decl = decl

    def __getitem__(self, index) -> Proxy:
        index = index if isinstance(index, tuple) else (index,)
        return Proxy(E.load(self.decl, tuple(lift(ix) for ix in index)))

    def __repr__(self) -> str:
        return f"ac.tensor({self.decl})"


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
    where = user_location()
    if not (isinstance(name, str) and name.isidentifier()):
        raise TraceError(located(f"tensor name {name!r} is not an identifier", where))
    if dtype not in E.TENSOR_DTYPES:
        raise TraceError(located(f"tensor {name}: unknown dtype {dtype!r}; use one of {sorted(E.TENSOR_DTYPES)}", where))
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    for d in dims:
        if not ((isinstance(d, str) and d.isidentifier()) or (isinstance(d, int) and not isinstance(d, bool) and d > 0)):
            raise TraceError(located(f"tensor {name}: dimension {d!r} must be a name like 'B' or a positive int", where))
    return RuntimeTensor(E.TensorDecl(name, dims, dtype))


def param(name: str, value: int | float) -> Proxy:
    """A named scalar parameter usable in masks and score mods; its value can be changed
    later with ``program.with_params(name=...)``.

    >>> import attncomp as ac
    >>> W = ac.param("window", 256)
    >>> print(ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx - kv_idx < W).mask)
    m - n < window
    """
    if not (isinstance(name, str) and name.isidentifier()):
        raise TraceError(located(f"parameter name {name!r} is not an identifier", user_location()))
    return Proxy(E.param(name, value))
