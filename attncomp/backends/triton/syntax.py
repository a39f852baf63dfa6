"""Printing IR expressions as Triton code, keeping Python's meaning.

Triton's ``//`` and ``%`` are C's (truncate toward zero). Where both operands are provably
non-negative (a small sign analysis: indices, non-negative constants, sums and products
of such, ``%`` by a positive divisor, ...) the two agree and plain operators print;
elsewhere the helpers ``floordiv``/``pymod`` emitted into the module restore floor
semantics. Runtime tensor loads become ``tl.load`` with a bounds mask; ``tanh`` is
``2 * sigmoid(2x) - 1`` (Triton has no tanh of its own); ``~`` on a boolean is ``== 0``.
"""

from __future__ import annotations

import math

from ...ir import expr as E
from ...ir.printer import PREC_ATOM, PREC_COMPARE, Syntax, format_expr
from ..torch_syntax import explicit_bool_casts

TL_CALLS = {
    "abs": "tl.abs", "exp": "tl.exp", "exp2": "tl.exp2", "log": "tl.log", "log2": "tl.log2", "sqrt": "tl.sqrt",
    "sigmoid": "tl.sigmoid", "floor": "tl.floor", "ceil": "tl.ceil", "where": "tl.where",
    "minimum": "tl.minimum", "maximum": "tl.maximum",
}


def nonnegative(e: E.Expr) -> bool:
    """True if ``e`` is provably >= 0 for every index value (b, h, q_idx, kv_idx >= 0)."""
    op = e.op
    if op == "var":
        return e.arg in ("b", "h", "m", "n")
    if op in ("const", "param"):
        value = e.arg if op == "const" else e.arg[1]
        return value is not None and value >= 0
    if op in ("add", "mul", "minimum", "maximum", "floordiv"):
        return all(nonnegative(s) for s in e.src) and (op != "floordiv" or positive(e.src[1]))
    if op == "mod":
        return positive(e.src[1])
    if op in ("abs", "relu", "sigmoid", "exp", "exp2", "sqrt") or e.dtype == E.BOOL:
        return True
    if op == "where":
        return nonnegative(e.src[1]) and nonnegative(e.src[2])
    if op == "load":
        return False
    return False


def positive(e: E.Expr) -> bool:
    if e.op in ("const", "param"):
        value = e.arg if e.op == "const" else e.arg[1]
        return value is not None and value > 0
    return False


def _const(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(value)


class TritonPrinter:
    """Prints expressions of one kernel; remembers which helpers the code needs."""

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.helpers: set[str] = set()
        self.syntax = Syntax(calls=dict(TL_CALLS), const=_const)
        self.syntax.override.update({
            "floordiv": self._floordiv, "mod": self._mod, "tanh": self._tanh, "elu": self._elu,
            "relu": self._relu, "float": self._cast, "int": self._cast, "invert": self._invert,
            "pow": self._pow,
        })

    def _floordiv(self, e, p):
        a, b = e.src
        if e.dtype == E.FLOAT:
            return f"tl.floor({p.text(a, 0)} / {p.text(b, 0)})", PREC_ATOM
        if nonnegative(a) and positive(b):
            return f"{p.text(a, 13)} // {p.text(b, 14)}", 13
        self.helpers.add("floordiv")
        return f"floordiv({p.text(a, 0)}, {p.text(b, 0)})", PREC_ATOM

    def _mod(self, e, p):
        a, b = e.src
        if e.dtype == E.FLOAT:
            x, y = p.text(a, 0), p.text(b, 0)
            return f"({x} - tl.floor({x} / {y}) * {y})", PREC_ATOM
        if nonnegative(a) and positive(b):
            return f"{p.text(a, 13)} % {p.text(b, 14)}", 13
        self.helpers.add("pymod")
        return f"pymod({p.text(a, 0)}, {p.text(b, 0)})", PREC_ATOM

    def _tanh(self, e, p):
        return f"(2.0 * tl.sigmoid(2.0 * {p.text(e.src[0], 14)}) - 1.0)", PREC_ATOM

    def _elu(self, e, p):
        x = p.text(e.src[0], 0)
        return f"tl.where({x} > 0, {x}, tl.exp({x}) - 1.0)", PREC_ATOM

    def _relu(self, e, p):
        return f"tl.maximum({p.text(e.src[0], 0)}, 0.0)", PREC_ATOM

    def _cast(self, e, p):
        kind = "tl.float32" if e.op == "float" else "tl.int32"
        return f"{p.text(e.src[0], PREC_ATOM)}.to({kind})", PREC_ATOM

    def _invert(self, e, p):
        if e.dtype == E.BOOL:
            return f"{p.text(e.src[0], PREC_COMPARE + 1)} == 0", PREC_COMPARE
        return f"~{p.text(e.src[0], 14)}", 14

    def _pow(self, e, p):
        a, b = e.src
        if b.op == "const" and isinstance(b.arg, int) and 0 <= b.arg <= 8:
            if b.arg == 0:
                return "1", PREC_ATOM
            base = p.text(a, PREC_ATOM)
            return "(" + " * ".join([base] * b.arg) + ")", PREC_ATOM
        return f"tl.exp2({p.text(b, 13)} * tl.log2({p.text(a, 0)}))", PREC_ATOM

    def _leaf(self, e: E.Expr, p):
        if e.op == "param":
            name = e.arg[0]
            return ("sm_scale" if name == "scale" else name.upper()), PREC_ATOM
        if e.op == "load":
            return self._load(e, p), PREC_ATOM
        return None

    def _load(self, e: E.Expr, p) -> str:
        """A bounds-masked load. The analysis proves every index in range over the real
        (q, kv) domain; the mask guards the padding lanes past q_len / kv_len, so only
        indices that depend on q_idx or kv_idx need it."""
        name = e.arg.name
        idx = [p.text(s, 0) for s in e.src]
        offset = " + ".join(f"({x}) * {name}_s{i}" for i, x in enumerate(idx)) or "0"
        lanes = [i for i, s in enumerate(e.src) if E.letters_of(s) & {"m", "n"}]
        bounds = " & ".join(f"({idx[i]} >= 0) & ({idx[i]} < {name}_n{i})" for i in lanes) or None
        value = f"tl.load({name}_ptr + {offset}" + (f", mask={bounds}, other=0)" if bounds else ")")
        return f"({value} != 0)" if e.dtype == E.BOOL else value

    def __call__(self, expr: E.Expr) -> str:
        return format_expr(explicit_bool_casts(expr), self.syntax, names=self.names, leaf=self._leaf)


HELPERS = {
    "floordiv": '''@triton.jit
def floordiv(a, b):
    """Python's a // b (floor); Triton's // truncates toward zero."""
    q = a // b
    return tl.where((a % b != 0) & ((a < 0) != (b < 0)), q - 1, q)
''',
    "pymod": '''@triton.jit
def pymod(a, b):
    """Python's a % b (sign of the divisor); Triton's % takes the dividend's sign."""
    r = a % b
    return tl.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)
''',
}
