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
from .ops import Op

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

    # Python operators are installed from the tables below the class.
    def __pos__(self): return self

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


def _bin(op: Op, a, b) -> Proxy:
    return Proxy(E.binary(op, lift(a), lift(b)))


# Python's operators and the ops they build: ``a + b`` is ``add(a, b)``, ``2 + a`` (the
# reflected ``__radd__``) is ``add(2, a)``; comparisons reflect into each other instead.
BINARY_OPERATORS = {
    "add": Op.ADD, "sub": Op.SUB, "mul": Op.MUL, "truediv": Op.TRUEDIV, "floordiv": Op.FLOORDIV, "mod": Op.MOD,
    "pow": Op.POW, "and": Op.AND, "or": Op.OR, "xor": Op.XOR, "lshift": Op.LSHIFT, "rshift": Op.RSHIFT,
}
COMPARISON_OPERATORS = {"lt": Op.LT, "le": Op.LE, "gt": Op.GT, "ge": Op.GE, "eq": Op.EQ, "ne": Op.NE}
UNARY_OPERATORS = {"neg": Op.NEG, "abs": Op.ABS, "invert": Op.INVERT}

for _name, _op in BINARY_OPERATORS.items():
    setattr(Proxy, f"__{_name}__", lambda self, o, op=_op: _bin(op, self, o))
    setattr(Proxy, f"__r{_name}__", lambda self, o, op=_op: _bin(op, o, self))
for _name, _op in COMPARISON_OPERATORS.items():
    setattr(Proxy, f"__{_name}__", lambda self, o, op=_op: _bin(op, self, o))
for _name, _op in UNARY_OPERATORS.items():
    setattr(Proxy, f"__{_name}__", lambda self, op=_op: Proxy(E.unary(op, self.expr)))
