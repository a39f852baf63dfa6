"""Every library variant on the reference backend against an independent torch oracle."""

import pytest
import torch
from oracles import oracle

import attncomp as ac
from attncomp.variants import REGISTRY, example_inputs

NAMES = sorted(REGISTRY)


def run_case(name, q_len, kv_len, heads=4, **overrides):
    variant = REGISTRY[name]
    program = variant.build(**overrides)
    ex = variant.example(q_len, kv_len, batch=2, heads=heads, head_dim=16, **overrides)
    tensors = variant.example_tensors(ex, seed=7, **overrides)
    inputs = example_inputs(program, ex, dtype=torch.float64, seed=3)
    out = ac.compile(program, backend="reference")(**inputs, **tensors)
    expected = oracle(name, variant.arguments(**overrides), tensors, inputs, ex.q_len, ex.kv_len)
    return out, expected


@pytest.mark.parametrize("name", NAMES)
def test_variant_matches_oracle(name):
    out, expected = run_case(name, 100, 100)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].cross])
@pytest.mark.parametrize("q_len,kv_len", [(70, 133), (133, 70)])
def test_variant_cross_lengths(name, q_len, kv_len):
    out, expected = run_case(name, q_len, kv_len)
    assert out.shape[2] == q_len
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,overrides", [
    ("neighborhood_2d", {"shape": (9, 14), "window": (3, 7)}),
    ("dilated_neighborhood_2d", {"shape": (15, 10), "window": (5, 3), "dilation": (3, 2)}),
    ("strided_neighborhood_2d", {"shape": (11, 13), "window": (4, 6), "stride": (3, 4)}),
    ("neighborhood_3d_tiled", {"shape": (4, 6, 6), "window": (3, 3, 5), "tile": (2, 3, 2)}),
    ("swin", {"shape": (10, 12), "window": (5, 4), "shift": (2, 3)}),
    ("maxvit_grid", {"shape": (8, 12), "grid": (2, 3), "tile": (4, 4)}),
    ("causal_linear", {"feature": "relu", "normalize": True}),
    ("t5_bias", {"bidirectional": False, "max_distance": 40}),
    ("sliding_window", {"window": 1}),
])
def test_variant_other_arguments(name, overrides):
    out, expected = run_case(name, 90, 90, **overrides)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


def test_gqa_uses_fewer_kv_heads():
    ex = REGISTRY["gqa"].example(64, heads=8)
    assert ex.kv_heads == 2
    out, expected = run_case("gqa", 64, 64, heads=8)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)


def test_every_variant_group_is_covered():
    groups = {v.group for v in REGISTRY.values()}
    required = {f"A{i}" for i in range(1, 11)} | {"B1", "B2", "B3", "B5"} | {f"C{i}" for i in range(1, 7)} \
        | {"D1", "D2", "E1", "E2", "E3", "E6"}
    assert required <= groups
    dims = {len(v.arguments()["shape"]) for v in REGISTRY.values() if v.group in ("B1", "B2", "B3")}
    assert dims == {1, 2, 3}
    assert any(v.arguments().get("tile") for v in REGISTRY.values() if v.group == "B1")
