"""The FlexAttention backend against the float64 reference, with PyTorch's error-ratio
oracle: the compiled kernel's error in low precision may be at most twice that of the
same computation run eagerly in that precision (flex_attention without torch.compile)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from cases import variant_case

import attncomp as ac
from attncomp.backends.flex import FlexKernel
from attncomp.errors import UnsupportedError
from attncomp.variants import REGISTRY

FLEX_GROUPS = ("A", "B", "C", "D")
# a sink renormalizes with flex's logsumexp, which compiled flex cannot return on CPU
SINKS = ("learned_sinks",)
NAMES = sorted(n for n, v in REGISTRY.items() if v.group[0] in FLEX_GROUPS and n not in SINKS)
LOW = torch.bfloat16


def error(out, ref):
    return (out.double() - ref).abs().max().item()


def check(name, q_len, kv_len, heads=4, dtype=LOW, **overrides):
    case = variant_case(name, q_len, kv_len, heads, dtype, (1, 2), **overrides)
    program, tensors, low, golden = case.program, case.tensors, case.low, case.golden
    compiled = ac.compile(program, backend="flex")(**low, **tensors)
    eager = ac.compile(program, backend="flex", compiled=False)(**low, **tensors)
    assert compiled.dtype == dtype and compiled.shape == golden.shape
    assert not torch.isnan(compiled).any()
    err_c, err_e = error(compiled, golden), error(eager, golden)
    assert err_c <= 2 * err_e + 1e-5, (err_c, err_e)
    return compiled, golden


@pytest.mark.parametrize("name", NAMES)
def test_variant_matches_reference(name):
    check(name, 1000, 1000)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].cross and not REGISTRY[n].length])
def test_unequal_lengths(name):
    check(name, 1337, 1000)


@pytest.mark.parametrize("q_len,kv_len", [(1000, 1000), (333, 1000)])
def test_learned_sinks_eager(q_len, kv_len):
    """Eager flex renormalizes by the sink with its logsumexp (float32 against float64, the
    forward and the error compiled flex on CPU gives)."""
    case = variant_case("learned_sinks", q_len, kv_len, 4, torch.float32, (1, 2))
    out = ac.compile(case.program, backend="flex", compiled=False)(**case.low, **case.tensors)
    torch.testing.assert_close(out.double(), case.golden, atol=2e-5, rtol=1e-4)
    with pytest.raises(UnsupportedError, match="cannot return the logsumexp"):
        ac.compile(case.program, backend="flex")(**case.low, **case.tensors)


def test_gqa_and_float32():
    out, golden = check("gqa", 1337, 1337, heads=8, dtype=torch.float32)
    torch.testing.assert_close(out.double(), golden, atol=2e-5, rtol=1e-4)


def test_fully_masked_rows_are_zero():
    def late(b, h, q_idx, kv_idx):
        return (q_idx >= 300) & (kv_idx <= q_idx)
    q, k, v = (torch.randn(1, 2, 1000, 16) for _ in range(3))
    out = ac.compile(ac.attention(mask=late), backend="flex")(q, k, v)
    assert not torch.isnan(out).any()
    assert torch.equal(out[:, :, :300], torch.zeros_like(out[:, :, :300]))


def test_hoisted_score_mod_becomes_the_mask():
    kernel = ac.compile(ac.variants.causal_score(), backend="flex")
    assert "def mask_mod" in kernel.source and "score_mod = None" in kernel.source
    assert kernel.layout(1024, 1024).counts["partial"] == 8


def test_cascades_are_refused_with_a_reason():
    for spec in (ac.variants.differential(), ac.variants.sigmoid_attention(), ac.variants.causal_linear()):
        with pytest.raises(ac.AttncompError, match="backend='triton'"):
            ac.compile(spec, backend="flex")


def test_layouts_are_cached_and_follow_runtime_tensors(monkeypatch):
    import attncomp.backends.flex as flex
    calls = []
    real = flex.analyze
    monkeypatch.setattr(flex, "analyze", lambda *a, **k: calls.append(a[1:3]) or real(*a, **k))
    kernel = ac.compile(ac.variants.document(), backend="flex")
    q, k, v = (torch.randn(1, 2, 512, 16) for _ in range(3))
    doc = torch.zeros(1, 512, dtype=torch.int32)
    doc[:, 200:] = 1
    first = kernel(q, k, v, doc=doc)
    kernel(q, k, v, doc=doc)
    assert len(calls) == 1
    doc[:, 300:] = 2  # in place: the version counter moves, the layout is rebuilt
    second = kernel(q, k, v, doc=doc)
    assert len(calls) == 2 and not torch.equal(first, second)
    torch.testing.assert_close(second, ac.compile(ac.variants.document())(q, k, v, doc=doc), atol=1e-5, rtol=1e-4)
    kernel(q, k, v, doc=doc.clone())  # a different tensor with equal values is analyzed anew
    assert len(calls) == 3


PRODUCE = """
import sys, torch, attncomp as ac
from attncomp.backends.flex_blockmask import to_block_mask
from attncomp.variants import REGISTRY
torch.manual_seed(0)
spec = ac.attention(mask=ac.variants.document(), score=ac.variants.softcap(7.5), name="doc_softcap")
kernel = ac.compile(spec, backend="flex")
q, k, v = (torch.randn(2, 2, 700, 16) for _ in range(3))
doc = REGISTRY["document"].example_tensors(REGISTRY["document"].example(700))["doc"]
out = kernel(q, k, v, doc=doc)
bm = to_block_mask(kernel.padded_layout(700, 700, batch=2, heads=2, tensors={"doc": doc}))
open(sys.argv[1] + "/kernel.py", "w").write(kernel.source)
torch.save({"q": q, "k": k, "v": v, "doc": doc, "out": out,
            "blocks": [bm.kv_num_blocks, bm.kv_indices, bm.full_kv_num_blocks, bm.full_kv_indices]},
           sys.argv[1] + "/case.pt")
"""

CONSUME = """
import sys, json, torch
sys.modules["attncomp"] = None  # importing attncomp would fail
sys.path.insert(0, sys.argv[1])
import kernel
case = torch.load(sys.argv[1] + "/case.pt")
lengths = torch.tensor(700), torch.tensor(700)
mask_mod, _ = kernel.make_mods(case["doc"], *lengths, padded=True)
bm = kernel.block_mask_from_blocks(*case["blocks"], 700, 700, mask_mod)
out = kernel.run(case["q"], case["k"], case["v"], case["doc"], block_mask=bm)
print(json.dumps({"equal": bool(torch.equal(out, case["out"]))}))
"""


def test_source_runs_without_attncomp(tmp_path):
    """Both sides run in fresh processes (torch.compile's choices depend on what a process
    compiled before), one with attncomp and one where importing it fails."""
    env = dict(os.environ, PYTHONPATH="")
    made = subprocess.run([sys.executable, "-c", PRODUCE, str(tmp_path)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    res = subprocess.run([sys.executable, "-c", CONSUME, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"equal": True}


def test_lengths_share_a_compiled_kernel():
    from torch._dynamo.utils import counters
    kernel = ac.compile(ac.variants.sliding_window(200), backend="flex")
    before = counters["stats"]["unique_graphs"]
    for L in (1100, 1337, 1500, 1900):  # one bucket: padded to 2048
        q, k, v = (torch.randn(1, 2, L, 16) for _ in range(3))
        torch.testing.assert_close(kernel(q, k, v), ac.compile(ac.variants.sliding_window(200))(q, k, v),
                                   atol=2e-5, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] - before <= 1


def test_block_sizes():
    spec = ac.variants.sliding_window(100)
    q, k, v = (torch.randn(1, 2, 1000, 16) for _ in range(3))
    golden = ac.compile(spec)(q, k, v)
    for block in (64, (128, 64)):
        kernel = FlexKernel(spec, block=block)
        torch.testing.assert_close(kernel(q, k, v), golden, atol=2e-5, rtol=1e-4)
