"""Each reproduction of issue 21, by name, against torch's own answer: the analysis never
calls a tile full or empty that torch's dense mask disagrees with, and every backend
computes attention over the mask torch computes (or refuses at compile time)."""

from __future__ import annotations

import pytest
import torch

import attncomp as ac
from attncomp.errors import UnsupportedError
from torch_truth import attention64, tile_classes, torch_mask


def even_keys(b, h, q_idx, kv_idx):
    return (kv_idx * 0.5) % 1.0 == 0


def exp_overflow(b, h, q_idx, kv_idx):
    return torch.exp(q_idx * 0.1) > torch.exp(kv_idx * 0.1)


def big_multiplier(b, h, q_idx, kv_idx):
    return q_idx * 3000000 >= kv_idx * 3000000


def int32_wrap(b, h, q_idx, kv_idx):  # the multiplier above, wrapping int32 already at 160 tokens
    return q_idx * 30000000 >= kv_idx * 30000000


def int64_power(b, h, q_idx, kv_idx):
    return (q_idx + 2) ** 70 > kv_idx


def int64_shift(b, h, q_idx, kv_idx):
    return (q_idx << 60) > (kv_idx << 60)


def bool_sum(b, h, q_idx, kv_idx):
    return ((q_idx > 100) + (kv_idx > 100) + (q_idx >= kv_idx)) >= 2


def radial(b, h, q_idx, kv_idx):
    return (q_idx - kv_idx).abs() <= 16 / 2 ** ((q_idx - kv_idx).abs() // 4)


REPRODUCTIONS = [even_keys, exp_overflow, big_multiplier, int32_wrap, int64_power, int64_shift, bool_sum, radial]


def check_layout(fn, length: int, block: int):
    truth = tile_classes(torch_mask(fn, length, length), block, block)[0, 0]
    layout = ac.analyze(ac.attention(mask=fn), length, block=block)
    ours = torch.as_tensor(layout.class_grid())
    decided = ours != 1  # full or empty: a claim that must hold for torch's values
    wrong = (ours != truth) & decided
    assert not wrong.any(), f"{fn.__name__}: {int(wrong.sum())} tiles called full/empty against torch"
    return layout, truth


@pytest.mark.parametrize("fn", REPRODUCTIONS, ids=lambda f: f.__name__)
def test_analysis_never_contradicts_torch(fn):
    check_layout(fn, 1024, 64)


def test_the_torch_answers():
    # the facts each reproduction is about, as torch computes them
    assert torch_mask(even_keys, 8, 8)[0, 0, 0].tolist() == [True, False] * 4
    layout, _ = check_layout(even_keys, 1024, 64)
    assert layout.counts["full"] == 0 and layout.mask_density == pytest.approx(0.5)
    assert not torch_mask(bool_sum, 300, 300).any()  # bool + bool is a logical or, never 2
    assert ac.analyze(ac.attention(mask=bool_sum), 300, block=64).counts["full"] == 0
    # exp overflows float32 at q_idx * 0.1 > 88.7: both sides inf, the comparison false
    assert not torch_mask(exp_overflow, 1024, 1024)[0, 0, 1000, 900]
    # 2 ** 64 wraps to 0 in int64, so 16 / 0 is inf and far pairs are kept
    assert torch_mask(radial, 1024, 1024)[0, 0, 1000, 0]


def backend_outputs(fn, length: int, heads: int = 2):
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, length, 16) for _ in range(3))
    expected = attention64(q, k, v, torch_mask(fn, length, length))
    spec = ac.attention(mask=fn)
    outs = {"reference": ac.compile(spec, backend="reference")(q, k, v),
            "flex eager": ac.compile(spec, backend="flex", compiled=False)(q, k, v)}
    for backend, options in (("flex", {}), ("triton", {"block": (32, 32)})):
        try:
            kernel = ac.compile(spec, backend=backend, **options)
        except UnsupportedError:  # refusing at compile time is allowed; a wrong answer is not
            continue
        outs[backend] = kernel(q, k, v)
    return expected, outs


@pytest.mark.parametrize("fn", REPRODUCTIONS, ids=lambda f: f.__name__)
def test_backends_compute_what_torch_computes(fn):
    expected, outs = backend_outputs(fn, 160)
    for name, out in outs.items():
        assert (out.double() - expected).abs().max() < 1e-4, name
    # what each backend may refuse: Triton and compiled flex round exp differently from
    # torch; inductor cannot compile a tensor power; everything else runs
    assert ("triton" in outs) == (fn is not exp_overflow)
    assert ("flex" in outs) == (fn not in (exp_overflow, radial))


def rows_past_50_see_nothing(b, h, q_idx, kv_idx):  # float arithmetic, and fully masked rows
    return ((kv_idx * 0.5) % 1.0 == 0) & (q_idx * 0.25 < 12.5)


@pytest.mark.parametrize("fn", [even_keys, int32_wrap, bool_sum, rows_past_50_see_nothing], ids=lambda f: f.__name__)
def test_ragged_lengths_gqa_and_empty_rows(fn):
    # 70 queries over 150 keys, 4 query heads sharing 2 key/value heads; bool_sum and the
    # last mask leave rows with no key at all, which must give zeros
    torch.manual_seed(1)
    q = torch.randn(1, 4, 70, 16)
    k, v = torch.randn(1, 2, 150, 16), torch.randn(1, 2, 150, 16)
    mask = torch_mask(fn, 70, 150)
    expected = attention64(q, k, v, mask)
    for backend, options in (("reference", {}), ("flex", {}), ("triton", {"block": (32, 32)})):
        out = ac.compile(ac.attention(mask=fn), backend=backend, **options)(q, k, v)
        assert out.shape == expected.shape, backend
        assert (out.double() - expected).abs().max() < 1e-4, backend
        assert not out.isnan().any(), backend
    empty = ~mask[0, 0].any(-1)
    assert bool(empty.any()) == (fn in (bool_sum, rows_past_50_see_nothing))
    assert (expected[0, :, empty] == 0).all()
