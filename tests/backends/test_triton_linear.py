"""Linear attention on Triton runs chunked (Lightning Attention-2 with a prefix sum): a states
kernel per key block, a float64 prefix sum, two state loads per run of full tiles, the
quadratic form on partial tiles only. Checked against plain-torch float64 oracles."""

import ast

import pytest
import torch
import torch.nn.functional as F

import attncomp as ac


def elu1(x):
    return F.elu(x) + 1


def oracle(q, k, v, keep, normalize=False, eps=1e-6):
    """``(phi(Q) phi(K)^T * keep) V`` in float64, optionally over its row sums."""
    q, k, v = (x.double() for x in (q, k, v))
    k, v = (x.repeat_interleave(q.shape[1] // x.shape[1], 1) for x in (k, v))  # grouped-query heads
    a = (elu1(q) @ elu1(k).transpose(-1, -2)) * keep
    out = a @ v
    return out / (a.sum(-1, keepdim=True) + eps) if normalize else out


def band(window):
    def mask(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx - kv_idx < window)
    return mask


def pairs(mask, m, n):
    i, j = torch.arange(m)[:, None], torch.arange(n)[None, :]
    return mask(0, 0, i, j).double()


LINEAR = """
A[b,h,m,n] = (elu(Q[b,h,m,d]) + 1) * (elu(K[b,h,n,d]) + 1)
O[b,h,m,e] = A * V[b,h,n,e]
"""


def check(spec, q, k, v, keep, block, normalize=False, runs=True):
    kernel = ac.compile(spec, backend="triton", block=block, count=True)
    out = kernel(q, k, v)
    torch.testing.assert_close(out.double(), oracle(q, k, v, keep, normalize), atol=2e-4, rtol=2e-4)
    stats = kernel.last_stats
    assert int(stats[..., 1].sum()) == 0  # full tiles are never visited ...
    assert (int(stats[..., 3].sum()) > 0) == runs  # ... but read as prefix states
    return kernel


def test_windowed_runs_start_past_zero():
    """A band's runs of full tiles start mid-sequence: P[hi] - P[lo] in float64."""
    spec = ac.cascade(LINEAR, mask=band(100), name="windowed_linear")
    q, k, v = (torch.randn(2, 3, 300, 16) for _ in range(3))
    check(spec, q, k, v, pairs(band(100), 300, 300), (16, 16))


@pytest.mark.parametrize("m,n", [(70, 133), (133, 70), (257, 257)])
def test_normalized_causal_unequal_lengths(m, n):
    spec = ac.variants.causal_linear(normalize=True)
    q, k, v = torch.randn(1, 2, m, 24), torch.randn(1, 2, n, 24), torch.randn(1, 2, n, 40)  # padded head dims
    causal = lambda b, h, i, j: j <= i  # noqa: E731 (the variant's mask)
    check(spec, q, k, v, pairs(causal, m, n), (16, 32), normalize=True, runs=m > 32)


def test_grouped_query_heads_share_states():
    """K and V with fewer heads than Q (and than each other): states per lcm of their heads."""
    spec = ac.variants.causal_linear()
    q, k, v = torch.randn(2, 4, 100, 16), torch.randn(2, 2, 100, 16), torch.randn(2, 1, 100, 16)
    check(spec, q, k, v, pairs(lambda b, h, i, j: j <= i, 100, 100), (16, 16))


def test_softmax_and_linear_terms_in_one_kernel():
    """A softmax term still walks the full tiles; the linear term reads prefix states there."""
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        A[b,h,m,n] = (elu(Q[b,h,m,d]) + 1) * (elu(K[b,h,n,d]) + 1)
        O[b,h,m,e] = (softmax[n](S * scale) + A) * V[b,h,n,e]
    """, mask=lambda b, h, q_idx, kv_idx: kv_idx <= q_idx, name="hybrid")
    kernel = ac.compile(spec, backend="triton", block=(16, 16), count=True)
    assert [t.kind for t in kernel.lowered.terms] == ["softmax", "linear"]
    q, k, v = (torch.randn(1, 2, 90, 16) for _ in range(3))
    out = kernel(q, k, v)
    keep = pairs(lambda b, h, i, j: j <= i, 90, 90)
    s = (q.double() @ k.double().transpose(-1, -2) / 4).masked_fill(keep == 0, float("-inf"))
    golden = torch.softmax(s, -1) @ v.double() + oracle(q, k, v, keep)
    torch.testing.assert_close(out.double(), golden, atol=2e-4, rtol=2e-4)
    stats = kernel.last_stats
    assert int(stats[..., 1].sum()) > 0 and int(stats[..., 3].sum()) > 0


def test_other_kernels_carry_no_linear_code():
    """The prefix-state loads and the states kernel exist only in kernels with linear terms."""
    names = lambda spec: {f.name for f in ast.parse(ac.compile(spec, backend="triton").source).body  # noqa: E731
                          if isinstance(f, ast.FunctionDef)}
    assert "attncomp_states" in names(ac.variants.causal_linear())
    source = ac.compile(ac.variants.causal(), backend="triton").source
    assert "attncomp_states" not in names(ac.variants.causal()) and "R_START + r" not in source


def test_prefix_width_follows_the_runs(monkeypatch):
    """float64 prefix states where a run of full tiles starts past block 0 (its P[hi] - P[lo]
    would cancel in float32), float32 where every run starts at block 0 -- in the kernel's
    launch and in the simulator's price alike."""
    from attncomp.simulator.costs import Chunked
    launched, priced = {}, {}
    narrow = Chunked.narrow
    specs = {"causal": ac.variants.causal_linear(), "window": ac.cascade(LINEAR, mask=band(300), name="windowed")}
    for name, spec in specs.items():
        kernel = ac.compile(spec, backend="triton", block=(16, 16))
        module = kernel.module(torch.device("cpu"))
        launch = module["attention"]

        def spy(*args, _launch=launch, _name=name, **kwargs):
            launched[_name] = kwargs["wide_prefix"]
            return _launch(*args, **kwargs)
        module["attention"] = spy
        q, k, v = (torch.randn(1, 1, 400, 16) for _ in range(3))
        kernel(q, k, v)
        monkeypatch.setattr(Chunked, "narrow", lambda self, wide, _name=name: (
            priced.setdefault(_name, wide), narrow(self, wide))[1])
        est = ac.simulate(spec, "h100", heads=4, q_len=4096, head_dim=64)
        assert est.time_s > 0
    assert launched == priced == {"causal": False, "window": True}
