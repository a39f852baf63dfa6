"""Passes: hoisting -inf score mods into the mask, folding, sympy simplification."""

import importlib
import subprocess
import sys
from unittest import mock

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import and_or_masks, bool_exprs
from torch.nn.attention.flex_attention import and_masks

import attncomp as ac
from attncomp.ir import expr as E
from attncomp.ir.evaluate import dense_mask
from attncomp.ir.passes import fold, fold_expr, hoist_masks, optimize, simplify, simplify_mask
from attncomp.ir.softmax import SoftmaxParts, softmax_program

simplify_module = importlib.import_module("attncomp.ir.passes.simplify")
DOC_VALUES = torch.randint(-3, 5, (3, 64), generator=torch.Generator().manual_seed(1)).to(torch.int32)
HW_VALUES = torch.tensor([2, -1, 7, 0], dtype=torch.int32)


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def test_hoisted_causal_score_mod_equals_causal_mask():
    as_score = ac.variants.causal_score()
    hoisted = hoist_masks(as_score)
    assert hoisted.mask == ac.variants.causal().mask
    assert hoisted.eqns == ac.variants.causal().eqns
    for L in (1000, 1337):
        assert ac.analyze(as_score, L, block=64).counts == ac.analyze(ac.variants.causal(), L, block=64).counts
    q, k, v = (torch.randn(1, 2, 77, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(ac.compile(hoisted)(q, k, v), ac.compile(as_score)(q, k, v))
    torch.testing.assert_close(ac.compile(hoisted)(q, k, v), ac.compile(ac.variants.causal())(q, k, v))


def test_hoist_forms():
    def flipped(score, b, h, q_idx, kv_idx):
        return torch.where(q_idx < kv_idx, -float("inf"), score * 2.0)

    def additive(score, b, h, q_idx, kv_idx):
        return score + torch.where(q_idx - kv_idx < 8, 0.0, -float("inf"))

    def data_dependent(score, b, h, q_idx, kv_idx):
        return torch.where(score > 0, score, -float("inf"))

    p = hoist_masks(ac.attention(mask=causal, score=flipped))
    assert str(p.mask) == "(m >= n) & ~(m < n)"
    assert str(p.eqns[1].rhs.src[0]) == "S[b,h,m,n] * scale * 2.0"
    assert str(hoist_masks(ac.attention(score=additive)).mask) == "m - n < 8"
    unchanged = ac.attention(score=data_dependent)
    assert hoist_masks(unchanged) is unchanged
    assert str(optimize(ac.attention(mask=causal, score=flipped)).mask) == "m >= n"
    q, k, v = (torch.randn(1, 1, 40, 8, dtype=torch.float64) for _ in range(3))
    spec = ac.attention(score=additive)
    torch.testing.assert_close(ac.compile(hoist_masks(spec))(q, k, v), ac.compile(spec)(q, k, v))


def test_fold_and_identities():
    W = ac.param("window", 10)
    spec = ac.attention(mask=and_masks(causal, lambda b, h, q_idx, kv_idx: (q_idx - kv_idx) // 2 // 5 < W * 2))
    assert str(spec.mask) == "True & (m >= n) & ((m - n) // 2 // 5 < window * 2)"
    assert str(fold(spec).mask) == "(m >= n) & ((m - n) // 10 < 20)"
    assert str(fold(spec, fold_params=False).mask) == "(m >= n) & ((m - n) // 10 < window * 2)"
    assert fold(ac.variants.causal()) is ac.variants.causal() or fold(ac.variants.causal()) == ac.variants.causal()
    m = E.var("m")
    assert fold_expr(E.binary("add", E.binary("mul", m, E.const(1)), E.const(0))) == m
    assert fold_expr(E.where(E.const(True), m, E.const(3))) == m
    assert fold_expr(E.binary("floordiv", E.const(7), E.const(0))).op == "floordiv"  # left for the evaluator
    always = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= 0) | True)
    assert fold(always).mask is None


def test_mod_of_mod_folds_only_when_the_moduli_divide():
    m = E.var("m")
    mod = lambda x, k: E.binary("mod", x, E.const(k))
    assert fold_expr(mod(mod(m, 128), 8)) == mod(m, 8)
    assert fold_expr(mod(mod(m, 12), 5)) == mod(mod(m, 12), 5)
    values = torch.arange(-300, 300)
    assert torch.equal(values % 128 % 8, values % 8)  # Python floor semantics, negatives included


def test_simplify_canonicalizes_comparisons_and_logic():
    m, n = E.var("m"), E.var("n")
    shifted = E.binary("ge", E.binary("sub", E.binary("sub", m, E.const(5)), E.binary("sub", n, E.const(5))), E.const(0))
    assert str(simplify_mask(shifted)) == "m >= n"
    a, b = E.binary("ge", m, n), E.binary("lt", E.binary("sub", m, n), E.const(9))
    assert simplify_mask(E.binary("or", E.binary("and", a, b), a)) == a
    always = E.binary("le", E.binary("sub", m, m), E.const(0))
    assert simplify_mask(always) == E.const(True)
    spec = ac.variants.causal()
    assert simplify(spec) is spec


@settings(max_examples=300, deadline=None)
@given(mask=bool_exprs(12), q_len=st.integers(1, 40), kv_len=st.integers(1, 40))
def test_optimize_preserves_the_mask(mask, q_len, kv_len):
    spec = softmax_program(SoftmaxParts(mask, None, None), "random")
    tensors = {"doc": DOC_VALUES, "hw": HW_VALUES}
    before = dense_mask(mask, q_len, kv_len, tensors, batch=3, heads=4)
    optimized = optimize(spec).mask
    after = dense_mask(optimized, q_len, kv_len, tensors, batch=3, heads=4)
    assert torch.equal(before, after)


@settings(max_examples=400, deadline=None)
@given(mask=and_or_masks())
def test_skipping_sympy_gives_sympys_answer(mask):
    fast = simplify_module.simplify_mask.__wrapped__(mask)
    with mock.patch.object(simplify_module, "_cannot_shrink", lambda e, leaves: False):
        assert simplify_module.simplify_mask.__wrapped__(mask) == fast


def test_common_masks_are_analyzed_without_importing_sympy():
    code = """if True:
        import sys
        import torch
        import attncomp as ac
        doc = torch.arange(4096, dtype=torch.int32) // 1000
        def sliding_window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < 1024)
        def document(b, h, q_idx, kv_idx):
            return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)
        for mask in (sliding_window, document, lambda b, h, q_idx, kv_idx: q_idx >= kv_idx):
            ac.analyze(ac.attention(mask=mask), 4096, block=128)
        print(sorted(m for m in ("sympy", "numpy.ma") if m in sys.modules))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
