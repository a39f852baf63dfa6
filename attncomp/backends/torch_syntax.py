"""Printing IR expressions as torch code for FlexAttention ``mask_mod``/``score_mod``.

torch's ``//`` and ``%`` on integer tensors already floor like Python, so they print as
themselves. What needs care: ``min``/``max`` (``torch.minimum`` wants two tensors, so a
constant bound prints as ``torch.clamp``), ``~`` on integers (bitwise) versus booleans
(logical), ``int(x)`` (truncation, ``.long()``) and infinities (``float("inf")``). Parameters print as module constants in capitals.
"""

from __future__ import annotations

import math

from ..ir import expr as E
from ..ir.ops import Op
from ..ir.printer import PREC_ATOM, Syntax, format_expr, format_lets
from ..ir.rewrite import Pat, Rules, graph_rewrite

TORCH_CALLS = {
    Op.ABS: "torch.abs", Op.EXP: "torch.exp", Op.EXP2: "torch.exp2", Op.LOG: "torch.log", Op.LOG2: "torch.log2",
    Op.SQRT: "torch.sqrt", Op.TANH: "torch.tanh", Op.SIGMOID: "torch.sigmoid", Op.RELU: "torch.relu",
    Op.ELU: "torch.nn.functional.elu", Op.SOFTPLUS: "torch.nn.functional.softplus",
    Op.LOGSIGMOID: "torch.nn.functional.logsigmoid", Op.FLOOR: "torch.floor", Op.CEIL: "torch.ceil", Op.WHERE: "torch.where",
}


def constant_name(param: str) -> str:
    return param.upper()


def _const(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(value)


def _minmax(node: E.Expr, printer):
    a, b = node.src
    inner = a if b.op in ("const", "param") else None
    if node.op == "minimum" and inner is not None and inner.op == "maximum" and inner.src[1].op in ("const", "param"):
        x, lo = inner.src  # min(max(x, lo), hi) is clamp(x, lo, hi)
        return f"torch.clamp({printer.text(x, 0)}, {printer.text(lo, 0)}, {printer.text(b, 0)})", PREC_ATOM
    fn = "minimum" if node.op == "minimum" else "maximum"
    bound = "max" if node.op == "minimum" else "min"
    for x, c in ((a, b), (b, a)):
        if c.op in ("const", "param") and x.op not in ("const", "param"):
            return f"torch.clamp({printer.text(x, 0)}, {bound}={printer.text(c, 0)})", PREC_ATOM
    return f"torch.{fn}({printer.text(a, 0)}, {printer.text(b, 0)})", PREC_ATOM


def _cast(node: E.Expr, printer):
    x = printer.text(node.src[0], PREC_ATOM)
    return (f"{x}.to(torch.float32)" if node.op == "float" else f"{x}.long()"), PREC_ATOM


def _leaf(node: E.Expr, printer):
    """Parameters print as module constants; other leaves use the generic rules."""
    if node.op == "param":
        return constant_name(node.arg[0]), PREC_ATOM
    return None


def torch_syntax() -> Syntax:
    syntax = Syntax(calls=dict(TORCH_CALLS), const=_const)
    syntax.override.update({Op.MINIMUM: _minmax, Op.MAXIMUM: _minmax, Op.FLOAT: _cast, Op.INT: _cast})
    return syntax


def _float_operand(e: E.Expr) -> E.Expr | None:
    x = e.src[0]
    if e.op == Op.FLOAT or e.dtype != E.FLOAT or x.dtype == E.FLOAT:
        return None
    return e.with_src((E.unary("float", x),))


CASTS = Rules([(Pat(E.UNARY, name="e"), _float_operand)])


def explicit_casts(expr: E.Expr) -> E.Expr:
    """Every integer operand of float math (``exp``, ``elu``...) as ``float(...)``, the
    float32 torch computes it in, which Triton's ``tl.exp`` needs. (Bool arithmetic needs
    no cast: the IR means torch's, where ``bool + bool`` is a logical or.)

    >>> from attncomp.ir.expr import var, binary, unary
    >>> str(explicit_casts(unary("exp", binary("add", var("m"), binary("ge", var("m"), var("n"))))))
    'exp(float(m + (m >= n)))'
    """
    return graph_rewrite(expr, CASTS)


def torch_code(expr: E.Expr) -> str:
    """``expr`` as torch code over ``b, h, q_idx, kv_idx, score`` and runtime tensors.

    >>> from attncomp.ir.expr import var, const, binary
    >>> torch_code(binary("minimum", binary("sub", var("m"), const(3)), const(0)))
    'torch.clamp(q_idx - 3, max=0)'
    """
    return format_expr(explicit_casts(expr), torch_syntax(), names=E.FLEX_NAMES, leaf=_leaf)


def torch_lets(expr: E.Expr) -> tuple[list[tuple[str, str]], str]:
    """Like :func:`torch_code`, with shared subexpressions bound once (``t0 = ...``)."""
    return format_lets(explicit_casts(expr), torch_syntax(), names=E.FLEX_NAMES, leaf=_leaf)

