"""softplus and logsigmoid: traced, parsed, printed, analyzed, run on every backend and
costed, each against an independent float64 oracle (tests/oracles.py)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from oracles import attend_scores, logsigmoid, softplus

import attncomp as ac
from attncomp.ir import expr as E
from attncomp.ir.analysis.intervals import RANGES
from attncomp.errors import UnsupportedError
from attncomp.ir.evaluate import Env, dense_mask, evaluate
from attncomp.ir.parse import parse_program
from attncomp.simulator.costs import tile_work

L, D = 96, 16


def spread_mask(b, h, q_idx, kv_idx):
    # softplus(d / 4) < 3  <=>  d < 4 log(e^3 - 1) = 11.8: a causal window of 12
    return (q_idx >= kv_idx) & (F.softplus((q_idx - kv_idx).float() / 4.0) < 3.0)


def near_mask(b, h, q_idx, kv_idx):
    # logsigmoid(2 - d / 8) > -1  <=>  d < 8 (2 + log(e - 1)) = 20.3: a band of 41
    return F.logsigmoid(2.0 - (q_idx - kv_idx).abs().float() / 8.0) > -1.0


def stick_breaking(score, b, h, q_idx, kv_idx):
    # log-sigmoid terms of stick-breaking attention: log beta - log(1 + e^s) = s - 2 softplus(s)
    return F.logsigmoid(score) - F.softplus(score)


def oracle_mask(kind, q_len, kv_len):
    d = (torch.arange(q_len)[:, None] - torch.arange(kv_len)[None, :]).double()
    if kind == "spread":
        return (d >= 0) & (softplus(d / 4.0) < 3.0)
    return logsigmoid(2.0 - d.abs() / 8.0) > -1.0


def oracle(q, k, v, kind):
    mask = oracle_mask(kind, q.shape[2], k.shape[2])
    return attend_scores(q, k, v, lambda s: logsigmoid(s) - softplus(s), mask)


def inputs(seed, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 2, L, D, generator=gen, dtype=torch.float64) * scale).to(dtype) for _ in range(3)]


@pytest.fixture(params=["spread", "near"])
def spec(request):
    mask = spread_mask if request.param == "spread" else near_mask
    return request.param, ac.attention(mask=mask, score=stick_breaking)


def test_torch_calls_trace_to_the_ops():
    spec = ac.attention(mask=spread_mask, score=stick_breaking)
    ops = {n.op for e in spec.exprs for n in E.walk(e)}
    assert {"softplus", "logsigmoid"} <= ops
    assert not hasattr(torch, "logsigmoid")  # torch has only the functional spelling to trace


def test_non_default_arguments_are_errors():
    with pytest.raises(ac.AttncompError, match="beta=2.0"):
        ac.attention(score=lambda s, b, h, q_idx, kv_idx: F.softplus(s, beta=2.0))
    with pytest.raises(ac.AttncompError, match="threshold=5"):
        ac.attention(score=lambda s, b, h, q_idx, kv_idx: F.softplus(s, 1, 5))


def test_evaluation_follows_torch_including_the_threshold():
    x = torch.tensor([-800.0, -30.0, -1.0, 0.0, 3.0, 19.999999, 20.0, 20.0 + 1e-9, 21.0, 800.0], dtype=torch.float64)
    load = E.load(E.TensorDecl("x", ("L",), "float64"), (E.var("m"),))
    env = Env(order=("m",), index={"m": torch.arange(len(x))}, tensors={"x": x})
    got_sp = evaluate(E.unary("softplus", load), env).t
    got_ls = evaluate(E.unary("logsigmoid", load), env).t
    torch.testing.assert_close(got_sp, softplus(x), rtol=1e-15, atol=0)
    torch.testing.assert_close(got_ls, logsigmoid(x), rtol=1e-15, atol=1e-300)
    assert got_sp[7] == 20.0 + 1e-9  # the linear branch, just past the threshold


def test_reference_matches_oracle(spec):
    kind, program = spec
    q, k, v = inputs(1)
    torch.testing.assert_close(ac.compile(program)(q, k, v), oracle(q, k, v, kind), rtol=1e-10, atol=1e-12)


def test_flex_matches_oracle(spec):
    kind, program = spec
    q, k, v = inputs(2, torch.float32)
    kernel = ac.compile(program, backend="flex", compiled=False)
    assert "torch.nn.functional.softplus(" in kernel.source and "torch.nn.functional.logsigmoid(" in kernel.source
    golden = oracle(q.double(), k.double(), v.double(), kind)
    torch.testing.assert_close(kernel(q, k, v).double(), golden, rtol=1e-4, atol=2e-5)


def test_triton_refuses_masks_it_cannot_round_as_torch(spec):
    # Triton's softplus and log-sigmoid are not torch's to the last bit, so a mask that
    # compares them could keep other pairs: refused at compile time, naming the expression
    kind, program = spec
    with pytest.raises(UnsupportedError, match="softplus|logsigmoid"):
        ac.compile(program, backend="triton", block=(16, 32))


def test_triton_matches_oracle_in_scores():
    q, k, v = inputs(3, torch.float32)
    kernel = ac.compile(ac.attention(score=stick_breaking), backend="triton", block=(16, 32))
    golden = attend_scores(q.double(), k.double(), v.double(), lambda s: logsigmoid(s) - softplus(s))
    torch.testing.assert_close(kernel(q, k, v).double(), golden, rtol=1e-4, atol=2e-5)


def test_triton_formulas_hold_at_extremes():
    # large |scores| exercise the overflow-free forms and the threshold branch
    program = ac.attention(score=lambda s, b, h, q_idx, kv_idx: F.softplus(s) * 0.5 + F.logsigmoid(s))
    q, k, v = inputs(4, torch.float32, scale=3.0)
    golden = attend_scores(q.double(), k.double(), v.double(), lambda s: softplus(s) * 0.5 + logsigmoid(s))
    out = ac.compile(program, backend="triton", block=(16, 32))(q, k, v)
    torch.testing.assert_close(out.double(), golden, rtol=1e-4, atol=5e-5)


SIGMOID_CASCADE = """
S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
O[b,h,m,e] = exp(logsigmoid(S * scale + bias) - softplus(bias)) * V[b,h,n,e]
"""
SOFTMAX_CASCADE = """
S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
P[b,h,m,n] = softmax[n](logsigmoid(S * scale) - softplus(S * scale + bias))
O[b,h,m,e] = P * V[b,h,n,e]
"""
BIAS = -2.0


def cascade_oracle(text, q, k, v):
    s = torch.einsum("bhmd,bhnd->bhmn", q, k) / math.sqrt(q.shape[-1])
    if text is SIGMOID_CASCADE:
        w = torch.exp(logsigmoid(s + BIAS) - softplus(torch.tensor(BIAS, dtype=torch.float64)))
    else:
        w = torch.softmax(logsigmoid(s) - softplus(s + BIAS), -1)
    return torch.einsum("bhmn,bhne->bhme", w, v)


@pytest.mark.parametrize("text", [SIGMOID_CASCADE, SOFTMAX_CASCADE], ids=["sigmoid", "softmax"])
def test_cascade_text_round_trips(text):
    program = ac.cascade(text, params={"bias": BIAS}, name="sb")
    printed = str(program)
    assert "logsigmoid(S * scale" in printed and "softplus(" in printed
    assert parse_program(printed, "sb") == program


@pytest.mark.parametrize("text,backend", [(SIGMOID_CASCADE, "reference"), (SIGMOID_CASCADE, "triton"),
                                          (SOFTMAX_CASCADE, "reference"), (SOFTMAX_CASCADE, "flex"),
                                          (SOFTMAX_CASCADE, "triton")])
def test_cascade_on_every_backend(text, backend):
    program = ac.cascade(text, params={"bias": BIAS}, name="sb")
    q, k, v = inputs(5, torch.float64 if backend == "reference" else torch.float32)
    golden = cascade_oracle(text, q.double(), k.double(), v.double())
    options = {"block": (16, 32)} if backend == "triton" else {}
    out = ac.compile(program, backend=backend, **options)(q, k, v)
    tol = dict(rtol=1e-10, atol=1e-12) if backend == "reference" else dict(rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(out.double(), golden, **tol)


@pytest.mark.parametrize("kind", ["spread", "near"])
@pytest.mark.parametrize("block", [(1, 1), (4, 8), (16, 16)])
def test_analysis_is_exact(kind, block):
    mask = spread_mask if kind == "spread" else near_mask
    program = ac.attention(mask=mask)
    layout = ac.analyze(program, 70, 90, block)
    dense = oracle_mask(kind, 70, 90)
    assert torch.equal(dense_mask(program.mask, 70, 90)[0, 0], dense)
    bm, bn = block
    full = partial = 0
    for i in range(0, 70, bm):
        for j in range(0, 90, bn):
            t = dense[i:i + bm, j:j + bn]
            full += bool(t.all())
            partial += bool(t.any() and not t.all())
    assert (layout.counts["full"], layout.counts["partial"]) == (full, partial)


@pytest.mark.parametrize("op", ["softplus", "logsigmoid"])
def test_interval_rules_are_sound(op):
    fn = F.softplus if op == "softplus" else F.logsigmoid
    gen = torch.Generator().manual_seed(7)
    # intervals everywhere, and straddling softplus's threshold, where torch's value dips
    # by 2e-9 as it switches to the linear branch
    centers = torch.cat([torch.randn(400, generator=gen, dtype=torch.float64) * 30,
                         20 + torch.randn(200, generator=gen, dtype=torch.float64) * 1e-8])
    widths = torch.rand(600, generator=gen, dtype=torch.float64) * torch.cat([torch.full((400,), 10.0),
                                                                                torch.full((200,), 1e-8)])
    lo, hi = centers - widths, centers + widths
    blo, bhi = RANGES[E.Op(op)](lo.numpy(), hi.numpy())
    points = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, 101, dtype=torch.float64)[None, :]
    values = fn(points).numpy()
    assert np.all(values >= blo[:, None]) and np.all(values <= bhi[:, None])
    assert np.all(bhi - blo < (hi - lo).numpy() + 1e-6)  # tight: both have slope <= 1


def test_simulator_costs_the_special_functions():
    plain = tile_work(ac.attention(), 128, 128, 64)
    mod = tile_work(ac.attention(score=stick_breaking), 128, 128, 64)
    assert mod.sfu - plain.sfu == 4 * 128 * 128  # an exp and a log per element for each op
    est = ac.simulate(ac.attention(mask=spread_mask, score=stick_breaking), hardware="h100", batch=1, heads=8,
                      q_len=4096, kv_len=4096, head_dim=64)
    assert est.time_s > 0 and est.speedup > 1  # the window skips most tiles
