"""Independent truth for the soundness tests: a user's mask_mod run by torch itself on
dense index grids (int64 indices, as create_block_mask passes them), tile classes read
off that dense mask, and float64 attention over it. Nothing here imports attncomp."""

from __future__ import annotations

import torch


def torch_mask(fn, q_len: int, kv_len: int, batch: int = 1, heads: int = 1) -> torch.Tensor:
    """``fn(b, h, q_idx, kv_idx)`` evaluated by torch with broadcast int64 index tensors."""
    b = torch.arange(batch).view(-1, 1, 1, 1)
    h = torch.arange(heads).view(1, -1, 1, 1)
    q = torch.arange(q_len).view(1, 1, -1, 1)
    kv = torch.arange(kv_len).view(1, 1, 1, -1)
    out = fn(b, h, q, kv)
    if isinstance(out, bool):  # a constant mask (attncomp takes it as all or nothing)
        out = torch.tensor(out)
    if not (isinstance(out, torch.Tensor) and out.dtype == torch.bool):  # as create_block_mask needs
        raise TypeError(f"a mask_mod must return a bool tensor, not {type(out).__name__} {getattr(out, 'dtype', '')}")
    return out.expand(batch, heads, q_len, kv_len)


def tile_classes(dense: torch.Tensor, bm: int, bn: int) -> torch.Tensor:
    """Per (b, h, query block, key block): 0 empty, 1 partial, 2 full."""
    B, H, L, S = dense.shape
    nq, nk = -(-L // bm), -(-S // bn)
    padded = torch.zeros(B, H, nq * bm, nk * bn, dtype=torch.int64)
    real = torch.zeros_like(padded)
    padded[..., :L, :S] = dense.long()
    real[..., :L, :S] = 1
    kept = padded.view(B, H, nq, bm, nk, bn).sum((3, 5))
    area = real.view(B, H, nq, bm, nk, bn).sum((3, 5))
    return torch.where(kept == 0, 0, torch.where(kept == area, 2, 1))


def attention64(q, k, v, mask: torch.Tensor, score=None) -> torch.Tensor:
    """Softmax attention in float64 over ``mask``; rows with no key give 0. ``score(s, b,
    h, q_idx, kv_idx)`` modifies the scaled scores, over broadcast index tensors."""
    q, k, v = (x.double() for x in (q, k, v))
    if k.shape[1] != q.shape[1]:
        k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], 1) for x in (k, v))
    s = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if score is not None:
        B, H, M, N = s.shape
        s = score(s, torch.arange(B)[:, None, None, None], torch.arange(H)[None, :, None, None],
                  torch.arange(M)[None, None, :, None], torch.arange(N)[None, None, None, :])
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v
