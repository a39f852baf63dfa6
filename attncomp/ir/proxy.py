"""Symbolic proxies: the ``b, h, q_idx, kv_idx, score`` that traced functions receive.

A ``Proxy`` wraps an ``Expr`` and overloads Python operators, so ``q_idx >= kv_idx``
builds ``ge(m, n)``. It also implements ``__torch_function__``, so FlexAttention-style
code that calls ``torch.where``, ``torch.abs``, ``x.clamp(...)`` or indexes a captured
tensor (``doc_ids[b, q_idx]``) traces unchanged; the torch calls are mapped to IR ops by
the table in :mod:`attncomp.ir.torch_ops`.

Using a proxy where Python needs a concrete value (``and``, ``or``, ``if``, ``bool()``,
``int()``, Python's ``min``/``max``) raises an error at the user's line that says what
to write instead.
"""

from __future__ import annotations

import torch

from ..errors import TraceError
from . import expr as E
from .capture import capture

_BOOL_HINT = (
    "Use `&`, `|`, `~` (with parentheses: `(q_idx >= kv_idx) & (...)`), torch.where(cond, a, b), "
    "torch.minimum/torch.maximum"
)


def show(e: E.Expr) -> str:
    """An expression as the user wrote it: with ``q_idx``/``kv_idx``, not ``m``/``n``."""
    from .printer import format_expr

    return format_expr(e, names=E.FLEX_NAMES)


class Proxy:
    """A symbolic value during tracing; ``.expr`` is the IR it stands for."""

    __slots__ = ("expr",)

    def __init__(self, expr: E.Expr):
        self.expr = expr

    def __repr__(self) -> str:
        return f"Proxy({self.expr})"

    # --- Python operators --------------------------------------------------------------
    def __add__(self, o): return _bin("add", self, o)
    def __radd__(self, o): return _bin("add", o, self)
    def __sub__(self, o): return _bin("sub", self, o)
    def __rsub__(self, o): return _bin("sub", o, self)
    def __mul__(self, o): return _bin("mul", self, o)
    def __rmul__(self, o): return _bin("mul", o, self)
    def __truediv__(self, o): return _bin("truediv", self, o)
    def __rtruediv__(self, o): return _bin("truediv", o, self)
    def __floordiv__(self, o): return _bin("floordiv", self, o)
    def __rfloordiv__(self, o): return _bin("floordiv", o, self)
    def __mod__(self, o): return _bin("mod", self, o)
    def __rmod__(self, o): return _bin("mod", o, self)
    def __pow__(self, o): return _bin("pow", self, o)
    def __rpow__(self, o): return _bin("pow", o, self)
    def __and__(self, o): return _bin("and", self, o)
    def __rand__(self, o): return _bin("and", o, self)
    def __or__(self, o): return _bin("or", self, o)
    def __ror__(self, o): return _bin("or", o, self)
    def __xor__(self, o): return _bin("xor", self, o)
    def __rxor__(self, o): return _bin("xor", o, self)
    def __lshift__(self, o): return _bin("lshift", self, o)
    def __rlshift__(self, o): return _bin("lshift", o, self)
    def __rshift__(self, o): return _bin("rshift", self, o)
    def __rrshift__(self, o): return _bin("rshift", o, self)
    def __lt__(self, o): return _bin("lt", self, o)
    def __le__(self, o): return _bin("le", self, o)
    def __gt__(self, o): return _bin("gt", self, o)
    def __ge__(self, o): return _bin("ge", self, o)
    def __eq__(self, o): return _bin("eq", self, o)  # type: ignore[override]
    def __ne__(self, o): return _bin("ne", self, o)  # type: ignore[override]
    def __neg__(self): return Proxy(E.unary("neg", self.expr))
    def __pos__(self): return self
    def __abs__(self): return Proxy(E.unary("abs", self.expr))
    def __invert__(self): return Proxy(E.unary("invert", self.expr))

    __hash__ = None  # type: ignore[assignment]

    # --- places Python needs a concrete value ------------------------------------------
    def __bool__(self):
        raise TraceError(f"a symbolic index or score was used as a Python bool (bool({show(self.expr)})); "
                         "attention functions are traced, not run, so Python's `and`, `or`, `not`, `if`, `min`, "
                         "`max` and chained comparisons cannot see the values", hint=_BOOL_HINT)

    def _concrete(self, what: str):
        raise TraceError(f"{what}({show(self.expr)}) needs a concrete value, but attention functions are traced "
                         "symbolically", hint="Use torch ops (torch.floor, .to(torch.int64), torch.log, ...) instead")

    def __int__(self): self._concrete("int")
    def __float__(self): self._concrete("float")
    def __index__(self): self._concrete("index")
    def __round__(self, n=None): self._concrete("round")
    def __floor__(self): self._concrete("math.floor")
    def __ceil__(self): self._concrete("math.ceil")
    def __trunc__(self): self._concrete("math.trunc")
    def __len__(self): self._concrete("len")
    def __iter__(self): self._concrete("iter")

    def __getitem__(self, index):
        raise TraceError(f"cannot index the symbolic value {show(self.expr)}",
                         hint="Index a tensor with it instead (e.g. doc_ids[b, q_idx])")

    # --- torch integration -------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from .torch_ops import dispatch  # late import: the table builds Proxies, so it imports this module

        return dispatch(func, args, kwargs or {})

    def __getattr__(self, name: str):
        from .torch_ops import method  # late import: as in __torch_function__

        return method(self, name)


def lift(x) -> E.Expr:
    """The IR for a traced value: a Proxy, a Python number, or a captured tensor."""
    if isinstance(x, Proxy):
        return x.expr
    if isinstance(x, (bool, int, float)):
        return E.const(x)
    if type(x).__module__ == "numpy" and hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return E.const(x.item())
    if isinstance(x, torch.Tensor):
        if x.dim() != 0:
            raise TraceError(f"a captured tensor of shape {tuple(x.shape)} was used directly in an expression",
                             hint="Index it with the symbolic indices (e.g. bias[h, q_idx - kv_idx])")
        return E.load(capture(x), ())
    raise TraceError(f"cannot use {type(x).__name__} {x!r} in an attention expression")


def _bin(op: str, a, b) -> Proxy:
    return Proxy(E.binary(op, lift(a), lift(b)))
