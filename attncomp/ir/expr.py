"""Index and score expressions: immutable ``Expr`` nodes and their type rules.

An ``Expr`` is ``(op, src, arg, dtype)``. Masks are boolean expressions over the index
letters ``b, h, m, n`` (batch, head, query index, key index; FlexAttention's ``q_idx`` is
``m`` and ``kv_idx`` is ``n``); score mods are float expressions that also read
``score``; cascade right-hand sides add references to big tensors (``ref``) and
reductions over a letter (``softmax[n]``, ``max[n]``, ``sum[n]``).

Arithmetic means what torch computes: ``//`` and ``%`` floor (``-7 // 2 == -4``,
``-7 % 2 == 1``), ``/`` always gives a float, ``bool + bool`` is a logical or, integers
wrap at their width and floats round to theirs. Each node carries its torch dtype
(``tdtype``, inferred by :mod:`attncomp.ir.dtypes` with torch's promotion rules) and its
kind (``dtype``: bool, int or float). Backends must reproduce these meanings exactly
(Triton's ``//`` truncates) or refuse.

Behaviour per op (evaluation, code generation, cost) lives in rule tables in the layer
that needs it; this module only knows each op's arity and result type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import TraceError
from . import dtypes as D
from .ops import ARITH, BINARY, CASTS, COMPARE, FLOAT_UNARY, INT_UNARY, LEAVES, LOGIC, REDUCTIONS, SHIFT, UNARY, WHERE, Op  # noqa: F401 (re-exported)
from .rewrite import depth, graph_rewrite, walk

# Expressions nest at most this deep: the passes and evaluators recurse a few frames per
# level, and Python's default limit is 1,000 frames. A sum of 3,000 terms on one line is
# written as a few named intermediates or a reduction instead.
MAX_DEPTH = 160


def check_depth(expr: "Expr", what: str) -> None:
    """Raise a TraceError if ``expr`` nests deeper than :data:`MAX_DEPTH`."""
    d = depth(expr)
    if d > MAX_DEPTH:
        raise TraceError(f"{what} nests {d} operations deep, more than the {MAX_DEPTH} attncomp handles",
                         hint="Split it into named intermediate results, or sum with a reduction (sum[n](...))")

BOOL, INT, FLOAT = "bool", "int", "float"
_RANK = {BOOL: 0, INT: 1, FLOAT: 2}
DEFAULT_TDTYPE = {BOOL: "bool", INT: "int64", FLOAT: "float32"}

# The letters a mask may read, and the names FlexAttention users know them by.
MASK_LETTERS = ("b", "h", "m", "n")
FLEX_NAMES = {"b": "b", "h": "h", "m": "q_idx", "n": "kv_idx"}

TENSOR_DTYPES = {
    "bool": BOOL,
    "int8": INT, "int16": INT, "int32": INT, "int64": INT, "uint8": INT,
    "float16": FLOAT, "bfloat16": FLOAT, "float32": FLOAT, "float64": FLOAT,
}


@dataclass(frozen=True)
class TensorDecl:
    """A named runtime tensor read by masks and score mods, e.g. ``doc[B, L]: int32``.

    ``dims`` holds symbolic names (``"B"`` is the batch size, ``"H"`` the number of query
    heads; other names must agree across tensors) or fixed integers.
    """

    name: str
    dims: tuple[str | int, ...]
    dtype: str

    @property
    def kind(self) -> str:
        return TENSOR_DTYPES[self.dtype]

    def __str__(self) -> str:
        return f"{self.name}[{', '.join(str(d) for d in self.dims)}]: {self.dtype}"


@dataclass(frozen=True, eq=True)
class Expr:
    """One immutable expression node. Build them with the constructors below."""

    op: Op
    src: tuple[Expr, ...] = ()
    arg: Any = None
    dtype: str = INT
    tdtype: str = ""  # the torch dtype (see attncomp.ir.dtypes); default: the kind's usual one
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.op) is not Op:  # constructors may name ops by their string values
            object.__setattr__(self, "op", Op(self.op))
        if not self.tdtype:
            object.__setattr__(self, "tdtype", DEFAULT_TDTYPE[self.dtype])
        object.__setattr__(self, "dtype", D.KIND[self.tdtype])
        object.__setattr__(self, "_hash", hash((self.op, self.src, _hashable(self.arg), self.tdtype)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Expr) or self._hash != other._hash:
            return False
        return (self.op, self.tdtype, self.src) == (other.op, other.tdtype, other.src) and _same(self.arg, other.arg)

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        from .printer import format_expr  # late import: the printer is a table over ops, and reads Expr

        return format_expr(self)

    def with_src(self, src: tuple[Expr, ...]) -> Expr:
        """This node with new children, its dtype re-derived (see :func:`rebuild`)."""
        return rebuild(self, src)


def _hashable(arg: Any) -> Any:
    # -0.0 == 0.0 in Python but prints differently; keep them apart. NaN is rejected at const().
    if isinstance(arg, float):
        return (float, repr(arg))
    return arg


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and repr(a) == repr(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# --- leaves -----------------------------------------------------------------------------


def var(name: str) -> Expr:
    """An index letter (``b``, ``h``, ``m``, ``n``, ``d`` ...) or the ``score`` of a score mod."""
    return Expr("var", (), name, FLOAT if name == "score" else INT)


def const(value: Any, tdtype: str | None = None) -> Expr:
    """A Python number (weak, as torch's wrapped numbers), or with ``tdtype`` a value of
    that torch dtype (an index letter fixed to one value, a folded tensor expression),
    wrapped into its range as torch's integers wrap."""
    if tdtype is not None and not D.is_weak(tdtype):
        if D.KIND[tdtype] == INT:
            lo, hi = D.IRANGE[tdtype]
            value = (int(value) - lo) % (hi - lo + 1) + lo
        return Expr("const", (), value, D.KIND[tdtype], tdtype)
    if isinstance(value, bool):
        return Expr("const", (), value, BOOL, "py_bool")
    if isinstance(value, int):
        if not -2 ** 63 <= value < 2 ** 63:  # torch: "int too big to convert"
            raise TraceError(f"the integer constant {value} is outside int64, which torch cannot convert it to")
        return Expr("const", (), int(value), INT, "py_int")
    if isinstance(value, float):
        if math.isnan(value):
            raise TraceError("NaN is not a valid constant in a mask or score mod")
        return Expr("const", (), value, FLOAT, "py_float")
    raise TraceError(f"cannot use {type(value).__name__} {value!r} in an attention expression")


def param(name: str, value: int | float | None) -> Expr:
    """A named scalar parameter with its value (``window = 1024``); ``scale=None`` means 1/sqrt(d)."""
    if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
        raise TraceError(f"parameter {name!r} must be an int or float, got {value!r}")
    dtype = INT if isinstance(value, int) else FLOAT
    return Expr("param", (), (name, value), dtype, "py_int" if dtype == INT else "py_float")


def load(decl: TensorDecl, index: tuple[Expr, ...]) -> Expr:
    """Read runtime tensor ``decl`` at integer index expressions (``doc[b, m]``)."""
    if len(index) != len(decl.dims):
        raise TraceError(f"tensor {decl.name} has {len(decl.dims)} dimension(s) {list(decl.dims)} but is indexed "
                         f"with {len(index)}: {decl.name}[{', '.join('{}' for _ in index)}]", exprs=index)
    for pos, ix in enumerate(index):
        if ix.dtype != INT:
            raise TraceError(f"index {pos} of tensor {decl.name} must be an integer expression, got {ix.dtype} "
                             "expression {}", exprs=(ix,),
                             hint="Use // for integer division" if ix.dtype == FLOAT else None)
    return Expr("load", tuple(index), decl, decl.kind, decl.dtype)


def ref(name: str, letters: tuple[str, ...]) -> Expr:
    """Reference to a cascade tensor (an input such as ``Q`` or an equation's result)."""
    return Expr("ref", tuple(var(x) for x in letters), name, FLOAT)


# --- operators --------------------------------------------------------------------------


def promote(*dtypes: str) -> str:
    return max(dtypes, key=_RANK.__getitem__)


def _type_error(message: str, *exprs: Expr) -> TraceError:
    # The expressions travel with the error: the tracing boundary prints them with the
    # names the user wrote (q_idx, kv_idx), a cascade with its letters.
    return TraceError(message + ": " + ", ".join("{}" for _ in exprs), exprs=exprs)


def unary(op: Op | str, x: Expr) -> Expr:
    op = Op(op)
    if op not in UNARY:
        raise ValueError(op)
    if op == Op.NEG and x.op == Op.CONST and x.dtype != BOOL:
        return const(-x.arg)  # -3 is the literal -3, so printing round-trips
    if op == Op.INVERT and x.dtype == FLOAT:
        raise _type_error("~ needs a bool or int, not a float expression", x)
    return Expr(op, (x,), None, tdtype=D.infer(op, (x.tdtype,)))


def binary(op: Op | str, a: Expr, b: Expr) -> Expr:
    op = Op(op)
    if op not in BINARY:
        raise ValueError(op)
    if op in LOGIC:
        if FLOAT in (a.dtype, b.dtype):
            raise _type_error(f"'{_SYMBOL[op]}' needs bool or int operands (a float was given)", a, b)
    if op in SHIFT:
        if FLOAT in (a.dtype, b.dtype):
            raise _type_error(f"'{_SYMBOL[op]}' needs integer operands", a, b)
    return Expr(op, (a, b), None, tdtype=D.infer(op, (a.tdtype, b.tdtype)))


def where(cond: Expr, a: Expr, b: Expr) -> Expr:
    if cond.dtype != BOOL:
        raise _type_error("the condition of where(...) must be a boolean expression", cond)
    return Expr("where", (cond, a, b), None, tdtype=D.infer(Op.WHERE, (cond.tdtype, a.tdtype, b.tdtype)))


def reduce(op: Op | str, letter: str, x: Expr, sink: Expr | None = None) -> Expr:
    """``op[letter](x)``; a softmax may take a ``sink``: a logit free of ``letter`` that joins
    the normalizer with no value (``exp(x_n) / (exp(sink) + sum_n exp(x_n))``: the learned
    attention sinks of gpt-oss, the "off-by-one" softmax with a sink of 0)."""
    op = Op(op)
    if op not in REDUCTIONS or (sink is not None and op != Op.SOFTMAX):
        raise ValueError(op)
    return Expr(op, (x,) if sink is None else (x, sink), letter, FLOAT)


_SYMBOL = {Op.AND: "&", Op.OR: "|", Op.XOR: "^", Op.LSHIFT: "<<", Op.RSHIFT: ">>"}


# --- traversal --------------------------------------------------------------------------


def substitute(expr: Expr, mapping: dict[Expr, Expr]) -> Expr:
    """Replace subexpressions by ``mapping``, bottom-up (shared nodes rebuilt once; a key
    is looked up after the keys inside it have been replaced)."""
    if not mapping:
        return expr
    return graph_rewrite(expr, mapping.get)


def rebuild(node: Expr, src: tuple[Expr, ...]) -> Expr:
    """``node`` with new children, re-deriving its dtype through the constructors."""
    op = node.op
    if op in UNARY:
        return unary(op, src[0])
    if op in BINARY:
        return binary(op, *src)
    if op in WHERE:
        return where(*src)
    if op in REDUCTIONS:
        return reduce(op, node.arg, *src)
    if op == Op.LOAD:
        return load(node.arg, src)
    return Expr(op, src, node.arg, node.dtype, node.tdtype)


def letters_of(expr: Expr) -> set[str]:
    """Index letters that are free in ``expr`` (``max[n]``/``sum[n]`` bind ``n``; a reduction
    of an argument without ``n`` treats it as constant along ``n``)."""
    memo: dict[Expr, frozenset[str]] = {}
    for node in walk(expr):
        if node.op == "var":
            memo[node] = frozenset() if node.arg == "score" else frozenset((node.arg,))
            continue
        inner = frozenset().union(*(memo[s] for s in node.src))
        if node.op in ("reduce_max", "reduce_sum"):
            inner = inner - {node.arg}
        elif node.op == "softmax":  # normalizes along its letter, which it always carries
            inner = inner | {node.arg}
        memo[node] = inner
    return set(memo[expr])


def params_of(expr: Expr) -> dict[str, int | float | None]:
    return {n.arg[0]: n.arg[1] for n in walk(expr) if n.op == "param"}


def tensors_of(expr: Expr) -> dict[str, TensorDecl]:
    return {n.arg.name: n.arg for n in walk(expr) if n.op == "load"}
