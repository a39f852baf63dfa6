"""The Triton backend on Triton's interpreter (CPU) against the float64 reference.

Error-ratio oracle: the kernel's float16 error must be at most twice that of the same
Program evaluated eagerly on the float16-rounded inputs in float32, rounded back to
float16 (the unavoidable error of a float16 result). Tests marked ``gpu`` repeat checks at
realistic sizes when CUDA is available.
"""

import ast
import json
import os
import subprocess
import sys

import pytest
import torch
from cases import variant_case

import attncomp as ac
from attncomp.backends.binding import bind
from attncomp.backends.modules import load_module
from attncomp.variants import REGISTRY, example_inputs

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
SMALL_GRIDS = {  # grid variants at sizes the interpreter gets through quickly
    "neighborhood_3d": {"shape": (2, 6, 6), "window": (1, 3, 3)},
    "neighborhood_3d_tiled": {"shape": (2, 8, 8), "window": (1, 5, 5), "tile": (1, 4, 4)},
    "dilated_neighborhood_3d": {"shape": (2, 8, 8), "window": (1, 3, 3), "dilation": (1, 2, 2), "tile": (1, 4, 4)},
    "strided_neighborhood_3d": {"shape": (2, 6, 6), "window": (1, 3, 3), "stride": (1, 2, 2)},
    "neighborhood_2d_tiled": {"shape": (8, 16), "window": 5, "tile": (4, 4)},
    "blocked_neighborhood_2d": {"shape": (8, 16), "window": 4, "stride": 4, "tile": (4, 4)},
}


def run(name, q_len, kv_len=None, block=(16, 32), heads=2, dtype=torch.float16, **overrides):
    overrides = {**SMALL_GRIDS.get(name, {}), **overrides}
    case = variant_case(name, q_len, kv_len, heads, dtype, (4, 5), **overrides)
    program, tensors, low, golden = case.program, case.tensors, case.low, case.golden
    eager = ac.compile(program)(**{k: v.float() for k, v in low.items()}, **tensors).to(dtype)
    out = ac.compile(program, backend="triton", block=block)(**low, **tensors)
    assert out.dtype == dtype and out.shape == golden.shape
    err = (out.double() - golden).abs().max().item()
    base = (eager.double() - golden).abs().max().item()
    assert err <= 2 * base + 1e-6, (err, base)
    return out, golden


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_variant(name):
    run(name, 100)


@pytest.mark.parametrize("length", [64, 200, 257])
@pytest.mark.parametrize("name", ["causal", "document", "neighborhood_1d", "differential", "causal_linear"])
def test_lengths(name, length):
    run(name, length, block=(32, 16))


@pytest.mark.parametrize("name", ["sliding_window", "prefix_lm", "alibi", "sigmoid_attention", "causal_linear",
                                  "differential"])
def test_unequal_lengths(name):
    run(name, 70, 133)
    run(name, 133, 70)


def test_gqa_float32_and_head_dims():
    out, golden = run("gqa", 96, heads=8, dtype=torch.float32)
    torch.testing.assert_close(out.double(), golden, atol=1e-5, rtol=1e-4)
    spec = ac.variants.sliding_window(20)
    for d in (24, 80):  # padded to 32 and 128
        q, k, v = (torch.randn(1, 2, 50, d, dtype=torch.float64) for _ in range(3))
        out = ac.compile(spec, backend="triton", block=(16, 16))(q.float(), k.float(), v.float())
        torch.testing.assert_close(out.double(), ac.compile(spec)(q, k, v), atol=1e-5, rtol=1e-4)


def test_bfloat16_and_lse():
    spec = ac.variants.causal()
    q, k, v = (torch.randn(1, 2, 64, 16, dtype=torch.float64) for _ in range(3))
    kernel = ac.compile(spec, backend="triton", block=(16, 16), store_lse=True)
    out = kernel(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    s = (q @ k.transpose(-1, -2) / 4).masked_fill(torch.ones(64, 64, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(kernel.last_lse.double(), torch.logsumexp(s, -1), atol=0.05, rtol=0.01)


def test_fully_masked_rows_are_zero():
    def late(b, h, q_idx, kv_idx):
        return (q_idx >= 40) & (kv_idx <= q_idx)
    for spec in (ac.attention(mask=late), ac.cascade("""
            S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
            O[b,h,m,e] = sigmoid(S * scale) * V[b,h,n,e]""", mask=late)):
        q, k, v = (torch.randn(1, 2, 100, 16) for _ in range(3))
        out = ac.compile(spec, backend="triton", block=(16, 16))(q, k, v)
        assert not torch.isnan(out).any()
        assert torch.equal(out[:, :, :40], torch.zeros_like(out[:, :, :40]))
        torch.testing.assert_close(out, ac.compile(spec)(q, k, v), atol=1e-5, rtol=1e-4)


def test_offsets_past_two_to_the_31_elements():
    """A head that starts 2**31 elements into its storage (a 16-head, 1M-token tensor does)
    is addressed with 64-bit offsets: 32-bit ones wrap and read outside the tensor. Only
    the touched pages of the 8 GiB storage are ever allocated."""
    H, S, D = 3, 64, 32
    stride_h = (1 << 30) + 3 * S * D
    big = torch.empty(2 * stride_h + 3 * S * D, dtype=torch.float32)
    qkv = [big.as_strided((1, H, S, D), (0, stride_h, D, 1), i * S * D) for i in range(3)]
    for x in qkv:
        x.copy_(torch.randn(1, H, S, D))
    out = ac.compile(ac.variants.causal(), backend="triton", block=(16, 16))(*qkv)
    golden = ac.compile(ac.variants.causal())(*(x.double() for x in qkv))
    torch.testing.assert_close(out.double(), golden, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,length", [("document", 200), ("neighborhood_2d", None), ("per_head_window", 150),
                                         ("causal_linear", 130)])
def test_tile_contract(name, length):
    """The kernel touches exactly the layout's partial and full tiles, and evaluates the
    mask once per partial tile and never on a full one; linear terms (all of causal_linear's)
    never visit a full tile: they read two prefix states per run of them."""
    variant = REGISTRY[name]
    program = variant.build()
    ex = variant.example(length or 0, batch=2, heads=3, head_dim=16)
    tensors = variant.example_tensors(ex)
    inputs = example_inputs(program, ex)
    kernel = ac.compile(program, backend="triton", block=(16, 32), count=True)
    kernel(**inputs, **tensors)
    stats = kernel.last_stats.view(ex.batch, ex.heads, -1, 4)
    layout = ac.analyze(program, ex.q_len, ex.kv_len, (16, 32), tensors=tensors, batch=ex.batch, heads=ex.heads)
    partial, full = layout.row_blocks()
    runs = layout.full.runs_per_row().reshape(*layout.shape, -1)
    linear = name == "causal_linear"
    for b in range(ex.batch):
        for h in range(ex.heads):
            g = (b % layout.shape[0], h % layout.shape[1])
            assert stats[b, h, :, 0].tolist() == partial[g].tolist()
            assert stats[b, h, :, 1].tolist() == (full[g] * (not linear)).tolist()
            assert stats[b, h, :, 2].tolist() == partial[g].tolist()
            assert stats[b, h, :, 3].tolist() == (runs[g] * linear).tolist()
    c = layout.counts
    assert int(stats[..., 0].sum()) == (c["partial"] * ex.batch * ex.heads) // layout.groups
    assert c["empty"] > 0


@pytest.mark.parametrize("name", ["causal", "document", "sigmoid_attention"])
def test_golden_source(name):
    """Codegen changes are reviewed as diffs: ATTNCOMP_UPDATE_GOLDEN=1 rewrites the files."""
    source = ac.compile(REGISTRY[name].build(), backend="triton").source
    path = os.path.join(GOLDEN, f"triton_{name}.py")
    if os.environ.get("ATTNCOMP_UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(source)
    with open(path) as fh:
        assert source == fh.read()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_kernel_has_no_dead_names(name):
    """Generated kernels read every name they assign, and the loop function every
    parameter: no leftovers from the skeleton."""
    tree = ast.parse(ac.compile(REGISTRY[name].build(), backend="triton").source)
    jitted = [f for f in tree.body if isinstance(f, ast.FunctionDef)
              and any(ast.unparse(d) == "triton.jit" for d in f.decorator_list)]
    assert {"_attn_fwd_inner", "attncomp_fwd"} <= {f.name for f in jitted}
    for fn in jitted:
        names = [n for n in ast.walk(fn) if isinstance(n, ast.Name)]
        stored = {n.id for n in names if isinstance(n.ctx, ast.Store)}
        loaded = {n.id for n in names if isinstance(n.ctx, ast.Load)}
        assert stored <= loaded, (fn.name, sorted(stored - loaded))
        if fn.name == "_attn_fwd_inner":
            params = {a.arg for a in fn.args.args}
            assert params <= loaded, sorted(params - loaded)


def test_loop_function_is_called_for_partial_then_full_blocks():
    """One loop function, called twice: the partial-block list with IS_FULL=False, then the
    full-block list with IS_FULL=True."""
    tree = ast.parse(ac.compile(ac.variants.causal(), backend="triton").source)
    kernel = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "attncomp_fwd")
    calls = [c for c in ast.walk(kernel) if isinstance(c, ast.Call) and ast.unparse(c.func) == "_attn_fwd_inner"]
    flags = [next(k.value.value for k in c.keywords if k.arg == "IS_FULL") for c in calls]
    lists = [next(ast.unparse(a) for a in c.args if ast.unparse(a) in ("P_IDX", "F_IDX")) for c in calls]
    assert (flags, lists) == ([False, True], ["P_IDX", "F_IDX"])


def test_launch_configurations():
    """Tuning (on a GPU) is among the launch tile's configurations, since the block lists fix
    the tile; the interpreter takes the first; a tile not listed gets one default config."""
    module = load_module(ac.compile(ac.variants.causal(), backend="triton").source, "attncomp_test_configs")
    tiles = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in module["CONFIGS"]}
    assert (64, 64) in tiles and len(module["CONFIGS"]) > len(tiles)
    tuned = module["tuned"](64, 64, True).configs
    assert len(tuned) > 1 and all((c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) == (64, 64) for c in tuned)
    assert module["tuned"](64, 64, False).configs == tuned[:1]
    (odd,) = module["tuned"](16, 32, True).configs
    assert odd.kwargs == {"BLOCK_M": 16, "BLOCK_N": 32}


STANDALONE = """
import sys, json, torch
sys.modules["attncomp"] = None  # importing attncomp would fail
sys.path.insert(0, sys.argv[1])
import kernel
case = torch.load(sys.argv[1] + "/case.pt")
out, _, stats = kernel.attention(*case["args"], case["blocks"], layout_shape=case["shape"], block_m=16, block_n=32,
                                 count=True)
print(json.dumps({"equal": bool(torch.equal(out, case["out"])), "stats": bool(torch.equal(stats, case["stats"]))}))
"""


def test_source_runs_without_attncomp(tmp_path):
    """kernel.source is a standalone module: a fresh process without attncomp runs it on the
    same inputs and block lists and gets the same output and tile counts."""
    variant = REGISTRY["document"]
    program = variant.build()
    ex = variant.example(100, batch=2, heads=2, head_dim=16)
    tensors, inputs = variant.example_tensors(ex), example_inputs(program, ex)
    kernel = ac.compile(program, backend="triton", block=(16, 32), count=True)
    out = kernel(**inputs, **tensors)
    bound = bind(kernel.program, (), {**inputs, **tensors})
    layout, blocks = kernel.blocks(bound, out.device)
    (tmp_path / "kernel.py").write_text(kernel.source)
    torch.save({"args": [inputs[n] for n in kernel.lowered.inputs] + [tensors[t] for t in kernel.program.tensors],
                "blocks": blocks, "shape": layout.shape, "out": out, "stats": kernel.last_stats}, tmp_path / "case.pt")
    env = dict(os.environ, PYTHONPATH="", TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", STANDALONE, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"equal": True, "stats": True}


def test_unlowerable_cascade_names_the_equation():
    spec = ac.cascade("""
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        M[b,h,m] = max[n](S)
        O[b,h,m,e] = exp(S - M) * V[b,h,n,e]
    """)
    with pytest.raises(ac.AttncompError, match=r"cannot lower `M\[b,h,m\] = max\[n\]\(S\)`"):
        ac.compile(spec, backend="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["causal", "sliding_window", "document", "neighborhood_2d_tiled", "differential",
                                  "sigmoid_attention", "causal_linear", "alibi", "softcap"])
def test_gpu_realistic_sizes(name):
    variant = REGISTRY[name]
    args = {"shape": (64, 64), "window": 13, "tile": (16, 8)} if name == "neighborhood_2d_tiled" else {}
    program = variant.build(**args)
    ex = variant.example(4096, batch=2, heads=8, head_dim=128, **args)
    tensors = {k: v.cuda() for k, v in variant.example_tensors(ex, **args).items()}
    inputs = {k: v.cuda() for k, v in example_inputs(program, ex, dtype=torch.float64).items()}
    golden = ac.compile(program)(**inputs, **tensors)
    low = {k: v.half() for k, v in inputs.items()}
    eager = ac.compile(program)(**{k: v.float() for k, v in low.items()}, **tensors).half()
    out = ac.compile(program, backend="triton", block=(128, 64))(**low, **tensors)
    assert (out.double() - golden).abs().max() <= 2 * (eager.double() - golden).abs().max() + 1e-6
