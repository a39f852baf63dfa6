"""Ops as data: every op has a row in every interpreter's table, and the rewrite engine."""

import pytest

from attncomp.backends.torch_syntax import torch_syntax
from attncomp.backends.triton.syntax import TritonPrinter
from attncomp.errors import TraceError
from attncomp.ir import dtypes, evaluate, printer
from attncomp.ir import expr as E
from attncomp.ir.analysis import intervals
from attncomp.ir.ops import BINARY, LEAVES, REDUCTIONS, UNARY, WHERE, Op, arity
from attncomp.ir.passes.fold import FOLD
from attncomp.ir.rewrite import Pat, Rules, graph_rewrite
from attncomp.simulator import costs

POINTWISE = sorted(UNARY | BINARY | WHERE)


def _printable(syntax, op):
    return op in syntax.infix or op in syntax.prefix or op in syntax.calls or op in syntax.override


def test_groups_partition_the_ops():
    groups = [LEAVES, UNARY, BINARY, WHERE, REDUCTIONS]
    assert set().union(*groups) == set(Op)
    assert sum(len(g) for g in groups) == len(Op)


@pytest.mark.parametrize("op", POINTWISE)
def test_every_pointwise_op_has_a_row_in_every_table(op):
    assert op in dtypes.TORCH_FN  # its dtype (torch's promotion) and its meaning
    assert op in evaluate.POINTWISE
    assert op in intervals.RANGES or op in intervals.AFFINE or op in intervals.BOOLEAN
    assert op in costs.WORK
    assert _printable(printer.CASCADE, op), "the cascade syntax (and so the parser) needs a name for it"
    assert _printable(torch_syntax(), op)
    assert _printable(TritonPrinter({}).syntax, op)


@pytest.mark.parametrize("op", sorted(LEAVES | REDUCTIONS))
def test_leaves_and_reductions_have_costs(op):
    assert op in costs.WORK


def _result_of_ints(op):
    operands = ("bool",) * (op in WHERE) + ("int64",) * (arity(op) - (op in WHERE))
    try:
        return dtypes.KIND[dtypes.infer(op, operands)]
    except TraceError:  # torch has no integer form (elu)
        return E.FLOAT


def test_folding_covers_the_integer_ops():
    # Float results are never folded (kernels compute them in their own precision); these
    # integer-valued ones are left to the backends too.
    unfolded = {Op.FLOOR, Op.CEIL, Op.RELU, Op.INT}
    integer = {op for op in POINTWISE if _result_of_ints(op) != E.FLOAT} - unfolded
    assert integer <= set(FOLD)


def test_ops_compare_and_hash_as_their_strings():
    node = E.binary("add", E.var("m"), E.const(1))
    assert node.op is Op.ADD and node.op == "add" and {"add": 1}[node.op] == 1
    assert hash(node) == hash(E.Expr("add", node.src, None, E.INT))
    assert arity(Op.NEG) == 1 and arity(Op.LT) == 2 and arity(Op.WHERE) == 3


def test_pattern_names_bound_twice_must_match_equal_nodes():
    m, n = E.var("m"), E.var("n")
    same = Pat(Op.MINIMUM, Pat(name="x"), Pat(name="x"))
    assert same.match(E.binary("minimum", m, m), {})
    assert not same.match(E.binary("minimum", m, n), {})


def test_pattern_args_match_type_and_value():
    zero = Pat(Op.CONST, arg=0)
    assert zero.match(E.const(0), {})
    assert not zero.match(E.const(False), {}) and not zero.match(E.const(0.0), {})


def test_first_rule_that_returns_wins_and_none_declines():
    seen = []
    rules = Rules([(Pat(Op.VAR, name="v"), lambda v: seen.append("declined")),
                   (Pat(Op.VAR, name="v"), lambda v: E.const(1)),
                   (Pat(Op.VAR, name="v"), lambda v: E.const(2))])
    assert graph_rewrite(E.var("m"), rules) == E.const(1)
    assert seen == ["declined"]


def test_rewrite_results_are_not_rewritten_again():
    m = E.var("m")
    clamp = E.binary("minimum", m, E.const(7))
    out = E.substitute(E.binary("add", m, m), {m: clamp})
    assert out == E.binary("add", clamp, clamp)


def test_rewrite_rebuilds_types_and_shares_nodes():
    m = E.var("m")
    shared = E.binary("sub", m, E.const(1))
    expr = E.binary("mul", shared, shared)
    out = E.substitute(expr, {m: E.var("score")})
    assert out.dtype == E.FLOAT and out.src[0] is out.src[1]
    assert E.substitute(expr, {}) is expr


def test_anonymous_patterns_bind_nothing():
    where = Pat(Op.WHERE, Pat(), Pat(name="x"), Pat(name="x"))
    bound = {}
    m = E.var("m")
    assert where.match(E.where(E.binary("ge", m, E.var("n")), m, m), bound) and list(bound) == ["x"]
