"""Gradients of every library variant (dQ, dK, dV and captured float tensors such as bias
tables) against float64 autograd through the independent plain-torch oracles of
tests/oracles.py, which never import attncomp; gradcheck on the reference."""

import pytest
import torch
from oracles import oracle

import attncomp as ac
from attncomp.backends.triton.codegen import differentiable
from attncomp.ir.lowering import lower
from attncomp.variants import REGISTRY, example_inputs

NAMES = sorted(REGISTRY)


def flex_accepts(name):
    try:
        ac.compile(REGISTRY[name].build(), backend="flex", compiled=False)
    except ac.AttncompError:
        return False
    return True


SPECS = [n for n in NAMES if flex_accepts(n)]  # attention specs: one softmax of a score mod, masked
TRITON = [n for n in NAMES if differentiable(lower(REGISTRY[n].build()))]


def case(name, q_len, kv_len=None, heads=4, head_dim=8, batch=2, **overrides):
    variant = REGISTRY[name]
    program = variant.build(**overrides)
    ex = variant.example(q_len, kv_len, batch=batch, heads=heads, head_dim=head_dim, **overrides)
    tensors = variant.example_tensors(ex, seed=7, **overrides)
    inputs = example_inputs(program, ex, dtype=torch.float64, seed=3)
    return variant, program, ex, tensors, inputs


def gradients(fn, inputs, tensors, seed=11, dtype=torch.float64):
    """``fn``'s output and the gradients of ``<out, g>`` (g random) with respect to every
    input and every floating-point runtime tensor, by name (zeros where unused). Inputs
    in ``dtype``; float tensors in float64, or as declared when ``dtype`` is lower."""
    xs = {k: v.detach().to(dtype).requires_grad_() for k, v in inputs.items()}
    wide = dtype == torch.float64
    ts = {k: (v.detach().double() if wide else v.detach().clone()).requires_grad_() if v.is_floating_point() else v
          for k, v in tensors.items()}
    out = fn(xs, ts)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    wrt = {**xs, **{k: t for k, t in ts.items() if t.requires_grad}}
    grads = torch.autograd.grad((out.double() * g).sum(), list(wrt.values()), allow_unused=True)
    return out, {k: torch.zeros_like(t) if d is None else d for (k, t), d in zip(wrt.items(), grads)}


def check(name, q_len, kv_len=None, heads=4, backend="reference", options=None, **overrides):
    variant, program, ex, tensors, inputs = case(name, q_len, kv_len, heads, **overrides)
    kernel = ac.compile(program, backend=backend, **(options or {}))
    out, got = gradients(lambda xs, ts: kernel(**xs, **ts), inputs, tensors)
    args = variant.arguments(**overrides)
    want_out, want = gradients(lambda xs, ts: oracle(name, args, ts, xs, ex.q_len, ex.kv_len), inputs, tensors)
    torch.testing.assert_close(out.double(), want_out, rtol=1e-9, atol=1e-10)
    assert got.keys() == want.keys()
    for k in got:
        assert not torch.isnan(got[k]).any(), k
        # a captured table declared float32 is read in float32, as torch would: its gradient
        # carries float32's rounding of the values it was computed from
        tol = dict(rtol=1e-7, atol=1e-9) if k in inputs else dict(rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got[k].double(), want[k], **tol, msg=lambda m, k=k: f"d{k}: {m}")
    return got


@pytest.mark.parametrize("name", NAMES)
def test_reference_gradients_match_the_oracle(name):
    check(name, 100)


@pytest.mark.parametrize("length", [1, 63, 200, 257])
@pytest.mark.parametrize("name", ["causal", "document", "alibi", "t5_bias", "softcap", "gqa", "differential"])
def test_reference_gradients_ragged_lengths(name, length):
    check(name, length, heads=8 if name == "gqa" else 4)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].cross])
@pytest.mark.parametrize("q_len,kv_len", [(70, 133), (133, 70)])
def test_reference_gradients_cross_lengths(name, q_len, kv_len):
    check(name, q_len, kv_len)


@pytest.mark.parametrize("backend,dtype,tol", [("reference", torch.float64, 1e-9), ("triton", torch.float32, 1e-5)])
def test_fully_masked_rows_have_zero_gradients(backend, dtype, tol):
    """Rows with no key give 0 and send no gradient anywhere: not NaN, not a stray term."""
    def late(b, h, q_idx, kv_idx):
        return (q_idx >= 40) & (kv_idx <= q_idx)
    kernel = ac.compile(ac.attention(mask=late, name="late"), backend=backend,
                        **({"block": (16, 16)} if backend == "triton" else {}))
    q, k, v = (torch.randn(1, 2, 64, 16, dtype=dtype, requires_grad=True) for _ in range(3))
    out = kernel(q, k, v)
    g = torch.randn_like(out)
    out.backward(g)
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[:, :, :40], torch.zeros_like(q.grad[:, :, :40]))
    # K and V get exactly what the rows >= 40 send them, computed in float64 without the empty rows
    q2, k2, v2 = (t.detach().double() for t in (q[:, :, 40:], k, v))
    k2.requires_grad_(), v2.requires_grad_()
    s = (q2 @ k2.transpose(-1, -2) / 4).masked_fill(torch.ones(24, 64, dtype=torch.bool).triu(41), float("-inf"))
    (torch.softmax(s, -1) @ v2).backward(g[:, :, 40:].double())
    torch.testing.assert_close(k.grad.double(), k2.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(v.grad.double(), v2.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_reference_gradcheck(name):
    """torch.autograd.gradcheck in float64 (fast mode: random projections of the Jacobian)."""
    variant, program, ex, tensors, inputs = case(name, 12, heads=2, head_dim=4)
    kernel = ac.compile(program)
    # tables declared float32 are read in float32, too coarse for finite differences: their
    # gradients are checked against the oracle above
    learn = [k for k, t in tensors.items() if t.is_floating_point() and program.tensors[k].dtype == "float64"]
    names = list(inputs) + learn
    values = [inputs[k].requires_grad_() for k in inputs] + [tensors[k].requires_grad_() for k in learn]

    def fn(*args):
        given = dict(zip(names, args))
        return kernel(**{k: given[k] for k in inputs}, **{**tensors, **{k: given[k] for k in learn}})
    assert torch.autograd.gradcheck(fn, values, fast_mode=True)


def test_flex_backward_on_cpu_is_refused_by_name():
    """torch has no FlexAttention backward on CPU (compiled or eager): an AttncompError that
    names the backends that can, never a detached output or torch's NotImplementedError."""
    for compiled in (True, False):
        kernel = ac.compile(ac.variants.causal(), backend="flex", compiled=compiled)
        q, k, v = (torch.randn(1, 2, 64, 8, requires_grad=True) for _ in range(3))
        with pytest.raises(ac.AttncompError, match=r"FlexAttention has no backward on CPU") as err:
            kernel(q, k, v)
        assert "backend='reference'" in str(err.value) and "triton" in str(err.value)
        if not compiled:  # (compiling flex on CPU takes half a minute; the refusal comes first)
            with torch.no_grad():
                assert kernel(q, k, v).shape == q.shape  # inference is unaffected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", SPECS)
def test_flex_gradients_on_gpu(name):
    """FlexAttention's own backward with attncomp's BlockMask, captured tensors included."""
    variant, program, ex, tensors, inputs = case(name, 200, heads=4)
    kernel = ac.compile(program, backend="flex")
    cuda = lambda d: {k: v.cuda() for k, v in d.items()}  # noqa: E731
    out, got = gradients(lambda xs, ts: kernel(**cuda(xs), **cuda(ts)), inputs, tensors)
    args = variant.arguments()
    _, want = gradients(lambda xs, ts: oracle(name, args, ts, xs, ex.q_len, ex.kv_len), inputs, tensors)
    for k in got:
        err = (got[k].double().cpu() - want[k]).abs().max() / want[k].abs().max().clamp_min(1e-12)
        assert err < 1e-4, (k, float(err))


def check_triton(name, q_len, kv_len=None, heads=2, block=(16, 32), batch=2, **overrides):
    """Triton's gradients (float32, interpreter) against the float64 oracle's, within twice
    the error of the float32 reference's own gradients (error-ratio tolerance)."""
    variant, program, ex, tensors, inputs = case(name, q_len, kv_len, heads, batch=batch, **overrides)
    args = variant.arguments(**overrides)
    _, want = gradients(lambda xs, ts: oracle(name, args, ts, xs, ex.q_len, ex.kv_len), inputs, tensors)
    kernel = ac.compile(program, backend="triton", block=block, count=True)
    _, got = gradients(lambda xs, ts: kernel(**xs, **ts), inputs, tensors, dtype=torch.float32)
    reference = ac.compile(program)
    _, base = gradients(lambda xs, ts: reference(**xs, **ts), inputs, tensors, dtype=torch.float32)
    assert got.keys() == want.keys()
    for k in got:
        assert torch.isfinite(got[k]).all(), k
        err, ref_err = ((x.double() - want[k]).abs().max().item() for x in (got[k], base[k]))
        assert err <= 2 * ref_err + 1e-6 * (1 + want[k].abs().max().item()), (k, err, ref_err)
    return kernel, program, ex, tensors


@pytest.mark.parametrize("name", TRITON)
def test_triton_gradients_match_the_oracle(name):
    if REGISTRY[name].length is not None:  # grids fix their length (3-D: 200-500 tokens): one batch, one head
        check_triton(name, 0, heads=1, batch=1)
    else:
        check_triton(name, 64, heads=4 if name in ("alibi", "gqa") else 2)


@pytest.mark.parametrize("length", [1, 63, 200, 257])
@pytest.mark.parametrize("name", ["causal", "document", "gqa"])
def test_triton_gradients_ragged_lengths(name, length):
    check_triton(name, length, heads=4 if name == "gqa" else 1, batch=1 if name == "gqa" else 2)


@pytest.mark.parametrize("name", ["sliding_window", "t5_bias"])
@pytest.mark.parametrize("q_len,kv_len", [(40, 97), (97, 40)])
def test_triton_gradients_cross_lengths(name, q_len, kv_len):
    check_triton(name, q_len, kv_len)


@pytest.mark.parametrize("name,length", [("document", 150), ("neighborhood_2d", None), ("per_head_window", 100)])
def test_triton_backward_tile_contract(name, length):
    """The dQ pass visits exactly each row's partial and full tiles, the dK/dV pass each
    column's; the mask is evaluated on partial tiles only."""
    kernel, program, ex, tensors = check_triton(name, length or 0, heads=2)
    layout = ac.analyze(program, ex.q_len, ex.kv_len, (16, 32), tensors=tensors, batch=ex.batch, heads=ex.heads)
    rows_q, rows_k = kernel.last_backward_stats
    partial, full = layout.row_blocks()
    stats_q = rows_q.view(ex.batch, ex.heads, -1, 2)
    stats_k = rows_k.view(ex.batch, ex.heads, -1, 2)
    for b in range(ex.batch):
        for h in range(ex.heads):
            g = (b % layout.shape[0], h % layout.shape[1])
            grid = layout.class_grid(b, h)  # 0 empty, 1 partial, 2 full, per (q block, key block)
            assert stats_q[b, h, :, 0].tolist() == (partial[g] + full[g]).tolist()
            assert stats_q[b, h, :, 1].tolist() == partial[g].tolist()
            assert stats_k[b, h, :, 0].tolist() == (grid > 0).sum(0).tolist()
            assert stats_k[b, h, :, 1].tolist() == (grid == 1).sum(0).tolist()


@pytest.mark.parametrize("name", ["differential", "sigmoid_attention", "causal_linear", "gated_attention"])
def test_triton_cascades_refuse_gradients_by_name(name):
    variant, program, ex, tensors, inputs = case(name, 40)
    kernel = ac.compile(program, backend="triton", block=(16, 16))
    xs = {k: v.float().requires_grad_() for k, v in inputs.items()}
    with pytest.raises(ac.AttncompError, match="no backward"):
        kernel(**xs, **tensors)


def test_triton_refuses_a_score_mod_without_a_derivative():
    """A float // has no derivative (nor in torch): no backward kernel, a named refusal, never
    a silent zero."""
    spec = ac.attention(score=lambda s, b, h, q_idx, kv_idx: s + (s // 2.0), name="stepped")
    kernel = ac.compile(spec, backend="triton", block=(16, 16))
    q, k, v = (torch.randn(1, 1, 32, 16, requires_grad=True) for _ in range(3))
    with pytest.raises(ac.AttncompError, match="no backward"):
        kernel(q, k, v)
