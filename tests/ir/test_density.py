"""Density at scale: runs, copies of tiles, periods, and sampled estimates that keep their word."""

import numpy as np
import pytest
import torch

import attncomp as ac
from attncomp.ir.analysis import density
from attncomp.ir.analysis.shift import tile_periods


def dense_density(fn, q_len, kv_len, heads=1):
    q, k = torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :]
    return float(np.mean([fn(0, torch.tensor(h), q, k).double().mean().item() for h in range(heads)]))


def random_mask(rng):
    """A random mask of the shapes users write: bands, strides, periods, blocks, a random
    block table, a per-head parameter; combined with & and |."""
    table = torch.rand(64, 64, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))) < rng.random()
    per_head = torch.tensor(rng.integers(1, 300, size=4))

    def term():
        a, c, d = int(rng.integers(1, 4)), int(rng.integers(1, 600)), int(rng.integers(2, 9))
        return [lambda q, k, h: q - k >= -c, lambda q, k, h: (q - k).abs() < c, lambda q, k, h: (q + a * k) % d == 0,
                lambda q, k, h: q // c == k // c, lambda q, k, h: table[q // 37 % 64, k // 41 % 64],
                lambda q, k, h: (q - k).abs() <= per_head[h], lambda q, k, h: k % c < c // 2 + 1][rng.integers(7)]

    terms = [term() for _ in range(int(rng.integers(1, 4)))]
    ops = [bool(rng.integers(2)) for _ in terms]

    def mask(b, h, q_idx, kv_idx):
        out = terms[0](q_idx, kv_idx, h)
        for t, both in zip(terms[1:], ops[1:]):
            out = (out & t(q_idx, kv_idx, h)) if both else (out | t(q_idx, kv_idx, h))
        return out
    return mask


def test_sampled_density_interval_covers_the_truth(monkeypatch):
    """Sampled densities fall inside their stated 95% interval in at least 95% of 200
    random cases (each checked against the dense mask)."""
    monkeypatch.setattr(density, "EXACT_POINTS", 0)
    monkeypatch.setattr(density, "SAMPLE_POINTS", 2048)
    rng = np.random.default_rng(7)
    inside = sampled = 0
    for _ in range(200):
        fn = random_mask(rng)
        q_len, kv_len = int(rng.integers(200, 1500)), int(rng.integers(200, 1500))
        block = (int(rng.choice([16, 32, 64])), int(rng.choice([16, 32, 64])))
        layout = ac.analyze(ac.attention(mask=fn, name="random"), q_len, kv_len, block=block, heads=4)
        truth = dense_density(fn, q_len, kv_len, heads=layout.shape[1])
        low, high = layout.density_ci
        if layout.counts["partial"]:
            sampled += not layout.mask_density_exact
        inside += low - 1e-12 <= truth <= high + 1e-12
    assert sampled >= 150
    assert inside >= 190, f"{inside} / 200 intervals hold the true density"


def test_estimate_is_labelled_and_exact_when_cheap():
    window = ac.analyze(ac.variants.sliding_window(1000), 1 << 16, block=128)
    assert window.mask_density_exact and window.density_ci == (window.mask_density, window.mask_density)
    summary = window.summary()
    assert summary["mask_density_exact"] and summary["mask_density_ci"] == [window.mask_density] * 2


def test_copies_and_periods():
    """Causal and window masks are shift-invariant along the diagonal; parity is periodic."""
    causal = ac.variants.causal().mask
    assert tile_periods(causal, 128, 128) == (None, None, 1)
    assert tile_periods(causal, 128, 64)[2] is None  # tiles are not squares: no diagonal copies
    parity = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx + kv_idx) % 2 == 0).mask
    assert tile_periods(parity, 128, 128) == (1, 1, 1)
    doc = ac.variants.document().mask  # reads doc[b, q]: nothing is proven
    assert tile_periods(doc, 128, 128) == (None, None, None)


@pytest.mark.parametrize("fn", [lambda b, h, q, k: (q + k) % 2 == 0, lambda b, h, q, k: k % 256 < 100,
                                lambda b, h, q, k: (q // 128) % 3 == (k // 128) % 2,
                                lambda b, h, q, k: ((q + 2 * k) % 5 == 1) | (k < 300)])
@pytest.mark.parametrize("lengths", [(1000, 1013), (4161, 3000), (64, 5000)])
def test_periodic_layouts_match_brute_force(fn, lengths):
    q_len, kv_len = lengths
    layout = ac.analyze(ac.attention(mask=fn, name="periodic"), q_len, kv_len, block=(128, 64))
    dense = fn(0, 0, torch.arange(q_len)[:, None], torch.arange(kv_len)[None, :])
    pad = torch.zeros(layout.num_q_blocks * 128, layout.num_kv_blocks * 64, dtype=torch.bool)
    inside = torch.zeros_like(pad)
    pad[:q_len, :kv_len], inside[:q_len, :kv_len] = dense, True
    tiles = pad.reshape(layout.num_q_blocks, 128, layout.num_kv_blocks, 64).permute(0, 2, 1, 3)
    within = inside.reshape(layout.num_q_blocks, 128, layout.num_kv_blocks, 64).permute(0, 2, 1, 3)
    kept, size = tiles.sum((2, 3)), within.sum((2, 3))
    expected = torch.where(kept == size, 2, torch.where(kept == 0, 0, 1))
    assert torch.equal(torch.as_tensor(layout.class_grid()).long(), expected)
    assert layout.mask_density == pytest.approx(dense.double().mean().item(), abs=1e-12)


def test_sixteen_million_tokens_in_runs():
    layout = ac.analyze(ac.variants.causal(), 1 << 24, block=128)
    assert layout.counts["full"] == 131072 * 131071 // 2
    assert len(layout.full.start) == 131071  # one run per row: memory grows with runs
    assert layout.mask_density == pytest.approx((1 + 1 / (1 << 24)) / 2) and layout.mask_density_exact


GRID_CASES = [
    (ac.variants.neighborhood, dict(shape=(8, 12, 16), window=(3, 5, 7), tile=(2, 4, 4)), (32, 32)),
    (ac.variants.neighborhood, dict(shape=(8, 12, 16), window=(3, 5, 7), tile=(2, 4, 4)), (64, 16)),
    (ac.variants.neighborhood, dict(shape=(24, 20), window=(7, 5), dilation=(2, 1)), (16, 20)),
    (ac.variants.neighborhood, dict(shape=(16, 16), window=(6, 6), stride=(3, 2), tile=(4, 4)), (16, 32)),
    (ac.variants.window_attention, dict(shape=(12, 12), window=4, shift=2), (24, 24)),
    (ac.variants.grid_attention, dict(shape=(12, 12), grid=3, tile=(4, 4)), (16, 16)),
]


@pytest.mark.parametrize("make,kwargs,block", GRID_CASES)
def test_grid_masks_per_digit_match_brute_force(make, kwargs, block):
    """Masks on grid coordinates are decided per component of their digits: the same tiles
    and the same exact density as evaluating every pair."""
    spec = make(**kwargs)
    length = int(np.prod(kwargs["shape"]))
    layout = ac.analyze(spec, length, block=block)
    q = torch.arange(length)
    dense = layout.mask_mod(torch.tensor(0), torch.tensor(0), q[:, None], q[None, :])
    bm, bn = block
    nq, nk = layout.num_q_blocks, layout.num_kv_blocks
    pad = torch.zeros(nq * bm, nk * bn, dtype=torch.bool)
    inside = torch.zeros_like(pad)
    pad[:length, :length], inside[:length, :length] = dense, True
    kept = pad.reshape(nq, bm, nk, bn).sum((1, 3))
    size = inside.reshape(nq, bm, nk, bn).sum((1, 3))
    expected = torch.where(kept == size, 2, torch.where(kept == 0, 0, 1))
    assert torch.equal(torch.as_tensor(layout.class_grid()).long(), expected)
    assert layout.mask_density == pytest.approx(dense.double().mean().item(), abs=1e-12)
    assert layout.mask_density_exact


def test_three_dimensional_neighborhood_in_digits():
    """NATTEN's 3-D case from issue 24 is decided per axis: every partial tile in digit
    space (no point-by-point boxes), and its density counted exactly."""
    spec = ac.variants.neighborhood(shape=(30, 48, 80), window=(18, 24, 24), tile=(2, 8, 8))
    layout = ac.analyze(spec, 30 * 48 * 80, block=128)
    assert layout.counts == {"empty": 661104, "partial": 124128, "full": 24768}
    assert layout.stats["grid_digits"] and layout.stats["dense_boxes"] == 0
    assert layout.mask_density_exact
    # NATTEN's closed form: per axis, the window sizes over the axis length, multiplied
    assert layout.mask_density == pytest.approx((18 / 30) * (24 / 48) * (24 / 80))
