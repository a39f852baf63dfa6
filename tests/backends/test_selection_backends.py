"""Selection variants (MoBA, NSA's selected branch, Quest, top-k blocks) on the reference and
Triton backends against the papers' algorithms (tests/oracles.py) in float64, at ragged
lengths with GQA, gradients included; Triton visits exactly the tiles of the data's layout."""

import numpy as np
import pytest
import torch
from oracles import SELECTIONS, layout_classes, oracle, pick_blocks, sdpa, selection_mask, tile_classes

import attncomp as ac
from attncomp.variants import REGISTRY

NAMES = sorted(SELECTIONS)
SIZES = [(1, 1), (63, 257), (200, 200), (257, 63)]


def inputs(name, q_len, kv_len, heads=4, kv_heads=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, q_len, 16, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(2, kv_heads, kv_len, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    return q, k, v


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q_len,kv_len", SIZES)
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_matches_the_papers_algorithm(name, q_len, kv_len, backend):
    variant = REGISTRY[name]
    q, k, v = inputs(name, q_len, kv_len)
    options = {"block": (16, 16)} if backend == "triton" else {}
    out = ac.compile(variant.build(), backend=backend, **options)(q, k, v)
    expected = oracle(name, variant.arguments(), {}, {"Q": q, "K": k, "V": v}, q_len, kv_len)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def kernel_rows(pairs: torch.Tensor, spec, kv_heads: int) -> torch.Tensor:
    """The pair mask on the kernel's rows: per query head, or, for a choice shared by a KV
    group, NSA's group-centric rows (token m, head g of the group) -> row m * G + g."""
    if not spec.selection.shared:
        return pairs
    B, H, M, N = pairs.shape
    return pairs.view(B, kv_heads, H // kv_heads, M, N).transpose(2, 3).reshape(B, kv_heads, M * H // kv_heads, N)


@pytest.mark.parametrize("name", NAMES)
def test_triton_visits_exactly_the_data_layout(name):
    """The kernel's layout is the brute-force tile classes of the data's pairs (on its rows),
    and it visits exactly those tiles."""
    variant = REGISTRY[name]
    spec = variant.build()
    q, k, v = inputs(name, 200, 200, seed=5)
    kernel = ac.compile(spec, backend="triton", block=(32, 16), count=True)
    kernel(q, k, v)
    layout = kernel.last_layout
    pairs = kernel_rows(selection_mask(name, variant.arguments(), q, k), spec, k.shape[1])
    assert np.array_equal(layout_classes(layout), tile_classes(pairs, 32, 16))
    partial, full = layout.row_blocks()
    stats = kernel.last_stats.reshape(*layout.shape, layout.num_q_blocks, 4).numpy()
    assert np.array_equal(stats[..., 0], partial) and np.array_equal(stats[..., 1], full)
    assert layout.counts["empty"] > 0 and layout.counts["partial"] > 0
    assert (layout.shape[1], layout.q_len) == ((2, 400) if spec.selection.shared else (4, 200))


@pytest.mark.parametrize("name", NAMES)
def test_triton_gradients_through_the_chosen_keys(name):
    """dQ, dK, dV (float32 Triton) against float64 autograd through the papers' choice (which
    has no gradient: the mask is built from detached Q and K); the dQ pass visits each row's
    tiles of the data's layout."""
    variant = REGISTRY[name]
    q, k, v = inputs(name, 70, 90, seed=2)
    mask = selection_mask(name, variant.arguments(), q, k)
    wide = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = sdpa(*wide, mask=mask)
    g = torch.randn_like(expected)
    want = torch.autograd.grad(expected, wide, g)
    narrow = [t.float().requires_grad_() for t in (q, k, v)]
    kernel = ac.compile(variant.build(), backend="triton", block=(16, 16), count=True)
    got = torch.autograd.grad(kernel(*narrow), narrow, g.float())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, atol=2e-5, rtol=1e-4)
    layout = kernel.last_layout
    partial, full = layout.row_blocks()
    dq_tiles = kernel.last_backward_stats[0].reshape(*layout.shape, -1, 2)[..., 0].numpy()
    assert np.array_equal(dq_tiles, partial + full)


@pytest.mark.parametrize("pool", ["mean", "max", "bounds"])
def test_non_causal_selection_without_a_mask(pool):
    """No mask at all: every key of a chosen block is attended (pools against a direct formula)."""
    spec = ac.variants.topk_blocks(block_size=16, top_k=2, pool=pool, causal=False)
    assert spec.mask is None
    q, k, v = inputs("topk_blocks", 50, 70, kv_heads=4, seed=9)
    blocks = torch.nn.functional.pad(k, (0, 0, 0, 10)).view(2, 4, 5, 16, 16)  # the last block: 6 keys
    last = torch.arange(80).view(5, 16) < 70
    if pool == "mean":
        gate = torch.einsum("bhmd,bhjd->bhmj", q, (blocks * last[..., None]).sum(3) / last.sum(1)[:, None])
    else:
        top = blocks.masked_fill(~last[..., None], float("-inf")).amax(3)
        low = blocks.masked_fill(~last[..., None], float("inf")).amin(3)
        gate = torch.einsum("bhmd,bhjd->bhmj", q, top) if pool == "max" else \
            torch.maximum(q[:, :, :, None] * low[:, :, None], q[:, :, :, None] * top[:, :, None]).sum(-1)
    chosen = pick_blocks(gate, 2)
    expected = sdpa(q, k, v, mask=chosen[..., torch.arange(70) // 16])
    for backend, options in (("reference", {}), ("triton", {"block": (16, 16)})):
        out = ac.compile(spec, backend=backend, **options)(q, k, v)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_one_choice_per_query_block_on_both_backends():
    variant = REGISTRY["topk_blocks"]
    spec = variant.build(query_block=32)
    q, k, v = inputs("topk_blocks", 150, 130, seed=4)
    expected = sdpa(q, k, v, mask=selection_mask("topk_blocks", variant.arguments(query_block=32), q, k))
    for backend, options in (("reference", {}), ("triton", {"block": (16, 16)})):
        torch.testing.assert_close(ac.compile(spec, backend=backend, **options)(q, k, v), expected,
                                   rtol=1e-10, atol=1e-12)


def test_group_centric_rows_give_the_logsumexp_per_query_head():
    spec = REGISTRY["nsa_selection"].build()
    q, k, v = inputs("nsa_selection", 64, 64, seed=6)
    kernel = ac.compile(spec, backend="triton", block=(16, 16), store_lse=True)
    kernel(q.float(), k.float(), v.float())
    mask = selection_mask("nsa_selection", REGISTRY["nsa_selection"].arguments(), q, k)
    s = q @ k.repeat_interleave(2, 1).transpose(-1, -2) / 4
    expected = torch.logsumexp(s.masked_fill(~mask, float("-inf")), -1)
    assert kernel.last_lse.shape == (2, 4, 64)
    torch.testing.assert_close(kernel.last_lse.double(), expected, atol=2e-5, rtol=1e-5)
