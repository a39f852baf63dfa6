"""The torch calls FlexAttention users write, mapped to IR ops.

``Proxy.__torch_function__`` and proxy method calls (``q_idx.clamp(0, 5)``) land here.
Each entry takes the call's positional and keyword arguments and returns a Proxy. Calls
with C semantics are rewritten into Python-semantics IR: ``torch.fmod`` and
``div(rounding_mode="trunc")`` truncate toward zero, expressed with floor ops.
"""

from __future__ import annotations

import torch

from ..errors import TraceError
from . import expr as E
from .capture import capture
from .proxy import Proxy, lift


def _b(op, reflected=False):
    def build(args, kwargs):
        a, b = args[0], (args[1] if len(args) > 1 else kwargs.get("other"))
        if reflected:
            a, b = b, a
        return Proxy(E.binary(op, lift(a), lift(b)))
    return build


def _u(op, **defaults):
    """A unary op; ``defaults`` are the extra arguments of the torch call (``alpha`` of
    elu), which must keep their default values (the op has no parameters)."""
    def build(args, kwargs):
        given = dict(zip(defaults, args[1:])) | {k: v for k, v in kwargs.items() if k in defaults}
        changed = [f"{k}={v!r}" for k, v in given.items() if v != defaults[k]]
        if changed:
            raise TraceError(f"{op} with {', '.join(changed)} is not supported (only the defaults "
                             f"{', '.join(f'{k}={v!r}' for k, v in defaults.items())})", hint="Write it with torch.where")
        return Proxy(E.unary(op, lift(args[0])))
    return build


def _truthy(x: E.Expr) -> E.Expr:
    return x if x.dtype == E.BOOL else E.binary("ne", x, E.const(0))


def _logical(op):
    return lambda args, kwargs: Proxy(E.binary(op, _truthy(lift(args[0])), _truthy(lift(args[1]))))


def _trunc_div(a: E.Expr, b: E.Expr) -> E.Expr:
    """C division a/b rounded toward zero, from floor division: floor, then add one back
    when the signs differ and the division is inexact."""
    q = E.binary("floordiv", a, b)
    inexact = E.binary("ne", E.binary("mod", a, b), E.const(0))
    signs_differ = E.binary("ne", E.binary("lt", a, E.const(0)), E.binary("lt", b, E.const(0)))
    return E.where(E.binary("and", inexact, signs_differ), E.binary("add", q, E.const(1)), q)


def _div(args, kwargs):
    a, b = lift(args[0]), lift(args[1] if len(args) > 1 else kwargs["other"])
    mode = kwargs.get("rounding_mode")
    if mode is None:
        return Proxy(E.binary("truediv", a, b))
    if mode == "floor":
        return Proxy(E.binary("floordiv", a, b))
    return Proxy(_trunc_div(a, b))


def _fmod(args, kwargs):
    # fmod(a, b) = a - trunc(a / b) * b  (sign of the dividend, as in C)
    a, b = lift(args[0]), lift(args[1])
    return Proxy(E.binary("sub", a, E.binary("mul", _trunc_div(a, b), b)))


def _minmax(op):
    def build(args, kwargs):
        if len(args) != 2 or not all(isinstance(x, (Proxy, torch.Tensor)) for x in args):
            raise TraceError(f"torch.{'min' if op == 'minimum' else 'max'} with a dim or one argument is a reduction",
                             hint=f"For the elementwise form use torch.{op}(a, b) or torch.clamp")
        return Proxy(E.binary(op, lift(args[0]), lift(args[1])))
    return build


def _clamp(lo_key="min", hi_key="max"):
    def build(args, kwargs):
        x = lift(args[0])
        lo = args[1] if len(args) > 1 else kwargs.get(lo_key)
        hi = args[2] if len(args) > 2 else kwargs.get(hi_key)
        if lo is not None:
            x = E.binary("maximum", x, lift(lo))
        if hi is not None:
            x = E.binary("minimum", x, lift(hi))
        return Proxy(x)
    return build


def _clamp_one(op):
    def call(args, kwargs):
        bound = args[1] if len(args) > 1 else kwargs["min" if op == "maximum" else "max"]
        return Proxy(E.binary(op, lift(args[0]), lift(bound)))
    return call


def _where(args, kwargs):
    cond, a, b = (lift(x) for x in (list(args) + [kwargs.get("input"), kwargs.get("other")])[:3])
    return Proxy(E.where(cond, a, b))


def _tensor_where(args, kwargs):  # x.where(cond, y) == torch.where(cond, x, y)
    return Proxy(E.where(lift(args[1]), lift(args[0]), lift(args[2] if len(args) > 2 else kwargs["other"])))


def _cast_to(x: E.Expr, dtype) -> E.Expr:
    if dtype is None:
        return x
    if dtype == torch.bool:
        return _truthy(x)
    if dtype.is_floating_point:
        return x if x.dtype == E.FLOAT else E.unary("float", x)
    return x if x.dtype == E.INT else E.unary("int", x)


def _to(args, kwargs):
    dtype = kwargs.get("dtype")
    for a in args[1:]:
        if isinstance(a, torch.dtype):
            dtype = a
    return Proxy(_cast_to(lift(args[0]), dtype))


def _cast(dtype):
    return lambda args, kwargs: Proxy(_cast_to(lift(args[0]), dtype))


def _full_like(value=None):
    def build(args, kwargs):
        v = value if value is not None else (args[1] if len(args) > 1 else kwargs["fill_value"])
        dtype = kwargs.get("dtype")
        like = lift(args[0])
        if dtype is not None:
            v = bool(v) if dtype == torch.bool else (float(v) if dtype.is_floating_point else int(v))
        elif like.dtype == E.FLOAT:
            v = float(v)
        return Proxy(E.const(v))
    return build


def _new_full(value=None):
    """``x.new_ones(size, dtype=...)`` and friends: a scalar constant (FlexAttention's
    ``noop_mask`` and ``and_masks`` start from one)."""
    def build(args, kwargs):
        v = value if value is not None else (args[2] if len(args) > 2 else kwargs["fill_value"])
        dtype = kwargs.get("dtype") or TORCH_DTYPE[lift(args[0]).dtype]
        return Proxy(E.const(bool(v) if dtype == torch.bool else float(v) if dtype.is_floating_point else int(v)))
    return build


def _getitem(args, kwargs):
    tensor, index = args
    if not isinstance(tensor, torch.Tensor):
        raise TraceError("only captured torch tensors can be indexed symbolically")
    index = index if isinstance(index, tuple) else (index,)
    for ix in index:
        if isinstance(ix, (slice, type(Ellipsis), type(None), list)):
            raise TraceError(f"indexing a captured tensor with {ix!r} is not supported",
                             hint="Give one integer expression per dimension (e.g. doc_ids[b, q_idx])")
    return Proxy(E.load(capture(tensor), tuple(lift(ix) for ix in index)))


TABLE = {}
for _names, _fn in [
    (("add", "__add__", "__iadd__"), _b("add")), (("__radd__",), _b("add", True)),
    (("sub", "subtract", "__sub__", "__isub__"), _b("sub")), (("__rsub__", "rsub"), _b("sub", True)),
    (("mul", "multiply", "__mul__", "__imul__"), _b("mul")), (("__rmul__",), _b("mul", True)),
    (("div", "divide", "true_divide", "__truediv__", "__div__"), _div),
    (("__rtruediv__", "__rdiv__"), _b("truediv", True)),
    (("floor_divide", "__floordiv__"), _b("floordiv")), (("__rfloordiv__",), _b("floordiv", True)),
    (("remainder", "__mod__"), _b("mod")), (("__rmod__",), _b("mod", True)), (("fmod",), _fmod),
    (("pow", "__pow__", "float_power"), _b("pow")), (("__rpow__",), _b("pow", True)),
    (("minimum", "fmin"), _b("minimum")), (("maximum", "fmax"), _b("maximum")),
    (("min",), _minmax("minimum")), (("max",), _minmax("maximum")),
    (("eq", "__eq__"), _b("eq")), (("ne", "not_equal", "__ne__"), _b("ne")),
    (("lt", "less", "__lt__"), _b("lt")), (("le", "less_equal", "__le__"), _b("le")),
    (("gt", "greater", "__gt__"), _b("gt")), (("ge", "greater_equal", "__ge__"), _b("ge")),
    (("logical_and",), _logical("and")), (("logical_or",), _logical("or")), (("logical_xor",), _logical("xor")),
    (("logical_not",), lambda a, k: Proxy(E.unary("invert", _truthy(lift(a[0]))))),
    (("bitwise_and", "__and__", "__iand__"), _b("and")), (("__rand__",), _b("and", True)),
    (("bitwise_or", "__or__", "__ior__"), _b("or")), (("__ror__",), _b("or", True)),
    (("bitwise_xor", "__xor__"), _b("xor")), (("__rxor__",), _b("xor", True)),
    (("bitwise_not", "__invert__"), _u("invert")),
    (("bitwise_left_shift", "__lshift__"), _b("lshift")), (("__rlshift__",), _b("lshift", True)),
    (("bitwise_right_shift", "__rshift__"), _b("rshift")), (("__rrshift__",), _b("rshift", True)),
    (("neg", "negative", "__neg__"), _u("neg")), (("abs", "absolute", "__abs__"), _u("abs")),
    (("positive", "__pos__"), lambda a, k: Proxy(lift(a[0]))),
    (("where",), _where), (("clamp", "clip"), _clamp()),
    (("clamp_min",), _clamp_one("maximum")), (("clamp_max",), _clamp_one("minimum")),
    (("exp",), _u("exp")), (("exp2",), _u("exp2")), (("log",), _u("log")), (("log2",), _u("log2")),
    (("sqrt",), _u("sqrt")), (("tanh",), _u("tanh")), (("sigmoid",), _u("sigmoid")),
    (("relu",), _u("relu")), (("elu",), _u("elu", alpha=1.0)),
    (("softplus",), _u("softplus", beta=1.0, threshold=20.0)), (("logsigmoid", "log_sigmoid"), _u("logsigmoid")),
    (("floor",), _u("floor")), (("ceil",), _u("ceil")),
    (("rsqrt",), lambda a, k: Proxy(E.binary("truediv", E.const(1.0), E.unary("sqrt", lift(a[0]))))),
    (("reciprocal",), lambda a, k: Proxy(E.binary("truediv", E.const(1.0), lift(a[0])))),
    (("square",), lambda a, k: Proxy(E.binary("mul", lift(a[0]), lift(a[0])))),
    (("to",), _to), (("type_as",), lambda a, k: Proxy(_cast_to(lift(a[0]), a[1].dtype))),
    (("float", "double", "half", "bfloat16"), _cast(torch.float32)),
    (("int", "long", "short"), _cast(torch.int64)), (("bool",), _cast(torch.bool)),
    (("new_ones",), _new_full(1)), (("new_zeros",), _new_full(0)), (("new_full",), _new_full()),
    (("full_like",), _full_like()), (("zeros_like",), _full_like(0)), (("ones_like",), _full_like(1)),
    (("__getitem__",), _getitem),
]:
    for _name in _names:
        TABLE[_name] = _fn


TORCH_DTYPE = {E.BOOL: torch.bool, E.INT: torch.int64, E.FLOAT: torch.float32}
# Tensor attributes traced code may read; a traced value is a scalar on the CPU.
ATTRIBUTES = {"dtype": lambda p: TORCH_DTYPE[p.expr.dtype], "device": lambda p: torch.device("cpu"),
              "shape": lambda p: torch.Size([]), "ndim": lambda p: 0}


def dispatch(func, args, kwargs):
    """Map one torch call with proxy arguments to a Proxy."""
    if func is torch.Tensor.where:
        return _tensor_where(args, kwargs)
    name = getattr(func, "__name__", str(func))
    fn = TABLE.get(name)
    if fn is None:
        raise TraceError(f"torch.{name} is not supported in masks and score mods",
                         hint="Supported calls include where, abs, minimum, maximum, clamp, logical_and/or/not, "
                              "exp, log, tanh, sigmoid, sqrt, floor_divide, remainder and indexing captured tensors")
    return fn(args, kwargs)


def method(proxy: Proxy, name: str):
    """``proxy.name``: a tensor attribute, or the tensor method of that name bound to the proxy."""
    if name in ATTRIBUTES:
        return ATTRIBUTES[name](proxy)
    if name.startswith("__") or (name not in TABLE and name != "where"):
        raise AttributeError(name)
    if name == "where":
        return lambda *a, **k: _tensor_where((proxy,) + a, k)
    return lambda *a, **k: TABLE[name]((proxy,) + a, k)
