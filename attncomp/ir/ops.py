"""The ops of the IR, as an enum with named groups (tinygrad's ``Ops`` and ``GroupOp``).

Every interpreter of expressions (evaluation, interval analysis, folding, printing for
each syntax, cost) is a table keyed by ``Op``; the groups say which table an op needs a
row in. ``Op`` is a ``str`` enum whose members hash and compare as their values, so
``node.op == "load"`` and ``{"add": ...}[node.op]`` work, and an Expr hashes as it did
when ops were plain strings.

>>> Op.ADD == "add", Op("add") is Op.ADD, str(Op.SIGMOID)
(True, True, 'sigmoid')
>>> Op.EXP in FLOAT_UNARY, arity(Op.WHERE), arity(Op.MINIMUM)
(True, 3, 2)
"""

from __future__ import annotations

import enum


class Op(str, enum.Enum):
    # leaves
    VAR = "var"
    CONST = "const"
    PARAM = "param"
    LOAD = "load"
    REF = "ref"
    # arithmetic (Python semantics: // and % floor)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    TRUEDIV = "truediv"
    FLOORDIV = "floordiv"
    MOD = "mod"
    POW = "pow"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    # comparisons
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    # logical on bools, bitwise on ints
    AND = "and"
    OR = "or"
    XOR = "xor"
    LSHIFT = "lshift"
    RSHIFT = "rshift"
    # unary
    NEG = "neg"
    ABS = "abs"
    INVERT = "invert"
    EXP = "exp"
    EXP2 = "exp2"
    LOG = "log"
    LOG2 = "log2"
    SQRT = "sqrt"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    RELU = "relu"
    ELU = "elu"
    SOFTPLUS = "softplus"
    LOGSIGMOID = "logsigmoid"
    FLOOR = "floor"
    CEIL = "ceil"
    FLOAT = "float"
    INT = "int"
    # select and reductions over a letter
    WHERE = "where"
    SOFTMAX = "softmax"
    REDUCE_MAX = "reduce_max"
    REDUCE_SUM = "reduce_sum"

    # Hash as the value (Enum hashes by name), so string-keyed tables and sets still find ops.
    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value


LEAVES = frozenset({Op.VAR, Op.CONST, Op.PARAM, Op.LOAD, Op.REF})
ARITH = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.TRUEDIV, Op.FLOORDIV, Op.MOD, Op.POW, Op.MINIMUM, Op.MAXIMUM})
COMPARE = frozenset({Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE})
LOGIC = frozenset({Op.AND, Op.OR, Op.XOR})
SHIFT = frozenset({Op.LSHIFT, Op.RSHIFT})
BINARY = ARITH | COMPARE | LOGIC | SHIFT
# Unary ops that keep an integer an integer (neg, abs) or flip bits (invert).
INT_UNARY = frozenset({Op.NEG, Op.ABS, Op.INVERT})
FLOAT_UNARY = frozenset({Op.EXP, Op.EXP2, Op.LOG, Op.LOG2, Op.SQRT, Op.TANH, Op.SIGMOID, Op.RELU, Op.ELU,
                         Op.SOFTPLUS, Op.LOGSIGMOID, Op.FLOOR, Op.CEIL})
CASTS = frozenset({Op.FLOAT, Op.INT})  # int() truncates toward zero, like Python int() and torch .long()
UNARY = INT_UNARY | FLOAT_UNARY | CASTS
REDUCTIONS = frozenset({Op.SOFTMAX, Op.REDUCE_MAX, Op.REDUCE_SUM})
WHERE = frozenset({Op.WHERE})


def arity(op: Op) -> int:
    """The number of operands of a non-leaf op."""
    return 3 if op in WHERE else 2 if op in BINARY else 1
