"""The block-sparsity analysis equals brute-force classification, exactly."""


import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import bool_exprs

import attncomp as ac
from attncomp.ir.evaluate import dense_mask
from attncomp.ir.softmax import SoftmaxParts, softmax_program

DOC_VALUES = torch.randint(-3, 5, (3, 64), generator=torch.Generator().manual_seed(1)).to(torch.int32)
HW_VALUES = torch.tensor([2, -1, 7, 0], dtype=torch.int32)


def brute_force(mask: torch.Tensor, bm: int, bn: int):
    """Per (b, h, q block): sets of partial and full kv blocks, from the dense mask."""
    B, H, Q, K = mask.shape
    nq, nk = -(-Q // bm), -(-K // bn)
    out = {}
    for b in range(B):
        for h in range(H):
            for i in range(nq):
                rows = mask[b, h, i * bm:(i + 1) * bm]
                part, full = set(), set()
                for j in range(nk):
                    tile = rows[:, j * bn:(j + 1) * bn]
                    if tile.all():
                        full.add(j)
                    elif tile.any():
                        part.add(j)
                out[b, h, i] = (part, full)
    return out


def layout_sets(layout, b, h, i):
    g = (b % layout.shape[0]) * layout.shape[1] + (h % layout.shape[1])
    r = g * layout.num_q_blocks + i
    return tuple(set(getattr(layout, kind).row(r).tolist()) for kind in ("partial", "full"))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=bool_exprs(10), q_len=st.integers(1, 150), kv_len=st.integers(1, 150),
       bm=st.sampled_from([1, 2, 3, 8, 16, 32, 64]), bn=st.sampled_from([1, 4, 7, 16, 32, 64]),
       batch=st.integers(1, 3), heads=st.integers(1, 4))
def test_analysis_equals_brute_force(mask, q_len, kv_len, bm, bn, batch, heads):
    spec = softmax_program(SoftmaxParts(mask, None, None), "random")
    tensors = {"doc": DOC_VALUES, "hw": HW_VALUES}
    declared = {k: t for k, t in tensors.items() if k in spec.tensors}
    layout = ac.analyze(spec, q_len, kv_len, (bm, bn), tensors=declared, batch=batch, heads=heads)
    dense = dense_mask(mask, q_len, kv_len, tensors, batch=batch, heads=heads)
    expected = brute_force(dense, bm, bn)
    for (b, h, i), sets in expected.items():
        assert layout_sets(layout, b, h, i) == sets
    B, H = layout.shape
    groups_dense = dense[:B, :H] if (B, H) != (batch, heads) else dense
    assert layout.mask_density == pytest.approx(groups_dense.double().mean().item(), abs=1e-12)
    assert layout.mask_density_exact and layout.density_ci == (layout.mask_density, layout.mask_density)
    c = layout.counts
    assert c["empty"] + c["partial"] + c["full"] == B * H * layout.num_q_blocks * layout.num_kv_blocks


def test_known_counts():
    assert ac.analyze(ac.variants.causal(), 8192, 8192, (128, 128)).counts == {"empty": 2016, "partial": 64, "full": 2016}
    c = ac.analyze(ac.variants.sliding_window(1024), 8192, 8192, (128, 128)).counts
    assert (c["partial"], c["full"]) == (120, 420)


def test_layouts_per_batch_and_head():
    doc = torch.tensor([[0] * 40 + [1] * 60, [0] * 70 + [1] * 30], dtype=torch.int32)
    layout = ac.analyze(ac.variants.document(), 100, block=16, tensors={"doc": doc}, batch=2, heads=3)
    assert layout.shape == (2, 1)
    windows = torch.tensor([5, 50, 100], dtype=torch.int32)
    per_head = ac.analyze(ac.variants.per_head_window(), 100, block=16, tensors={"head_window": windows}, heads=3)
    assert per_head.shape == (1, 3)
    dense = dense_mask(ac.variants.per_head_window().mask, 100, 100, {"head_window": windows}, heads=3)
    for (b, h, i), sets in brute_force(dense, 16, 16).items():
        assert layout_sets(per_head, b, h, i) == sets
    causal = ac.analyze(ac.variants.causal(), 100, block=16, batch=4, heads=8)
    assert causal.shape == (1, 1)


def test_heads_with_the_same_mask_are_analyzed_once():
    """`h % shards` makes 7 heads three classes; the layout of every head still equals its
    own dense evaluation, and the density counts each head."""
    spec = ac.variants.s2_attention(block=4, shards=3, window=5)
    layout = ac.analyze(spec, 90, 70, (16, 8), heads=7)
    assert (layout.stats["groups"], layout.stats["distinct_groups"]) == (7, 3)
    dense = dense_mask(spec.mask, 90, 70, heads=7)
    for (b, h, i), sets in brute_force(dense, 16, 8).items():
        assert layout_sets(layout, b, h, i) == sets
    assert layout.mask_density == pytest.approx(dense.double().mean().item(), abs=1e-12)


def test_band_masks_visit_only_the_band():
    """At 1M tokens (8192 x 8192 = 67M tiles), a sliding window is settled with about a
    hundred thousand rectangle classifications and no point-by-point evaluation."""
    layout = ac.analyze(ac.variants.sliding_window(1024), 1 << 20, block=128)
    assert layout.counts["partial"] + layout.counts["full"] < 80_000
    assert layout.stats["rectangles"] < 40 * layout.num_q_blocks
    assert layout.stats["dense_boxes"] == 0 and layout.stats["refine_rectangles"] == 0
    causal = ac.analyze(ac.variants.causal(), 1 << 20, block=128)
    assert causal.stats["rectangles"] < 40 * causal.num_q_blocks
    assert causal.counts["full"] == 8192 * 8191 // 2


def test_density_and_bounds():
    layout = ac.analyze(ac.variants.causal(), 1000, 777, (128, 64))
    dense = dense_mask(ac.variants.causal().mask, 1000, 777)
    assert layout.mask_density == pytest.approx(dense.double().mean().item())
    visited = sum(min(128, 1000 - i * 128) * min(64, 777 - j * 64)
                  for kind in ("partial", "full") for i, j in layout.tiles(kind))
    assert layout.density == pytest.approx(visited / (1000 * 777))
    c = layout.counts
    assert layout.tile_bound == pytest.approx(sum(c.values()) / (c["partial"] + c["full"]))
    partial, full = layout.row_blocks()
    assert partial.shape == (1, 1, 8) and int(partial.sum() + full.sum()) == c["partial"] + c["full"]


def test_show_and_png(tmp_path):
    layout = ac.analyze(ac.variants.sliding_window(256), 1024, block=128)
    assert layout.show().splitlines()[3] == "·▒█▒····"
    path = layout.save_png(str(tmp_path / "layout.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"IHDR" in data[:16]
    big = ac.analyze(ac.variants.causal(), 1 << 16, block=64)
    rows = big.show(max_cells=64).splitlines()
    assert len(rows) == 64 and rows[0][0] == "▒" and rows[-1][0] == "█" and rows[0][-1] == "·"


def test_no_mask_is_all_full():
    layout = ac.analyze(ac.variants.alibi(heads=4), 300, 200, (64, 64))
    assert layout.counts == {"empty": 0, "partial": 0, "full": 20}
    assert layout.mask_density == 1.0 and layout.density == 1.0


def test_out_of_bounds_loads_are_refused():
    table = ac.tensor("table", (10,), "int32")
    spec = ac.attention(mask=lambda b, h, q_idx, kv_idx: table[q_idx] > 0, name="oob")
    with pytest.raises(ac.AttncompError, match="outside 0..9"):
        ac.analyze(spec, 100, tensors={"table": torch.ones(10, dtype=torch.int32)})
    with pytest.raises(ac.AttncompError, match="Clamp it"):
        ac.analyze(spec, 1 << 14, tensors={"table": torch.ones(10, dtype=torch.int32)})
