"""``str(program)`` parses back to an equal Program: every library variant, random
masks and score mods, and cascades."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import bool_exprs, float_exprs, int_exprs

import attncomp as ac
from attncomp.ir import expr as E
from attncomp.ir import parse_program
from attncomp.ir.printer import format_expr
from attncomp.ir.softmax import SoftmaxParts, softmax_program
from attncomp.variants import REGISTRY


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_library_variant_round_trips(name):
    program = REGISTRY[name].build()
    text = str(program)
    again = parse_program(text, name=program.name)
    assert again == program
    assert str(again) == text


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 5000), sinks=st.integers(0, 64))
def test_parametrized_variants_round_trip(window, sinks):
    for program in (ac.variants.sliding_window(window), ac.variants.streaming(sinks, window),
                    ac.variants.neighborhood((window % 40 + 8, 9), 7, stride=(1, 2))):
        assert parse_program(str(program)) == program


@settings(max_examples=300, deadline=None)
@given(mask=bool_exprs(), score=float_exprs())
def test_random_masks_and_scores_round_trip(mask, score):
    score = E.binary("add", E.var("score"), score)  # a score mod reads the score
    program = softmax_program(SoftmaxParts(mask, score, None), "random")
    assert parse_program(str(program)) == program


@settings(max_examples=200, deadline=None)
@given(x=int_exprs(16))
def test_int_expression_printing_is_parseable_python(x):
    import ast
    text = format_expr(x)
    ast.parse(text, mode="eval")  # valid Python precedence and syntax
    mask = E.binary("ge", x, E.const(0))
    program = softmax_program(SoftmaxParts(mask, None, 0.5), "random")
    assert parse_program(str(program)) == program


def test_cascade_with_params_and_inputs_round_trips():
    for program in (ac.variants.differential(0.25), ac.variants.causal_linear(normalize=True),
                    ac.variants.gated_attention(), ac.variants.sigmoid_attention(-3.5)):
        assert parse_program(str(program)) == program


def test_negative_constants_and_powers_print_unambiguously():
    m = E.var("m")
    e = E.binary("pow", E.const(-2), E.binary("pow", m, E.const(-1)))
    assert format_expr(e) == "(-2) ** m ** (-1)"
    e = E.binary("sub", m, E.const(-3))
    assert format_expr(e) == "m - -3"
    e = E.unary("neg", E.binary("pow", m, E.const(2)))
    assert format_expr(e) == "-m ** 2"
