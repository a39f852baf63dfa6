"""``to_block_mask(layout)`` holds the same partial and full blocks per row as
FlexAttention's ``create_block_mask`` on the same mask (built here from the independent
oracle's dense mask), for every library variant with a mask at 2K-4K tokens."""

import pytest
from oracles import mask_oracle
from torch.nn.attention.flex_attention import create_block_mask

import attncomp as ac
from attncomp.backends.flex_blockmask import to_block_mask
from attncomp.variants import REGISTRY

# Grid variants at 2K-4K tokens; 1-D variants at one block-multiple and one ragged length.
GRIDS = {
    "neighborhood_1d": {"shape": (2048,), "window": 257},
    "neighborhood_2d": {"shape": (48, 48), "window": 13},
    "neighborhood_2d_tiled": {"shape": (64, 64), "window": 13, "tile": (8, 16)},
    "neighborhood_3d": {"shape": (8, 16, 16), "window": (3, 7, 7)},
    "neighborhood_3d_tiled": {"shape": (8, 16, 16), "window": (3, 7, 7), "tile": (2, 8, 8)},
    "dilated_neighborhood_1d": {"shape": (2048,), "window": 127, "dilation": 4},
    "dilated_neighborhood_2d": {"shape": (48, 48), "window": 7, "dilation": 3},
    "dilated_neighborhood_3d": {"shape": (8, 16, 16), "window": 3, "dilation": (1, 2, 2), "tile": (2, 8, 8)},
    "strided_neighborhood_1d": {"shape": (3000,), "window": 512, "stride": 128},
    "strided_neighborhood_2d": {"shape": (48, 48), "window": 16, "stride": 8},
    "blocked_neighborhood_2d": {"shape": (64, 64), "window": 16, "stride": 16, "tile": (16, 8)},
    "strided_neighborhood_3d": {"shape": (8, 16, 16), "window": (4, 8, 8), "stride": (2, 4, 4)},
    "swin": {"shape": (56, 56), "window": 7, "shift": 3},
    "maxvit_block": {"shape": (64, 64), "window": 8, "tile": (8, 8)},
    "maxvit_grid": {"shape": (48, 48), "grid": 8},
}
ONE_D = {"sliding_window": {"window": 512}, "streaming": {"sinks": 4, "window": 512},
         "dilated_sliding_window": {"window": 128, "dilation": 3}, "global_window": {"global_tokens": 64, "window": 256},
         "s2_attention": {"block": 64, "shards": 4, "window": 256}, "strided_heads": {"stride": 4},
         "power_attention": {"window": 256}, "blockwise_causal": {"chunk": 200}, "block_diagonal": {"chunk": 256}}
# static masks (the data-dependent selections have their own layout tests: tests/ir/test_selection.py)
MASKED = sorted(n for n in REGISTRY if (REGISTRY[n].build().mask is not None or n == "causal_score")
                and REGISTRY[n].build().selection is None)
CASES = [(n, GRIDS.get(n, ONE_D.get(n, {})), length) for n in MASKED
         for length in ((None,) if n in GRIDS else (2048, 3000))]


def rows(kv_num, kv_idx):
    return [[kv_idx[b, h, i, :kv_num[b, h, i]].tolist() for i in range(kv_num.shape[2])]
            for b in range(kv_num.shape[0]) for h in range(kv_num.shape[1])]


@pytest.mark.parametrize("name,args,length", CASES, ids=[f"{n}-{l or 'grid'}" for n, _, l in CASES])
def test_block_mask_matches_create_block_mask(name, args, length):
    variant = REGISTRY[name]
    ex = variant.example(length or 0, batch=2, heads=4, **args)
    tensors = variant.example_tensors(ex, **args)
    layout = ac.analyze(variant.build(**args), ex.q_len, ex.kv_len, (128, 128), tensors=tensors,
                        batch=ex.batch, heads=ex.heads)
    dense = mask_oracle(name, variant.arguments(**args), tensors, ex.batch, ex.heads, ex.q_len, ex.kv_len)
    dense = dense.expand(ex.batch, ex.heads, ex.q_len, ex.kv_len)
    B, H = layout.shape
    ref = create_block_mask(lambda b, h, q, kv: dense[b, h, q, kv], B, H, ex.q_len, ex.kv_len, device="cpu")
    ours = to_block_mask(layout)
    assert rows(ours.kv_num_blocks, ours.kv_indices) == rows(ref.kv_num_blocks, ref.kv_indices)
    assert rows(ours.full_kv_num_blocks, ours.full_kv_indices) == rows(ref.full_kv_num_blocks, ref.full_kv_indices)
    # the q-side lists (per key block, the query blocks that list it) the backward pass walks
    assert rows(ours.q_num_blocks, ours.q_indices) == rows(ref.q_num_blocks, ref.q_indices)
    assert rows(ours.full_q_num_blocks, ours.full_q_indices) == rows(ref.full_q_num_blocks, ref.full_q_indices)
    assert ours.seq_lengths == (ex.q_len, ex.kv_len)
