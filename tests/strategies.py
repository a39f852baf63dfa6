"""Hypothesis strategies for random IR expressions, typed so every tree is well formed.

Masks are boolean trees over the integer ops (``+ - * // %``, ``abs``, ``min``, ``max``,
``where``, comparisons, ``& | ~``) of the letters ``b, h, m, n``, constants, parameters
and loads from small runtime tensors; score mods are float trees over ``score``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from attncomp.ir import expr as E

LETTERS = ("b", "h", "m", "n")
PARAMS = {"p": 3, "w": 7, "c": 2}
# Runtime tensors: an int table indexed by (b, position) and a per-head int vector.
DOC = E.TensorDecl("doc", (3, 64), "int32")
HEADW = E.TensorDecl("hw", (4,), "int32")
TABLE = E.TensorDecl("tab", (5,), "float32")

small_int = st.integers(-9, 12)


def _leaf_int():
    leaves = [st.sampled_from(LETTERS).map(E.var), small_int.map(E.const),
              st.sampled_from(sorted(PARAMS)).map(lambda k: E.param(k, PARAMS[k]))]
    return st.one_of(*leaves)


def int_exprs(max_leaves: int = 12, allow_loads: bool = True):
    def extend(children):
        bin_int = st.tuples(st.sampled_from(["add", "sub", "mul", "minimum", "maximum"]), children, children) \
            .map(lambda t: E.binary(*t))
        # floor division / modulo by a positive constant or parameter (never by zero)
        divisor = st.one_of(st.integers(1, 9).map(E.const), st.sampled_from(sorted(PARAMS)).map(lambda k: E.param(k, PARAMS[k])))
        divmod_ = st.tuples(st.sampled_from(["floordiv", "mod"]), children, divisor).map(lambda t: E.binary(*t))
        unary = st.tuples(st.sampled_from(["abs", "neg"]), children).map(lambda t: E.unary(*t))
        options = [bin_int, divmod_, unary]
        if allow_loads:
            # loads with in-range indices: positions clamped into the table, heads mod H
            options.append(children.map(lambda x: E.load(DOC, (E.var("b"), _clamp(x, 0, 63)))))
            options.append(children.map(lambda x: E.load(HEADW, (E.binary("mod", x, E.const(4)),))))
        return st.one_of(*options)
    return st.recursive(_leaf_int(), extend, max_leaves=max_leaves)


def _clamp(x, lo, hi):
    return E.binary("minimum", E.binary("maximum", x, E.const(lo)), E.const(hi))


def bool_exprs(max_leaves: int = 12, allow_loads: bool = True):
    ints = int_exprs(max_leaves // 2 + 1, allow_loads)
    compare = st.tuples(st.sampled_from(sorted(E.COMPARE)), ints, ints).map(lambda t: E.binary(*t))

    def extend(children):
        logic = st.tuples(st.sampled_from(["and", "or", "xor"]), children, children).map(lambda t: E.binary(*t))
        neg = children.map(lambda x: E.unary("invert", x))
        pick = st.tuples(children, children, children).map(lambda t: E.where(*t))
        return st.one_of(logic, neg, pick)
    return st.recursive(st.one_of(compare, st.booleans().map(E.const)), extend, max_leaves=max_leaves)


def float_exprs(max_leaves: int = 10):
    ints = int_exprs(4, allow_loads=False)
    leaf = st.one_of(st.just(E.var("score")), st.floats(-4, 4, allow_nan=False).map(E.const),
                     ints.map(lambda x: E.unary("float", x)),
                     ints.map(lambda x: E.load(TABLE, (_clamp(x, 0, 4),))))

    def extend(children):
        binop = st.tuples(st.sampled_from(["add", "sub", "mul", "minimum", "maximum"]), children, children) \
            .map(lambda t: E.binary(*t))
        unop = st.tuples(st.sampled_from(["tanh", "sigmoid", "neg", "abs"]), children).map(lambda t: E.unary(*t))
        pick = st.tuples(bool_exprs(4, allow_loads=False), children, children).map(lambda t: E.where(*t))
        return st.one_of(binop, unop, pick)
    return st.recursive(leaf, extend, max_leaves=max_leaves)


def and_or_masks(max_leaves: int = 7):
    """Masks that are ``&``/``|`` trees of integer comparisons, linear ones over ``m, n``
    among them: the shape of most real masks (read once, or with a comparison repeated)."""
    linear = st.recursive(st.one_of(st.sampled_from("mn").map(E.var), st.integers(-5, 5).map(E.const)),
                          lambda c: st.tuples(st.sampled_from(["add", "sub", "mul"]), c,
                                              st.one_of(c, st.integers(-3, 3).map(E.const))).map(lambda t: E.binary(*t)),
                          max_leaves=5)
    ints = st.one_of(linear, int_exprs(4))
    compare = st.tuples(st.sampled_from(sorted(E.COMPARE)), ints, ints).map(lambda t: E.binary(*t))
    return st.recursive(compare, lambda c: st.tuples(st.sampled_from(["and", "or"]), c, c).map(lambda t: E.binary(*t)),
                        max_leaves=max_leaves)
