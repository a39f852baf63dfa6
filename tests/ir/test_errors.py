"""Bad input raises AttncompError naming the problem, located in the user's file, never
pointing into attncomp's own source."""

import math
import os
import traceback

import pytest
import torch

import attncomp as ac

PACKAGE_DIR = os.path.dirname(ac.__file__)
HERE = os.path.basename(__file__)
doc_ids = torch.zeros(2, 64, dtype=torch.int32)
bias_vec = torch.zeros(64)


def raises(match, fn, *args, located=True, **kwargs):
    with pytest.raises(ac.AttncompError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert PACKAGE_DIR not in message and "attncomp/ir" not in message and "attncomp/backends" not in message, message
    assert match.lower() in message.lower(), message
    if located:
        assert HERE in message, message
    return message


# --- tracing --------------------------------------------------------------------------------

def test_python_and_on_proxies():
    def window(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx and q_idx - kv_idx < 8
    msg = raises("use `&`", ac.attention, mask=window)
    assert "window" in msg and "q_idx >= kv_idx" in msg


def test_if_on_proxy():
    def branchy(score, b, h, q_idx, kv_idx):
        if q_idx > kv_idx:
            return score
        return score * 0.5
    raises("Python bool", ac.attention, score=branchy)


def test_python_min_on_proxies():
    def clamp_window(b, h, q_idx, kv_idx):
        return kv_idx >= min(q_idx - 4, 0)
    raises("torch.minimum", ac.attention, mask=clamp_window)


def test_mask_wrong_arity():
    def three(b, h, q_idx):
        return q_idx >= 0
    raises("takes 3 argument(s), but a FlexAttention mask_mod takes 4", ac.attention, mask=three)


def test_score_wrong_arity():
    def four(score, b, h, q_idx):
        return score
    raises("score_mod takes 5", ac.attention, score=four)


def test_mask_returns_non_boolean():
    def offset(b, h, q_idx, kv_idx):
        return q_idx - kv_idx
    raises("must return a boolean expression", ac.attention, mask=offset)


def test_non_integer_index():
    def halves(b, h, q_idx, kv_idx):
        return doc_ids[b, q_idx / 2] == doc_ids[b, kv_idx]
    raises("must be an integer expression", ac.attention, mask=halves)


def test_wrong_number_of_indices_on_declared_tensor():
    doc = ac.tensor("doc", ("B", "L"), "int32")

    def one_index(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]
    raises("has 2 dimension(s)", ac.attention, mask=one_index)


def test_unsupported_torch_function():
    def wavy(score, b, h, q_idx, kv_idx):
        return score + torch.sin(q_idx)
    raises("torch.sin is not supported", ac.attention, score=wavy)


def test_math_module_on_proxy():
    def logdist(score, b, h, q_idx, kv_idx):
        return score - math.log(kv_idx + 1)
    raises("needs a concrete value", ac.attention, score=logdist)


def test_unindexed_captured_tensor():
    def add_vector(score, b, h, q_idx, kv_idx):
        return score + bias_vec
    raises("index it with the symbolic indices", ac.attention, score=add_vector)


def test_score_ignoring_score():
    def positional_only(score, b, h, q_idx, kv_idx):
        return (q_idx - kv_idx) * 1.0
    raises("ignores its score argument", ac.attention, score=positional_only)


def test_bad_tensor_declaration():
    raises("unknown dtype", ac.tensor, "doc", ("B", "L"), "int33")


# --- cascades -------------------------------------------------------------------------------

def test_cascade_undefined_tensor():
    msg = raises("undefined tensor P2", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale)
        O[b,h,m,e] = (P - P2[b,h,m,n]) * V[b,h,n,e]
    """)
    assert "line 4" in msg and "O[b,h,m,e] = (P - P2[b,h,m,n])" in msg


def test_cascade_letter_mismatch():
    raises("index letter(s) f on the left", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,f] = softmax[n](S) * V[b,h,n,e]
    """)


def test_cascade_undeclared_param():
    raises("undeclared name 'lam'", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = lam * softmax[n](S) * V[b,h,n,e]
    """)


def test_cascade_shape_conflict():
    raises("shape conflict: P has 4 indices", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale)
        O[b,h,m,e] = P[b,h,m] * V[b,h,n,e]
    """)


def test_cascade_syntax_error():
    msg = raises("syntax error", ac.cascade, "S[b,h,m,n] = Q[b,h,m,d] * * K[b,h,n,d]")
    assert "^" in msg


def test_cascade_unknown_function():
    raises("unknown function gelu()", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = gelu(S) * V[b,h,n,e]
    """)


def test_cascade_reduction_hides_summed_letter():
    raises("summed outside the reduction", ac.cascade, "O[b,h,m,e] = softmax[n](Q[b,h,m,d] * K[b,h,n,d]) * V[b,h,n,e]")


def test_cascade_defines_tensor_twice():
    raises("defined twice", ac.cascade, """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = S * V[b,h,n,e]
    """)


def test_cascade_two_masks():
    raises("mask is defined twice", ac.cascade, """
        mask[b,h,m,n] = m >= n
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = S * V[b,h,n,e]
    """, mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx)


def test_cascade_unsized_letter():
    raises("not indices of any input", ac.cascade, """
        input Q[b,h,m,d], K[b,h,n,d], V[b,h,n,e]
        T[b,h,m,z] = Q[b,h,m,z]
        O[b,h,m,e] = T * V
    """.replace("Q[b,h,m,z]", "Q[b,h,m,d] * 0 + z"))


# --- call time ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def causal_kernel():
    return ac.compile(ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, name="causal"))


@pytest.fixture(scope="module")
def doc_kernel():
    doc = ac.tensor("doc", ("B", "L"), "int32")
    return ac.compile(ac.attention(mask=lambda b, h, q_idx, kv_idx: doc[b, q_idx] == doc[b, kv_idx], name="docs"))


def qkv(b=2, h=4, s=32, d=8, hk=None, dk=None):
    return torch.randn(b, h, s, d), torch.randn(b, hk or h, s, dk or d), torch.randn(b, hk or h, s, d)


def test_call_wrong_rank(causal_kernel):
    q, k, v = qkv()
    raises("needs 4 dimensions [b,h,m,d]", causal_kernel, q[0], k, v)


def test_call_head_dim_mismatch(causal_kernel):
    q, k, v = qkv(dk=16)
    msg = raises("index letter d has size 8 in Q", causal_kernel, q, k, v)
    assert "causal" in msg


def test_call_gqa_heads_do_not_divide(causal_kernel):
    q, k, v = qkv(h=4, hk=3)
    raises("does not divide", causal_kernel, q, k, v)


def test_call_missing_input(causal_kernel):
    q, k, v = qkv()
    raises("missing input(s) ['V']", causal_kernel, q, k)


def test_call_missing_runtime_tensor(doc_kernel):
    raises("needs runtime tensor doc[B, L]", doc_kernel, *qkv())


def test_call_runtime_tensor_batch_mismatch(doc_kernel):
    raises("but the batch size is 2", doc_kernel, *qkv(), doc=torch.zeros(3, 32, dtype=torch.int32))


def test_call_runtime_tensor_dtype(doc_kernel):
    raises("must hold int values", doc_kernel, *qkv(), doc=torch.zeros(2, 32))


def test_call_runtime_tensor_too_short(doc_kernel):
    raises("outside 0..15", doc_kernel, *qkv(), doc=torch.zeros(2, 16, dtype=torch.int32))


def test_call_unexpected_tensor(causal_kernel):
    raises("unexpected tensor 'doc'", causal_kernel, *qkv(), doc=torch.zeros(2, 32))


def test_compile_non_program():
    raises("expects a Program", ac.compile, lambda b, h, q_idx, kv_idx: q_idx >= kv_idx)


def test_compile_unknown_backend():
    raises("unknown backend 'cuda'", ac.compile, ac.attention(), backend="cuda")


# --- what the user's traceback shows ----------------------------------------------------------

def _frames(err):
    return [os.path.abspath(f.filename) for f in traceback.extract_tb(err.__traceback__)]


@pytest.mark.parametrize("call", [
    lambda: ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx and q_idx < 8),
    lambda: ac.cascade("O[b,h,m,e] = gelu(Q[b,h,m,d] * K[b,h,n,d]) * V[b,h,n,e]"),
    lambda: ac.analyze(ac.attention(), q_len=0),
    lambda: ac.compile(ac.attention(), backend="cuda"),
    lambda: ac.compile(ac.attention())(*qkv(dk=16)),
    lambda: ac.simulate(ac.attention(), heads=4, kv_heads=3),
    lambda: ac.tensor("doc", ("B",), "int33"),
], ids=["trace", "cascade", "analyze", "compile", "call", "simulate", "tensor"])
def test_traceback_holds_only_user_frames(call):
    with pytest.raises(ac.AttncompError) as info:
        call()
    frames = _frames(info.value)
    assert frames and not [f for f in frames if f.startswith(PACKAGE_DIR + os.sep)], frames
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert os.path.basename(frames[-1]) == HERE


def test_error_fields_are_what_str_shows():
    def halves(b, h, q_idx, kv_idx):
        return doc_ids[b, q_idx / 2] == doc_ids[b, kv_idx]
    with pytest.raises(ac.AttncompError) as info:
        ac.attention(mask=halves)
    err = info.value
    assert err.variant == "halves" and err.hint == "Use // for integer division"
    assert err.location.filename == __file__ and "q_idx / 2" in err.location.line
    assert err.text == "index 1 of tensor doc_ids must be an integer expression, got float expression q_idx / 2"
    assert str(err) == f"halves: {err.text}\n  hint: {err.hint}\n  at {err.location}"


def test_ir_constructors_leave_the_location_to_the_boundary():
    from attncomp.ir import expr as E
    with pytest.raises(ac.AttncompError) as info:
        E.binary("and", E.var("m"), E.const(1.5))
    assert info.value.location is None and info.value.text == "'&' needs bool or int operands (a float was given): m, 1.5"
