"""Data-dependent block selection (MoBA, NSA, Quest): the IR stage, its semantics against the
papers' algorithms (tests/oracles.py), and its layouts: exact for given data, and the
structural layout every choice fits in."""

import numpy as np
import pytest
import torch
from oracles import SELECTIONS, layout_classes, pick_blocks, selection_mask, tile_classes

import attncomp as ac
from attncomp.errors import AttncompError, CascadeError, UnsupportedError
from attncomp.ir import parse_program
from attncomp.ir.analysis import row_counts
from attncomp.ir.selection import choose, index_lists
from attncomp.variants import REGISTRY

NAMES = sorted(SELECTIONS)


def problem(name, q_len, kv_len, heads=4, seed=0, **overrides):
    variant = REGISTRY[name]
    args = variant.arguments(**overrides)
    gen = torch.Generator().manual_seed(seed)
    kv_heads = max(1, heads // variant.kv_groups)
    q = torch.randn(2, heads, q_len, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(2, kv_heads, kv_len, 16, generator=gen, dtype=torch.float64)
    return variant.build(**overrides), args, q, k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q_len,kv_len,block", [(200, 200, (32, 16)), (257, 63, (16, 16)), (63, 257, (32, 32))])
def test_layout_from_data_is_exact_and_inside_the_structural_one(name, q_len, kv_len, block):
    spec, args, q, k = problem(name, q_len, kv_len)
    pairs = selection_mask(name, args, q, k)
    expected = tile_classes(pairs, *block)
    data = ac.analyze(spec, q_len, kv_len, block, inputs={"Q": q, "K": k}, batch=2, heads=4)
    assert data.selection == "data"
    assert (layout_classes(data) == expected).all()
    structural = ac.analyze(spec, q_len, kv_len, block, batch=2, heads=4)
    assert structural.selection == "structural"
    shown = np.broadcast_to(layout_classes(structural), expected.shape)
    assert ((expected == 0) | (shown > 0)).all()   # every kept pair's tile is visited
    assert ((shown != 2) | (expected == 2)).all()  # a tile called full is full whatever the data


def test_structural_full_tiles_where_the_choice_cannot_vary():
    """MoBA rows with fewer than top_k blocks up to their own take all of them: exact."""
    spec = ac.variants.moba(block_size=128, top_k=3)
    layout = ac.analyze(spec, 1024, block=64)
    grid = layout.class_grid()
    assert (grid[:6] == ac.analyze(ac.variants.causal(), 1024, block=64).class_grid()[:6]).all()
    assert (grid[6:][np.tril(np.ones((10, 16), bool), 5)] != 0).all()
    assert "the data-dependent selection decides" in layout.mask_density_text()


@pytest.mark.parametrize("name", NAMES)
def test_choice_matches_the_papers_choice(name):
    spec, args, q, k = problem(name, 150, 150, seed=3)
    chosen = choose(spec.selection, q, k, torch.arange(150), {}, spec.params)
    if spec.selection.shared:
        chosen = chosen.repeat_interleave(q.shape[1] // k.shape[1], 1)
    fn, size = SELECTIONS[name]
    assert torch.equal(chosen, fn(q, k, args[size], args["top_k"]))


def test_ties_go_to_the_lower_block_and_nan_ranks_last():
    sel = ac.selection(4, top_k=2)
    q = torch.ones(1, 1, 1, 2)
    k = torch.zeros(1, 1, 16, 2)  # every gate 0: a four-way tie
    chosen = choose(sel, q, k, torch.arange(1), {}, {})
    assert chosen[0, 0, 0].tolist() == [True, True, False, False]
    k[:, :, :4] = float("nan")
    chosen = choose(sel, q, k, torch.arange(1), {}, {})
    assert chosen[0, 0, 0].tolist() == [False, True, True, False]
    assert torch.equal(pick_blocks(torch.tensor([[0.0, 0.0, 1.0, 0.0]]), 2), torch.tensor([[True, False, True, False]]))


def test_threshold_and_top_p():
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([3.0, 1.0, 2.0, 0.0]).repeat_interleave(2)[None, None, :, None] * torch.tensor([1.0, 0.0])
    chosen = choose(ac.selection(2, threshold=1.5), q, k, torch.arange(1), {}, {})
    assert chosen[0, 0, 0].tolist() == [True, False, True, False]
    # gates 3, 1, 2, 0 scaled by 1/sqrt(2): softmax mass 0.53, 0.13, 0.26, 0.06 -> 0.53 + 0.26 >= 0.7
    chosen = choose(ac.selection(2, top_p=0.7), q, k, torch.arange(1), {}, {})
    assert chosen[0, 0, 0].tolist() == [True, False, True, False]
    chosen = choose(ac.selection(2, top_p=0.5), q, k, torch.arange(1), {}, {})
    assert chosen[0, 0, 0].tolist() == [True, False, False, False]


def test_index_lists_pad_with_minus_one():
    chosen = torch.tensor([[[[True, False, True], [False, False, False]]]])
    assert index_lists(chosen).tolist() == [[[[0, 2], [-1, -1]]]]


def test_selection_round_trips_and_composes_with_score_mods():
    sel = ac.selection(ac.param("block", 32), top_p=0.9, pool="max", eligible=lambda b, h, q_idx, kv_block:
                       kv_block * 32 <= q_idx, shared=True, normalize=True)
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, score=lambda s, b, h, q_idx, kv_idx: s * 2,
                        select=sel, name="mix")
    assert parse_program(str(spec), name="mix") == spec
    assert spec.with_params(block=64).selection.block.arg == ("block", 64)


@pytest.mark.parametrize("text,match", [
    ("topk(mean(K), Q, k=2, block=4, eligible=j <= m, shared=True, forced=h == 0)", "not per head"),
    ("topk(mean(K), Q, k=2, block=4.5, eligible=j <= m)", "must be an int"),
    ("topk(mean(K), Q, k=2, block=4, eligible=j + m)", "boolean predicate"),
    ("topk(mean(K), Q, k=2, block=4, eligible=j <= n)", "it may use"),
    ("topk(median(K), Q, k=2, block=4, eligible=j <= m)", "POOL one of"),
    ("topk(mean(K), Q, block=4, eligible=j <= m)", "RULE"),
])
def test_bad_selections_name_the_problem(text, match):
    with pytest.raises(CascadeError, match=match):
        parse_program(f"""
        select[b,h,m,j] = {text}
        S[b,h,m,n] = Q[b,h,m,d] * K[b,h,n,d]
        P[b,h,m,n] = softmax[n](S * scale)
        O[b,h,m,e] = P * V[b,h,n,e]
        """)


def test_bad_values_and_backends_without_a_selection_stage():
    q = torch.randn(1, 2, 40, 8)
    with pytest.raises(AttncompError, match="k >= 1"):
        ac.compile(ac.variants.moba(block_size=8, top_k=0), backend="reference")(q, q, q)
    with pytest.raises(AttncompError, match="exactly one of"):
        ac.selection(8, top_k=2, threshold=0.5)
    with pytest.raises(UnsupportedError, match="cannot run a data-dependent selection"):
        ac.compile(ac.variants.moba(block_size=8), backend="flex")
    with pytest.raises(AttncompError, match="inputs must be"):
        ac.analyze(ac.variants.moba(block_size=8), 40, inputs={"Q": q})
    with pytest.raises(AttncompError, match="inputs= is for specs with a selection"):
        ac.analyze(ac.variants.causal(), 40, inputs={"Q": q, "K": q})


def test_gradients_flow_through_the_attention_not_the_choice():
    spec = ac.variants.moba(block_size=8, top_k=2)
    q, k, v = (torch.randn(1, 2, 40, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out = ac.compile(spec, backend="reference")(q, k, v)
    mask = selection_mask("moba", {"block_size": 8, "top_k": 2}, q.detach(), k.detach())
    s = (q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~mask, float("-inf"))
    expected = torch.softmax(s, -1) @ v
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(expected, (q, k, v), g)):
        torch.testing.assert_close(a, b)


def brute_row_counts(pairs: torch.Tensor, bn: int) -> np.ndarray:
    """Key tiles with at least one kept pair, per row, from a dense pair mask [B, H, M, N]."""
    B, H, M, N = pairs.shape
    padded = torch.nn.functional.pad(pairs, (0, -N % bn))
    return padded.view(B, H, M, -1, bn).any(-1).sum(-1).numpy()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q_len,kv_len", [(192, 192), (200, 150)])
def test_structural_row_counts_equal_the_real_ones_where_exact(name, q_len, kv_len):
    spec, args, q, k = problem(name, q_len, kv_len, seed=11)
    real = brute_row_counts(selection_mask(name, args, q, k), 8)
    data = row_counts(spec, q_len, kv_len, block_n=8, batch=2, heads=4, inputs={"Q": q, "K": k})
    assert np.array_equal(data.low, real) and data.exact.all() and data.kind == "data"
    structural = row_counts(spec, q_len, kv_len, block_n=8, batch=2, heads=4)
    low, high = (np.broadcast_to(x, real.shape) for x in (structural.low, structural.high))
    assert ((low <= real) & (real <= high)).all()
    assert np.array_equal(np.where(low == high, real, low), low)
    if name in ("moba", "nsa_selection", "quest") and q_len == kv_len:  # top-k over whole blocks: data-free
        assert structural.exact.all()


def test_one_choice_per_query_block():
    """query_block: the mean query of each block chooses for all its rows, at its last row;
    layouts and row counts against brute force, and the text round trip."""
    spec = ac.variants.topk_blocks(block_size=16, top_k=2, query_block=32)
    assert parse_program(str(spec), name=spec.name) == spec
    args = {"block_size": 16, "top_k": 2, "query_block": 32}
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 4, 150, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 2, 130, 16, generator=gen, dtype=torch.float64)
    pairs = selection_mask("topk_blocks", args, q, k)
    expected = tile_classes(pairs, 32, 16)
    data = ac.analyze(spec, 150, 130, (32, 16), inputs={"Q": q, "K": k}, batch=2, heads=4)
    assert (layout_classes(data) == expected).all()
    shown = np.broadcast_to(layout_classes(ac.analyze(spec, 150, 130, (32, 16), batch=2, heads=4)), expected.shape)
    assert ((expected == 0) | (shown > 0)).all() and ((shown != 2) | (expected == 2)).all()
    real = brute_row_counts(pairs, 8)
    assert np.array_equal(row_counts(spec, 150, 130, 8, batch=2, heads=4, inputs={"Q": q, "K": k}).low, real)
    bounds = row_counts(spec, 150, 130, 8, batch=2, heads=4)
    assert ((bounds.low <= real) & (real <= bounds.high)).all()
    with pytest.raises(AttncompError, match="query_block must be a positive int"):
        ac.compile(ac.variants.topk_blocks(block_size=16, query_block=2).with_params(query_block=0))(q, k, k)
