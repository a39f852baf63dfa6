"""Printing expressions and Programs as text.

One precedence-climbing printer serves every syntax: a ``Syntax`` is a rule table saying
how each op prints (infix operator with a Python precedence, or a function call). The
cascade syntax here is what ``str(program)`` prints and ``parse_program`` reads back;
backends pass their own tables (torch calls for FlexAttention, ``tl.`` calls for Triton).
Parentheses are inserted only where Python's precedence needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .expr import Expr
from .ops import Op

# Python operator precedence, loosest to tightest (comparisons are non-associative).
PREC_COMPARE, PREC_OR, PREC_XOR, PREC_AND, PREC_SHIFT = 7, 8, 9, 10, 11
PREC_ADD, PREC_MUL, PREC_UNARY, PREC_POW, PREC_ATOM = 12, 13, 14, 15, 100

INFIX = {
    Op.LT: ("<", PREC_COMPARE), Op.LE: ("<=", PREC_COMPARE), Op.GT: (">", PREC_COMPARE),
    Op.GE: (">=", PREC_COMPARE), Op.EQ: ("==", PREC_COMPARE), Op.NE: ("!=", PREC_COMPARE),
    Op.OR: ("|", PREC_OR), Op.XOR: ("^", PREC_XOR), Op.AND: ("&", PREC_AND),
    Op.LSHIFT: ("<<", PREC_SHIFT), Op.RSHIFT: (">>", PREC_SHIFT),
    Op.ADD: ("+", PREC_ADD), Op.SUB: ("-", PREC_ADD),
    Op.MUL: ("*", PREC_MUL), Op.TRUEDIV: ("/", PREC_MUL), Op.FLOORDIV: ("//", PREC_MUL), Op.MOD: ("%", PREC_MUL),
    Op.POW: ("**", PREC_POW),
}
PREFIX = {Op.NEG: "-", Op.INVERT: "~"}
# Function names in cascade text; the parser reads the same table backwards.
CALLS = {
    Op.ABS: "abs", Op.MINIMUM: "min", Op.MAXIMUM: "max", Op.WHERE: "where",
    Op.EXP: "exp", Op.EXP2: "exp2", Op.LOG: "log", Op.LOG2: "log2", Op.SQRT: "sqrt", Op.TANH: "tanh",
    Op.SIGMOID: "sigmoid", Op.RELU: "relu", Op.ELU: "elu", Op.SOFTPLUS: "softplus", Op.LOGSIGMOID: "logsigmoid",
    Op.FLOOR: "floor", Op.CEIL: "ceil",
    Op.FLOAT: "float", Op.INT: "int",
}
REDUCE_NAMES = {Op.SOFTMAX: "softmax", Op.REDUCE_MAX: "max", Op.REDUCE_SUM: "sum"}


@dataclass(frozen=True)
class Syntax:
    """How ops print: infix operators, prefix operators, function names, and leaf hooks.

    ``override`` maps an op to ``f(node, args) -> (text, precedence)`` for ops a target
    language spells differently (e.g. Python-floor ``//`` in Triton).
    """

    infix: dict = field(default_factory=lambda: dict(INFIX))
    prefix: dict = field(default_factory=lambda: dict(PREFIX))
    calls: dict = field(default_factory=lambda: dict(CALLS))
    override: dict = field(default_factory=dict)
    const: Callable[[object], str] | None = None


CASCADE = Syntax()


def format_const(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


class _Printer:
    def __init__(self, syntax: Syntax, names: dict[str, str], bare: dict[str, tuple[str, ...]], leaf):
        self.syntax, self.names, self.bare, self.leaf = syntax, names, bare, leaf
        self.memo: dict[Expr, tuple[str, int]] = {}
        self.leaves = {Op.VAR: self.var, Op.CONST: self.const, Op.PARAM: self.param, Op.LOAD: self.tensor,
                       Op.REF: self.tensor}

    def text(self, e: Expr, min_prec: int) -> str:
        s, p = self.fmt(e)
        return f"({s})" if p < min_prec else s

    def fmt(self, e: Expr) -> tuple[str, int]:
        if e not in self.memo:
            self.memo[e] = self._fmt(e)
        return self.memo[e]

    def _fmt(self, e: Expr) -> tuple[str, int]:
        syn, op = self.syntax, e.op
        if self.leaf is not None:
            hooked = self.leaf(e, self)
            if hooked is not None:
                return hooked
        if op in syn.override:
            return syn.override[op](e, self)
        if op in self.leaves:
            return self.leaves[op](e)
        if op in REDUCE_NAMES:
            return f"{REDUCE_NAMES[op]}[{e.arg}]({', '.join(self.text(s, 0) for s in e.src)})", PREC_ATOM
        if op in syn.infix:
            sym, p = syn.infix[op]
            right_assoc = op == Op.POW
            left = self.text(e.src[0], p + 1 if right_assoc or p == PREC_COMPARE else p)
            right = self.text(e.src[1], p if right_assoc else p + 1)
            return f"{left} {sym} {right}", p
        if op in syn.prefix:
            return f"{syn.prefix[op]}{self.text(e.src[0], PREC_UNARY)}", PREC_UNARY
        if op in syn.calls:
            return f"{syn.calls[op]}({', '.join(self.text(s, 0) for s in e.src)})", PREC_ATOM
        raise ValueError(f"no syntax for op {op!r}")

    def var(self, e: Expr) -> tuple[str, int]:
        return self.names.get(e.arg, e.arg), PREC_ATOM

    def const(self, e: Expr) -> tuple[str, int]:
        s = (self.syntax.const or format_const)(e.arg)
        return s, (PREC_UNARY if s.startswith("-") else PREC_ATOM)

    def param(self, e: Expr) -> tuple[str, int]:
        return e.arg[0], PREC_ATOM

    def tensor(self, e: Expr) -> tuple[str, int]:
        name = e.arg.name if e.op == Op.LOAD else e.arg
        if e.op == Op.REF and self.bare.get(name) == tuple(s.arg for s in e.src) or not e.src:
            return name, PREC_ATOM  # a 0-dim tensor is read by its bare name (``flag``), as in torch
        sep = "," if e.op == Op.REF else ", "  # einsum-style letters for cascade tensors
        return f"{name}[{sep.join(self.text(s, 0) for s in e.src)}]", PREC_ATOM


def format_expr(expr: Expr, syntax: Syntax = CASCADE, names: dict[str, str] | None = None,
                bare: dict[str, tuple[str, ...]] | None = None, leaf=None) -> str:
    """Print ``expr`` in ``syntax`` with minimal parentheses.

    >>> from attncomp.ir.expr import var, const, binary
    >>> m, n = var("m"), var("n")
    >>> format_expr(binary("and", binary("ge", m, n), binary("lt", binary("sub", m, n), const(4))))
    '(m >= n) & (m - n < 4)'
    >>> format_expr(binary("ge", m, n), names={"m": "q_idx", "n": "kv_idx"})
    'q_idx >= kv_idx'
    """
    return _Printer(syntax, names or {}, bare or {}, leaf).text(expr, 0)


def shared_subexpressions(expr: Expr) -> list[Expr]:
    """Non-leaf subexpressions used more than once in ``expr``, children first."""
    from .expr import walk

    uses: dict[Expr, int] = {}
    for node in walk(expr):
        for s in node.src:
            uses[s] = uses.get(s, 0) + 1
    return [n for n in walk(expr) if uses.get(n, 0) > 1 and n.src and n.op != Op.LOAD]


def format_lets(expr: Expr, syntax: Syntax = CASCADE, names: dict[str, str] | None = None, leaf=None,
                prefix: str = "t") -> tuple[list[tuple[str, str]], str]:
    """``expr`` printed with each shared subexpression computed once: a list of
    ``(name, text)`` bindings in dependency order, and the final text using them.

    >>> from attncomp.ir.expr import var, const, binary
    >>> d = binary("sub", var("m"), var("n"))
    >>> format_lets(binary("and", binary("ge", d, const(0)), binary("lt", d, const(8))))
    ([('t0', 'm - n')], '(t0 >= 0) & (t0 < 8)')
    """
    bound: dict[Expr, str] = {}

    def hook(root):
        def inner(e: Expr, printer):
            if e is not root and e in bound:
                return bound[e], PREC_ATOM
            return leaf(e, printer) if leaf is not None else None
        return inner

    lets = []
    for node in shared_subexpressions(expr):
        name = f"{prefix}{len(lets)}"
        lets.append((name, format_expr(node, syntax, names, leaf=hook(node))))
        bound[node] = name
    return lets, format_expr(expr, syntax, names, leaf=hook(expr))
