"""Issue 22's reproductions, by name: for the same input every backend gives the same
answer, the same shape, or the same AttncompError, and no cache outlives its data.

Backends: the reference, Triton (interpreter) and eager FlexAttention; compiled flex
where the case is about compilation. Answers are judged against a float64 oracle over
torch's own dense mask, not against attncomp's evaluator.
"""

from __future__ import annotations

import functools
import operator

import pytest
import torch

import attncomp as ac
from attncomp.errors import ShapeError, TraceError, UnsupportedError
from torch_truth import attention64, torch_mask

BACKENDS = {"reference": {}, "triton": {"block": (16, 16)}, "flex": {"compiled": False}}


def kernels(spec):
    return {name: ac.compile(spec, backend=name, **options) for name, options in BACKENDS.items()}


def same_error_everywhere(spec, *args, error=ac.AttncompError, **tensors) -> str:
    """Every backend raises ``error`` with one message (up to the backend's name); returns it."""
    messages = set()
    for name, kernel in kernels(spec).items():
        with pytest.raises(error) as info:
            kernel(*args, **tensors)
        messages.add(info.value.summary.replace(f"the {name} backend", "the backend"))
    assert len(messages) == 1, messages
    return messages.pop()


def qkv(heads=2, kv_heads=None, length=64, dim=16, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, heads, length, dim, generator=gen, dtype=dtype)
    k = torch.randn(1, kv_heads or heads, length, dim, generator=gen, dtype=dtype)
    v = torch.randn(1, kv_heads or heads, length, dim, generator=gen, dtype=dtype)
    return q, k, v


def test_out_of_range_load_is_one_error_on_every_backend():
    bias = torch.randn(256)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[q_idx - kv_idx]
    message = same_error_everywhere(ac.attention(score=rel_bias, name="rel_bias"), *qkv(length=128))
    assert "index 0 of bias is `m - n`, which takes values -127..127, outside 0..255" in message


def test_load_through_a_clamp_is_in_range_everywhere():
    bias = torch.randn(256)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[(q_idx - kv_idx).clamp(0, 255)]
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, score=rel_bias)
    q, k, v = qkv(length=96)
    mask = torch_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 96, 96)
    score = lambda s, b, h, m, n: s + bias.double()[(m - n).clamp(0, 255)]
    expected = attention64(q, k, v, mask, score=score)
    for name, kernel in kernels(spec).items():
        torch.testing.assert_close(kernel(q, k, v).double(), expected, atol=2e-5, rtol=0, msg=name)


def test_more_kv_heads_than_query_heads_is_refused_everywhere():
    message = same_error_everywhere(ac.variants.causal(), *qkv(heads=2, kv_heads=4), error=ShapeError)
    assert "K has 4 heads, which does not divide the 2 query heads" in message


def test_gqa_maps_query_heads_to_the_same_kv_heads_everywhere():
    q, k, v = qkv(heads=4, kv_heads=2, length=48)
    mask = torch_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 48, 48)
    expected = attention64(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), mask)
    for name, kernel in kernels(ac.variants.causal()).items():
        torch.testing.assert_close(kernel(q, k, v).double(), expected, atol=2e-5, rtol=0, msg=name)


def test_cascade_inputs_with_their_own_head_counts_agree():
    """Issue 23: Grouped Differential Attention shares its second (noise) K across more query
    heads than the first. Each key-side input has its own head count on every backend that
    lowers the cascade, against a float64 torch oracle that repeats each input's heads."""
    gen = torch.Generator().manual_seed(3)
    q1, q2 = (torch.randn(2, 4, 40, 16, generator=gen) for _ in range(2))
    k1, v = torch.randn(2, 2, 40, 16, generator=gen), torch.randn(2, 4, 40, 16, generator=gen)
    k2 = torch.randn(2, 1, 40, 16, generator=gen)
    mask = torch_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 40, 40)
    softmax = lambda q, k: attention64(q, k, torch.eye(40, dtype=torch.float64).expand(2, 4, 40, 40), mask)
    expected = (softmax(q1, k1.repeat_interleave(2, 1)) - 0.8 * softmax(q2, k2.repeat_interleave(4, 1))) @ v.double()
    for name in ("reference", "triton"):
        out = ac.compile(ac.variants.differential(), backend=name)(q1, k1, q2, k2, v)
        torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=0, msg=name)


def grad_outcomes(spec, *args) -> dict:
    """Per backend: the output (attached to the graph) or the AttncompError's summary."""
    out = {}
    for name, kernel in kernels(spec).items():
        try:
            result = kernel(*args)
        except ac.AttncompError as err:
            out[name] = err.summary
        else:
            assert result.requires_grad and result.grad_fn is not None, name  # never detached
            out[name] = result
    return out


def test_inputs_that_require_grad_get_gradients_or_a_named_refusal():
    """Training I: reference and Triton are differentiable and agree; FlexAttention on CPU
    (where torch has no backward) and a Triton cascade (Training II) refuse by name. No
    backend returns a detached output."""
    q, k, v = qkv()
    q.requires_grad_(True)
    got = grad_outcomes(ac.variants.causal(), q, k, v)
    assert "FlexAttention has no backward on CPU" in got["flex"]
    g = torch.randn_like(got["reference"])
    (dq_ref,), (dq_triton,) = (torch.autograd.grad(got[n], q, g) for n in ("reference", "triton"))
    torch.testing.assert_close(dq_triton, dq_ref, atol=2e-5, rtol=1e-4)
    with pytest.raises(UnsupportedError, match=r"require\(s\) grad.*detached"):
        ac.compile(ac.variants.sigmoid_attention(), backend="triton", block=(16, 16))(q, k, v)
    with torch.no_grad():  # inference: fine
        for kernel in kernels(ac.variants.causal()).values():
            assert kernel(q, k, v).shape == q.shape


def test_a_captured_tensor_that_requires_grad_gets_its_gradient():
    slopes = torch.rand(2, requires_grad=True)
    spec = ac.attention(score=lambda s, b, h, q_idx, kv_idx: s + slopes[h] * (kv_idx - q_idx), name="alibi")
    got = grad_outcomes(spec, *qkv())
    assert "FlexAttention has no backward on CPU" in got["flex"]
    (ref,), (triton,) = (torch.autograd.grad(got[n].sum(), slopes) for n in ("reference", "triton"))
    assert torch.isfinite(ref).all() and ref.abs().sum() > 0
    torch.testing.assert_close(triton, ref, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("edit", ["data", "numpy", "in_place"])
@pytest.mark.parametrize("backend", ["triton", "flex"])
def test_runtime_tensor_edited_after_a_call_is_seen(backend, edit):
    doc = torch.zeros(1, 128, dtype=torch.int32)
    doc[:, 64:] = 1
    spec = ac.variants.document(doc)
    q, k, v = qkv(length=128)
    kernel = ac.compile(spec, backend=backend, **BACKENDS[backend])
    kernel(q, k, v)  # caches the layout of two documents
    {"data": lambda: doc.data.zero_(), "numpy": lambda: doc.numpy().fill(0), "in_place": doc.zero_}[edit]()
    mask = torch_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, 128, 128)  # now one document
    torch.testing.assert_close(kernel(q, k, v).double(), attention64(q, k, v, mask), atol=2e-5, rtol=0)


def test_analyze_refuses_a_misspelled_tensor_name():
    doc = torch.zeros(1, 256, dtype=torch.int32)
    spec = ac.variants.document(doc)
    with pytest.raises(ac.AttncompError, match="unknown runtime tensor.*document_ids.*declares: doc"):
        ac.analyze(spec, 256, tensors={"document_ids": doc})
    with pytest.raises(ac.AttncompError, match="unknown runtime tensor"):
        ac.simulate(spec, q_len=256, tensors={"document_ids": doc})


def test_simulate_refuses_a_layout_of_other_heads_or_sizes():
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx <= h * 128), name="hwin")
    one_head = ac.analyze(spec, 1024, heads=1)
    with pytest.raises(ac.AttncompError, match="groups"):
        ac.simulate(spec, heads=8, q_len=1024, layout=one_head)
    with pytest.raises(ac.AttncompError, match="layout is for 1024x1024"):
        ac.simulate(ac.variants.causal(), q_len=4096, layout=ac.analyze(ac.variants.causal(), 1024))
    with pytest.raises(ac.AttncompError, match="layout is of causal"):
        ac.simulate(ac.variants.sliding_window(64), q_len=1024, layout=ac.analyze(ac.variants.causal(), 1024))
    eight = ac.analyze(spec, 1024, heads=8)
    assert ac.simulate(spec, heads=8, q_len=1024, layout=eight).speedup == ac.simulate(spec, heads=8, q_len=1024).speedup


@pytest.mark.parametrize("kwargs, match", [
    (dict(head_dim=-64), "head_dim must be a positive int, got -64"),
    (dict(head_dim=0), "head_dim must be a positive int"),
    (dict(head_dim=100000), "head_dim must be at most"),
    (dict(kv_heads=0), "kv_heads must be a positive int"),
    (dict(value_dim=0), "value_dim must be a positive int"),
    (dict(heads=0), "heads must be a positive int"),
    (dict(q_len=0), "q_len must be a positive int"),
    (dict(kv_len=-1), "kv_len must be a positive int"),
    (dict(batch=True), "batch must be a positive int"),
    (dict(block=(64, 64, 64)), "block must be one positive int or two"),
    (dict(block=(0, 64)), "block must be one positive int or two"),
    (dict(dtype="fp8", hardware="a100"), "no fp8 tensor cores"),
    (dict(dtype="int8"), "unknown dtype"),
    (dict(hardware="h900"), "unknown hardware"),
    (dict(family="nope"), "unknown kernel family"),
    (dict(kv_heads=3, heads=8), "kv_heads=3 must divide heads=8"),
    (dict(layout="causal"), "layout must be a BlockLayout"),
])
def test_simulate_validates_every_argument(kwargs, match):
    with pytest.raises(ac.AttncompError, match=match):
        ac.simulate(ac.variants.causal(), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(q_len=0), dict(heads=0), dict(batch=-2), dict(block=(64, 64, 64)),
                                    dict(block=0), dict(block="64"), dict(kv_len=2.5)])
def test_analyze_validates_every_argument(kwargs):
    with pytest.raises(ac.AttncompError, match="must be"):
        ac.analyze(ac.variants.causal(), **({"q_len": 256} | kwargs))


@pytest.mark.parametrize("lengths", [(0, 64), (64, 0), (0, 0)])
def test_empty_sequences_give_the_same_zeros_everywhere(lengths):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, lengths[0], 16, generator=gen)
    k = v = torch.randn(1, 2, lengths[1], 16, generator=gen)
    for name, kernel in kernels(ac.variants.causal()).items():
        out = kernel(q, k, v)
        assert out.shape == (1, 2, lengths[0], 16) and out.dtype == q.dtype, name
        assert not out.any(), name  # a query with no key attends to nothing: 0, not NaN


def test_fully_masked_rows_are_zeros_everywhere():
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx >= 40) & (kv_idx <= q_idx), name="late")
    q, k, v = qkv(length=64)
    for name, kernel in kernels(spec).items():
        out = kernel(q, k, v)
        assert not out[:, :, :40].any() and not out.isnan().any(), name


def test_mixed_dtypes_and_meta_tensors_are_refused_everywhere():
    q, k, v = qkv()
    assert "different dtypes" in same_error_everywhere(ac.variants.causal(), q.half(), k, v, error=ShapeError)
    meta = [t.to("meta") for t in (q, k, v)]
    assert "meta device" in same_error_everywhere(ac.variants.causal(), *meta, error=ShapeError)


def test_a_zero_dim_captured_tensor_runs_everywhere():
    flag = torch.tensor(True)
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: flag & (kv_idx <= q_idx), name="flagged")
    assert "mask[b,h,m,n] = flag & (n <= m)" in str(spec)
    assert ac.cascade(str(spec).split("\n", 1)[1], name="flagged") == spec  # the text parses back
    q, k, v = qkv(length=48)
    expected = attention64(q, k, v, torch_mask(lambda b, h, q_idx, kv_idx: kv_idx <= q_idx, 48, 48))
    for name, kernel in kernels(spec).items():
        torch.testing.assert_close(kernel(q, k, v).double(), expected, atol=2e-5, rtol=0, msg=name)


@pytest.mark.parametrize("block", [48, (64, 8), (0, 64), (64, 64, 64)])
def test_triton_refuses_blocks_it_cannot_tile_at_compile_time(block):
    with pytest.raises(ac.AttncompError, match="block must be one power of two >= 16"):
        ac.compile(ac.variants.causal(), backend="triton", block=block)


def test_expressions_too_deep_to_handle_are_refused_where_written():
    text = "S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]\nO[b,h,m,e] = sigmoid(" + "+".join(["S"] * 3000) + ") * V[b,h,n,e]"
    with pytest.raises(ac.AttncompError, match="line 2: the expression nests too deeply"):
        ac.cascade(text)
    with pytest.raises(TraceError, match="nests 402 operations deep") as info:
        ac.attention(mask=lambda b, h, q_idx, kv_idx: functools.reduce(operator.or_, [q_idx == kv_idx + i
                                                                                     for i in range(400)]))
    assert info.value.location.filename == __file__


@pytest.mark.parametrize("call, match", [
    (lambda: ac.attention(score_mod=lambda s, b, h, q_idx, kv_idx: s), "unexpected keyword argument 'score_mod'"),
    (lambda: ac.analyze(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx), "expects a Program"),
    (lambda: ac.simulate(ac.variants.causal(), "h100", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
     "too many positional arguments"),
    (lambda: ac.cascade(), "missing a required argument: 'text'"),
])
def test_calls_that_do_not_fit_a_signature_are_attncomp_errors(call, match):
    with pytest.raises(ac.AttncompError, match=match) as info:
        call()
    assert info.value.location.filename == __file__


def test_compiled_flex_never_falls_back_past_torchs_recompile_limit():
    """Each variant is one more compile of flex_attention's frame; with torch's limit at 1
    (8 by default), the second would silently run eager without attncomp's scoped raise."""
    from torch._dynamo.utils import counters

    q, k, v = qkv(heads=1, length=128)
    before = counters["frames"]["ok"]
    with torch._dynamo.config.patch(recompile_limit=1):
        for window in (8, 24):
            spec = ac.variants.sliding_window(window)
            out = ac.compile(spec, backend="flex")(q, k, v)
            torch.testing.assert_close(out, ac.compile(spec, backend="reference")(q, k, v), atol=2e-5, rtol=0)
    assert counters["frames"]["ok"] - before >= 2


SOFTMAX_SPELLINGS = {
    "scale_on_the_contraction": """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d] * scale
        O[b,h,m,e] = softmax[n](S) * V[b,h,n,e]""",
    "scale_on_its_own_line": """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        T[b,h,m,n] = S * scale
        P[b,h,m,n] = softmax[n](T)
        O[b,h,m,e] = P * V[b,h,n,e]""",
    "softmax_written_out": """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d] * scale
        E[b,h,m,n] = exp(S - max[n](S))
        Z[b,h,m] = sum[n](E)
        O[b,h,m,e] = E * V[b,h,n,e] / Z""",
    "written_out_inline": """
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        O[b,h,m,e] = exp(S * scale - max[n](S * scale)) / sum[n](exp(S * scale - max[n](S * scale))) * V[b,h,n,e]""",
}


@pytest.mark.parametrize("spelling", SOFTMAX_SPELLINGS)
def test_softmax_attention_however_spelled_lowers_everywhere(spelling):
    late_causal = lambda b, h, q_idx, kv_idx: (q_idx >= 20) & (kv_idx <= q_idx)  # rows 0..19 fully masked
    spec = ac.cascade(SOFTMAX_SPELLINGS[spelling], mask=late_causal, name=spelling)
    q, k, v = qkv(length=64)
    expected = attention64(q, k, v, torch_mask(late_causal, 64, 64))
    for name, kernel in kernels(spec).items():
        out = kernel(q, k, v)
        assert not out[:, :, :20].any(), name
        torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=0, msg=name)
    plain = ac.attention(mask=late_causal)
    assert ac.simulate(spec, q_len=16384, heads=16).time_s == ac.simulate(plain, q_len=16384, heads=16).time_s


def test_softmax_without_the_max_is_not_rewritten():
    """exp(S) / sum exp(S) overflows where softmax does not: kernels must not swap one for the other."""
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d] * scale
        O[b,h,m,e] = exp(S) * V[b,h,n,e] / sum[n](exp(S))""", name="unstable")
    from attncomp.ir.passes import normalize_softmax
    assert normalize_softmax(spec) is spec


@pytest.mark.parametrize("name", sorted(__import__("attncomp.variants", fromlist=["REGISTRY"]).REGISTRY))
def test_every_library_variant_agrees_on_every_backend(name):
    """Same output (float32 within tolerance of the float64 reference over the spec as
    written), or a compile-time UnsupportedError that names another backend."""
    from attncomp.variants import REGISTRY, example_inputs

    variant = REGISTRY[name]
    program = variant.build()
    ex = variant.example(48, 40 if variant.cross else None, batch=2, heads=4)
    tensors = variant.example_tensors(ex)
    inputs = example_inputs(program, ex, dtype=torch.float64)
    golden = ac.compile(program, backend="reference")(**inputs, **tensors)
    low = {k: t.float() for k, t in inputs.items()}
    ran = []
    for backend, options in BACKENDS.items():
        if backend == "triton" and ex.q_len >= 256:  # grids fix their length: fewer, larger interpreted tiles
            options = {"block": (64, 64)}
        try:
            kernel = ac.compile(program, backend=backend, **options)
        except UnsupportedError as err:
            assert "backend=" in (err.hint or "") or "backend" in err.text, err
            continue
        out = kernel(**low, **tensors)
        assert out.shape == golden.shape and out.dtype == torch.float32, backend
        torch.testing.assert_close(out.double(), golden, atol=1e-4, rtol=1e-4, msg=f"{name} on {backend}")
        ran.append(backend)
    assert "reference" in ran and len(ran) >= 2, ran  # every variant runs on a kernel backend


def test_mean_rsqrt_and_sign_in_cascades_mean_what_torch_computes():
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        A[b,h,m,e] = softmax[n](S * scale) * V[b,h,n,e]
        R[b,h,m] = rsqrt(mean[e](A * A) + 1e-6)
        O[b,h,m,e] = A * R * sign(A)""", mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx,
        name="rmsnorm")
    q, k, v = (t.double() for t in qkv(length=32))
    s = (q @ k.transpose(-1, -2)).masked_fill(~torch_mask(lambda b, h, m, n: m >= n, 32, 32), float("-inf"))
    a = torch.softmax(s / 16 ** 0.5, -1) @ v
    expected = a * torch.rsqrt((a * a).mean(-1, keepdim=True) + 1e-6) * torch.sign(a)
    torch.testing.assert_close(ac.compile(spec)(q, k, v), expected)
    with pytest.raises(UnsupportedError, match="reduces over e") as info:  # the refusal says what it cannot do
        ac.compile(spec, backend="triton")
    assert "elementwise expressions of earlier [b,h,m,e] or [b,h,m] results" in info.value.text
    with pytest.raises(ac.AttncompError, match=r"mean\[n\] is not defined under a mask"):
        ac.cascade("S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]\nO[b,h,m,e] = mean[n](S) * V[b,h,n,e]")


def _item(b, h, q_idx, kv_idx):
    return q_idx.item() >= 0


def _np_where(b, h, q_idx, kv_idx):
    import numpy as np

    return np.where(q_idx >= kv_idx, True, False)


@functools.lru_cache
def _cached(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


@pytest.mark.parametrize("fn", [_item, _np_where, _cached], ids=lambda f: f.__name__)
def test_untraceable_masks_are_trace_errors_at_the_users_line(fn):
    with pytest.raises(TraceError) as info:
        ac.attention(mask=fn)
    assert info.value.location is not None and info.value.location.filename == __file__
