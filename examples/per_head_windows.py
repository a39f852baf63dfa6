"""D1/D2: grouped-query attention with a different window per head (MoA-style); the layout
is analyzed per head, and K/V have a quarter of the query heads."""

import torch
from _common import LENGTH

import attncomp as ac

heads = 8
windows = torch.tensor([LENGTH // 64 * 2 ** (i % 4) for i in range(heads)], dtype=torch.int32)
spec = ac.variants.per_head_window(windows)
layout = ac.analyze(spec, LENGTH, heads=heads)
print(f"layouts per head: {layout.shape}, visited tiles: {layout.counts['partial'] + layout.counts['full']}")
for hw in ("h100", "b200"):
    est = ac.simulate(spec, hw, heads=heads, kv_heads=2, q_len=LENGTH, layout=layout)
    print(f"{hw}: {1e3 * est.time_s:.3f} ms, {est.speedup:.2f}x over dense, imbalance "
          f"{100 * est.breakdown['imbalance'] / est.time_s:.0f}%")
q = torch.randn(1, heads, 300, 32)
k = v = torch.randn(1, 2, 300, 32)
small = ac.variants.per_head_window(torch.tensor([8, 16, 32, 64, 8, 16, 32, 64], dtype=torch.int32))
out = ac.compile(small, backend="triton", block=(32, 32))(q, k, v)
print("triton vs reference:", (out - ac.compile(small)(q, k, v)).abs().max().item())
