"""E6: gated attention, a sigmoid gate computed from the layer input X and a per-head W_g,
applied in the kernel's epilogue."""

import torch

import attncomp as ac

spec = ac.variants.gated_attention()
print(spec)
q, k, v = (torch.randn(2, 4, 200, 32) for _ in range(3))
x, wg = torch.randn(2, 200, 48), torch.randn(4, 48, 32)
out = ac.compile(spec, backend="triton", block=(32, 32))(q, k, v, x, wg)
print("triton vs reference:", (out - ac.compile(spec)(q, k, v, x, wg)).abs().max().item())
