"""The torch dtype of every expression, by torch's own type promotion.

A mask or score mod means what torch computes for it, so each node carries the dtype torch
would give it (``Expr.tdtype``): index letters are ``int64`` (as ``create_block_mask`` and
eager FlexAttention pass them), loads have their tensor's dtype, ``score`` is ``float32``
(the kernels' score). Python numbers in the user's code (constants, parameters) are
torch's *wrapped numbers*: they take part in promotion only by category (``int64 * 0.5``
is ``float32``, ``int32 + 1`` stays ``int32``), so they get the weak dtypes ``py_bool``,
``py_int``, ``py_float``; an expression of Python numbers alone is computed by Python.

The rule per op is not re-derived here: it is the op's torch function (the same table the
evaluator runs) applied to one-element CPU tensors (the meta device would not refuse
``softplus`` of an int), so promotion, bool arithmetic (``bool + bool`` is a logical or,
``bool - bool`` raises) and int/float results are torch's by construction.

>>> infer("add", ("bool", "bool")), infer("mul", ("int64", "py_float")), infer("add", ("int32", "py_int"))
('bool', 'float32', 'int32')
>>> infer("truediv", ("int64", "py_int")), infer("pow", ("py_int", "int64")), infer("add", ("py_int", "py_int"))
('float32', 'int64', 'py_int')
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F

from ..errors import TraceError, UnsupportedError
from .ops import Op
from .rewrite import walk

WEAK = {"py_bool": torch.bool, "py_int": torch.int64, "py_float": torch.float64}
STRONG = {name: getattr(torch, name) for name in
          ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")}
KIND = {**{n: "bool" for n in ("bool", "py_bool")}, **{n: "float" for n in ("float16", "bfloat16", "float32",
        "float64", "py_float")}, **{n: "int" for n in ("uint8", "int8", "int16", "int32", "int64", "py_int")}}
# Relative rounding error of one operation (a unit roundoff with margin for 1-ulp
# transcendental functions) and the largest finite value, per float dtype.
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52,
       "py_float": 2.0 ** -52}
FMAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38, "float32": 3.4028234663852886e38,
        "float64": 1.7976931348623157e308, "py_float": 1.7976931348623157e308}
# The range of each integer dtype (wrapping past it, as torch does).
IRANGE = {"bool": (0, 1), "py_bool": (0, 1), "uint8": (0, 255), "int8": (-128, 127), "int16": (-2 ** 15, 2 ** 15 - 1),
          "int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1), "py_int": (-2 ** 63, 2 ** 63 - 1)}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a value of dtype ``name`` is stored in (weak ones: Python's widths)."""
    return WEAK.get(name) or STRONG[name]


def is_weak(name: str) -> bool:
    return name in WEAK


def _minmax(fn, clamp_key):
    """torch.minimum/maximum; with a Python number, torch.clamp (what ``x.clamp(max=c)``
    traces to), which promotes as the number would."""
    def run(a, b):
        if isinstance(b, (bool, int, float)) and not isinstance(a, (bool, int, float)):
            a, b = b, a
        if isinstance(a, (bool, int, float)):
            if isinstance(a, bool) or b.dtype == torch.bool:  # clamp has no bool kernel; a bool min/max is and/or
                return fn(torch.as_tensor(a, dtype=torch.bool if isinstance(a, bool) else torch.int64, device=b.device), b)
            return torch.clamp(b, **{clamp_key: a})
        return fn(a, b)
    return run


def _where(c, a, b):
    if not isinstance(c, torch.Tensor):  # a constant condition (True) is still a tensor to torch.where
        c = torch.as_tensor(c, device=next(x.device for x in (a, b) if isinstance(x, torch.Tensor)))
    return torch.where(c, a, b)


# The torch function of each pointwise op: dtype inference runs it on one-element tensors, the
# evaluator on real ones. Binary operators are Python's, as the user wrote them: they
# accept a Python number on either side (``1 - q_idx``) and torch's ``//`` floors.
TORCH_FN = {
    Op.ADD: operator.add, Op.SUB: operator.sub, Op.MUL: operator.mul, Op.TRUEDIV: operator.truediv,
    Op.FLOORDIV: operator.floordiv, Op.MOD: operator.mod, Op.POW: operator.pow,
    Op.MINIMUM: _minmax(torch.minimum, "max"), Op.MAXIMUM: _minmax(torch.maximum, "min"),
    Op.LT: operator.lt, Op.LE: operator.le, Op.GT: operator.gt, Op.GE: operator.ge, Op.EQ: operator.eq,
    Op.NE: operator.ne, Op.AND: operator.and_, Op.OR: operator.or_, Op.XOR: operator.xor,
    Op.LSHIFT: operator.lshift, Op.RSHIFT: operator.rshift,
    Op.NEG: torch.neg, Op.ABS: torch.abs, Op.INVERT: torch.bitwise_not,
    Op.EXP: torch.exp, Op.EXP2: torch.exp2, Op.LOG: torch.log, Op.LOG2: torch.log2, Op.SQRT: torch.sqrt,
    Op.TANH: torch.tanh, Op.SIGMOID: torch.sigmoid, Op.RELU: torch.relu, Op.ELU: F.elu, Op.SOFTPLUS: F.softplus,
    Op.LOGSIGMOID: F.logsigmoid, Op.FLOOR: torch.floor, Op.CEIL: torch.ceil,
    Op.FLOAT: lambda x: x.to(torch.float32), Op.INT: lambda x: x.to(torch.int64),
    Op.WHERE: _where,
}
# A Python number of each weak dtype, as the user's code passes it to torch.
_SAMPLE = {"py_bool": True, "py_int": 1, "py_float": 1.0}


def _operand(name: str, all_weak: bool):
    if name in WEAK and not all_weak:
        return _SAMPLE[name]
    return torch.ones((), dtype=torch_dtype(name), device="cpu") if all_weak else \
        torch.ones(1, dtype=torch_dtype(name), device="cpu")


def _weak(dtype: torch.dtype) -> str:
    return "py_bool" if dtype == torch.bool else "py_float" if dtype.is_floating_point else "py_int"


@functools.cache
def infer(op: Op | str, operands: tuple[str, ...]) -> str:
    """The dtype of ``op`` applied to operands of dtypes ``operands``, as torch gives it;
    torch's refusal (``bool - bool``, ``~`` of a float) becomes a TraceError."""
    op = Op(op)
    all_weak = all(x in WEAK for x in operands)
    args = [_operand(x, all_weak) for x in operands]
    if op == Op.WHERE:
        args[0] = torch.ones(() if all_weak else 1, dtype=torch.bool, device="cpu")
    try:
        out = TORCH_FN[op](*args)
    except (RuntimeError, TypeError, NotImplementedError) as err:
        raise TraceError(f"torch refuses {op.value} on {' and '.join(operands)} operands: "
                         f"{str(err).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor):  # Python numbers combined by Python
        out = torch.as_tensor(out)
    return _weak(out.dtype) if all_weak else str(out.dtype).removeprefix("torch.")


# Float ops that no two implementations round alike: torch's eager CPU exp (SLEEF), the
# one inductor compiles for FlexAttention, Triton's and CUDA's differ in the last bit, so
# a mask comparing their results can keep different pairs on different backends (compiled
# FlexAttention on the CPU gets ``exp(q_idx * 0.1) > exp(kv_idx * 0.1)`` wrong in rows 3
# and 4). + - * / sqrt floor ceil and % on floats are correctly rounded (IEEE 754)
# everywhere and stay faithful.
INEXACT = frozenset({Op.EXP, Op.EXP2, Op.LOG, Op.LOG2, Op.TANH, Op.SIGMOID, Op.ELU, Op.SOFTPLUS, Op.LOGSIGMOID})


def unfaithful(mask) -> object | None:
    """The first node of a mask whose float result a kernel cannot reproduce bit for bit
    (a transcendental function, or a power with a float operand), or None.

    >>> from attncomp.ir import expr as E
    >>> m, n = E.var("m"), E.var("n")
    >>> str(unfaithful(E.binary("gt", E.unary("exp", m), n)))
    'exp(m)'
    >>> unfaithful(E.binary("gt", E.binary("mul", m, E.const(0.5)), n)) is None
    True
    """
    for node in walk(mask):
        if node.op in INEXACT or (node.op == Op.POW and KIND[node.tdtype] == "float" and not is_weak(node.tdtype)):
            return node
    return None


def refuse_unfaithful(mask, backend: str, variant: str) -> None:
    """Raise an UnsupportedError naming the mask's first unfaithful node (see ``unfaithful``)."""
    node = None if mask is None else unfaithful(mask)
    if node is None:
        return
    from .printer import format_expr  # late import: the printer reads Expr, which reads this module

    raise UnsupportedError(f"the mask computes `{format_expr(node, names={'m': 'q_idx', 'n': 'kv_idx'})}` in "
                           f"{node.tdtype}, which {backend} does not round as torch does, so a comparison of it "
                           "could keep different pairs than torch", variant=variant,
                           hint="Use backend='reference' (torch itself), or compare the arguments instead "
                                "(exp(a) > exp(b) is a > b where nothing overflows)")
