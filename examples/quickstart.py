"""Declare a mask the FlexAttention way, look at it, and run it on the reference backend."""

import torch

import attncomp as ac
from attncomp.ir.evaluate import dense_mask
from attncomp.ir.picture import mask_picture

WINDOW = 4


def local_causal(b, h, q_idx, kv_idx):  # exactly what you would pass to FlexAttention
    return (q_idx >= kv_idx) & (q_idx - kv_idx < WINDOW)


spec = ac.attention(mask=local_causal)
print(spec)                                            # the traced Program
print(mask_picture(dense_mask(spec.mask, 12, 12)[0, 0]))  # its mask, 12 x 12

q, k, v = (torch.randn(1, 2, 12, 16) for _ in range(3))
out = ac.compile(spec, backend="reference")(q, k, v)   # dense float32/64 oracle
print(out.shape)
