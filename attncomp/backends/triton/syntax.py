"""Printing IR expressions as Triton code, keeping Python's meaning.

Triton's ``//`` and ``%`` are C's (truncate toward zero). Where both operands are provably
non-negative (a small sign analysis: indices, non-negative constants, sums and products
of such, ``%`` by a positive divisor, ...) the two agree and plain operators print;
elsewhere the helpers ``floordiv``/``pymod`` emitted into the module restore floor
semantics. Runtime tensor loads become ``tl.load`` with a bounds mask; ``tanh`` is
``2 * sigmoid(2x) - 1`` (Triton has no tanh of its own); ``~`` on a boolean is ``== 0``.
"""

from __future__ import annotations

import functools
import math

from ...ir import expr as E
from ...ir.dtypes import is_weak
from ...ir.magnitude import leaves_int32, magnitude
from ...ir.ops import Op
from ...ir.printer import PREC_ATOM, PREC_COMPARE, Syntax, format_expr
from ...ir.rewrite import graph_rewrite
from ..torch_syntax import explicit_casts

TL_CALLS = {
    Op.ABS: "tl.abs", Op.EXP: "tl.exp", Op.EXP2: "tl.exp2", Op.LOG: "tl.log", Op.LOG2: "tl.log2", Op.SQRT: "tl.sqrt",
    Op.SIGMOID: "tl.sigmoid", Op.FLOOR: "tl.floor", Op.CEIL: "tl.ceil", Op.WHERE: "tl.where",
    Op.MINIMUM: "tl.minimum", Op.MAXIMUM: "tl.maximum",
}


def _formula(text: str):
    """An op Triton has no function for, as a formula of its operand ``{0}`` (printed as
    a call argument or comparison operand, where any float expression parses unbracketed)."""
    return lambda e, p: (text.format(*(p.text(s, 0) for s in e.src)), PREC_ATOM)


TL_FORMULAS = {
    Op.ELU: _formula("tl.where({0} > 0, {0}, tl.exp({0}) - 1.0)"),
    Op.RELU: _formula("tl.maximum({0}, 0.0)"),
    # log(1 + e^x) without overflow; past torch's threshold 20 the log term is below
    # float32 resolution, so this is torch's x there too
    Op.SOFTPLUS: _formula("(tl.maximum({0}, 0.0) + tl.log(1.0 + tl.exp(-tl.abs({0}))))"),
    Op.LOGSIGMOID: _formula("(tl.minimum({0}, 0.0) - tl.log(1.0 + tl.exp(-tl.abs({0}))))"),
}


def exponent_bits(exp: E.Expr, index_max: int) -> int:
    """How many bits of an integer exponent square-and-multiply must walk: those of its
    static bound (``|q_idx - kv_idx| // 4`` has 30 for sequences below 2**31), else 64."""
    bound = magnitude(exp, index_max)
    return 64 if bound == float("inf") else max(1, min(64, int(bound).bit_length()))


def _all_nonnegative(e: E.Expr) -> bool:
    return all(nonnegative(s) for s in e.src)


# Sign rules: whether a node of each op is provably >= 0 (ops not listed: not known).
NONNEGATIVE = {
    Op.VAR: lambda e: e.arg in ("b", "h", "m", "n"),
    Op.CONST: lambda e: e.arg >= 0, Op.PARAM: lambda e: e.arg[1] is not None and e.arg[1] >= 0,
    Op.ADD: _all_nonnegative, Op.MUL: _all_nonnegative, Op.MINIMUM: _all_nonnegative, Op.MAXIMUM: _all_nonnegative,
    Op.FLOORDIV: lambda e: _all_nonnegative(e) and positive(e.src[1]),
    Op.MOD: lambda e: positive(e.src[1]),
    Op.ABS: lambda e: True, Op.RELU: lambda e: True, Op.SIGMOID: lambda e: True, Op.EXP: lambda e: True,
    Op.EXP2: lambda e: True, Op.SQRT: lambda e: True, Op.SOFTPLUS: lambda e: True,
    Op.WHERE: lambda e: nonnegative(e.src[1]) and nonnegative(e.src[2]),
}


def nonnegative(e: E.Expr) -> bool:
    """True if ``e`` is provably >= 0 for every index value (b, h, q_idx, kv_idx >= 0)."""
    if e.dtype == E.BOOL:  # 0 or 1
        return True
    rule = NONNEGATIVE.get(e.op)
    return rule is not None and rule(e)


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
            Op.FLOORDIV: self._floordiv, Op.MOD: self._mod, Op.TANH: self._tanh, Op.FLOAT: self._cast,
            Op.INT: self._cast, Op.INVERT: self._invert, Op.POW: self._pow,
        })
        self.syntax.override.update(TL_FORMULAS)

    def _floordiv(self, e, p):
        a, b = e.src
        if e.dtype == E.FLOAT:
            self.helpers.add("floordiv_f")
            return f"floordiv_f({p.text(a, 0)}, {p.text(b, 0)})", PREC_ATOM
        if nonnegative(a) and positive(b):
            return f"{p.text(a, 13)} // {p.text(b, 14)}", 13
        self.helpers.add("floordiv")
        return f"floordiv({p.text(a, 0)}, {p.text(b, 0)})", PREC_ATOM

    def _mod(self, e, p):
        a, b = e.src
        if nonnegative(a) and positive(b) and e.dtype != E.FLOAT:
            return f"{p.text(a, 13)} % {p.text(b, 14)}", 13
        self.helpers.add("pymod")
        return f"pymod({p.text(a, 0)}, {p.text(b, 0)})", PREC_ATOM

    def _tanh(self, e, p):
        return f"(2.0 * tl.sigmoid(2.0 * {p.text(e.src[0], 14)}) - 1.0)", PREC_ATOM

    def _cast(self, e, p):
        kind = "tl.float32" if e.op == "float" else "tl.int64"  # torch's .float() and .long()
        return f"{p.text(e.src[0], PREC_ATOM)}.to({kind})", PREC_ATOM

    def _invert(self, e, p):
        if e.dtype == E.BOOL:
            return f"{p.text(e.src[0], PREC_COMPARE + 1)} == 0", PREC_COMPARE
        return f"~{p.text(e.src[0], 14)}", 14

    def _pow(self, e, p):
        """Integer powers wrap at 64 bits as torch's do (square and multiply); float powers
        of a constant integer exponent multiply out as torch's do; others are refused in
        masks (``unfaithful``) and take exp2/log2 in scores."""
        a, b = e.src
        if e.dtype == E.INT:
            self.helpers.add("ipow")
            bits = exponent_bits(b, MAX_LEN)
            call = f"ipow({p.text(a, 0)}, {p.text(b, 0)}, {bits})"
            if e.tdtype != "int64":  # torch's int32 power wraps at 32 bits: the low bits of the int64 one
                call += f".to(tl.{e.tdtype})"
            return call, PREC_ATOM
        if b.op == "const" and isinstance(b.arg, int) and 0 <= b.arg <= 3:
            if b.arg == 0:
                return "1.0", PREC_ATOM
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

    def scatter_add(self, load: E.Expr, grad: str, value: str, keep: str) -> str:
        """The adjoint of ``load``: ``value`` (a tile) added into ``grad`` (a tensor shaped like
        the loaded one, strides ``{grad}_s{i}``) at each lane's element, where ``keep`` holds and
        the index is in range. Atomics, since lanes of a tile may read one element; an index
        that varies with neither q_idx nor kv_idx takes one atomic of the tile's sum."""
        idx = [self(s) for s in load.src]
        offset = " + ".join(f"({x}) * {grad}_s{i}" for i, x in enumerate(idx)) or "0"
        lanes = [i for i, s in enumerate(load.src) if E.letters_of(s) & {"m", "n"}]
        if not lanes:
            return f"tl.atomic_add({grad} + {offset}, tl.sum(tl.sum(tl.where({keep}, {value}, 0.0), 1), 0))"
        name = load.arg.name
        bounds = "".join(f" & ({idx[i]} >= 0) & ({idx[i]} < {name}_n{i})" for i in lanes)
        return (f"tl.atomic_add({grad} + {offset} + tl.zeros([BLOCK_M, BLOCK_N], tl.int64), {value}, "
                f"mask={keep}{bounds})")

    def __call__(self, expr: E.Expr) -> str:
        return format_expr(int64_where_needed(explicit_casts(expr)), self.syntax, names=self.names, leaf=self._leaf)


# Sequences the kernel serves: up to 2**30 tokens, so index arithmetic that provably fits
# int32 for them (q_idx - kv_idx, window offsets) stays in fast int32.
MAX_LEN = 2 ** 30


@functools.cache
def _is_int64(e: E.Expr) -> bool:
    """Whether Triton computes ``e`` in int64 (indices are int32; int64 loads, casts and
    operands promote)."""
    if e.tdtype != "int64":
        return False
    if e.op in (Op.LOAD, Op.INT):
        return True
    return any(_is_int64(s) for s in e.src)


def _widen(e: E.Expr) -> E.Expr | None:
    if e.op == Op.INT or any(map(_is_int64, e.src)) or not leaves_int32(e, MAX_LEN):
        return None
    ints = [i for i, s in enumerate(e.src) if s.dtype == E.INT and not is_weak(s.tdtype)]
    if not ints:
        return None
    i = ints[0]
    return e.with_src(e.src[:i] + (E.unary("int", e.src[i]),) + e.src[i + 1:])


def int64_where_needed(expr: E.Expr) -> E.Expr:
    """``expr`` with an int64 cast on an operand of every integer node that may leave
    int32 for sequences up to MAX_LEN (torch computes indices in int64; Triton's are int32,
    so ``q_idx * 3000000`` would wrap where torch's does not).

    >>> from attncomp.ir.expr import var, const, binary
    >>> str(int64_where_needed(binary("ge", binary("mul", var("m"), const(3000000)), var("n"))))
    'int(m) * 3000000 >= n'
    >>> str(int64_where_needed(binary("ge", binary("sub", var("m"), const(5)), var("n"))))
    'm - 5 >= n'
    """
    return graph_rewrite(expr, _widen)


HELPERS = {
    "floordiv": '''@triton.jit
def floordiv(a, b):
    """Python's a // b (floor); Triton's // truncates toward zero."""
    q = a // b
    return tl.where((a % b != 0) & ((a < 0) != (b < 0)), q - 1, q)
''',
    "pymod": '''@triton.jit
def pymod(a, b):
    """torch's a % b (sign of the divisor); Triton's % takes the dividend's sign (C's
    remainder on integers, fmod on floats, after which torch adds b as here)."""
    r = a % b
    return tl.where((r != 0) & ((r < 0) != (b < 0)), r + b, r)
''',
    "floordiv_f": '''@triton.jit
def floordiv_f(a, b):
    """torch's a // b on floats, step for step (c10's div_floor_floating): from fmod, so
    the quotient rounds as torch's does."""
    mod = a % b
    div = (a - mod) / b
    div = tl.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1.0, div)
    fl = tl.floor(div)
    fl = tl.where(div - fl > 0.5, fl + 1.0, fl)
    return tl.where(b == 0, a / b, tl.where(div != 0, fl, tl.where(a / b < 0, -0.0, 0.0)))
''',
    "ipow": '''@triton.jit
def ipow(a, b, BITS: tl.constexpr):
    """torch's integer a ** b for b >= 0: square and multiply over b's low BITS bits,
    wrapping as torch's int64 product does."""
    zero = (a * 0 + b * 0).to(tl.int64)  # a or b may be a Python number
    a = zero + a
    b = zero + b
    out = zero + 1
    for _ in tl.static_range(BITS):
        out = tl.where((b & 1) != 0, out * a, out)
        a = a * a
        b = b >> 1
    return out
''',
}
