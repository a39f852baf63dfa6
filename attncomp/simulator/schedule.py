"""Placing CTAs on SMs: occupancy, waves, launch order, load imbalance.

One CTA per (query block, head, batch). ``slots = SMs x CTAs per SM`` run at once; as a
slot frees, the next CTA in order takes it (greedy list scheduling). Processed in rounds
of ``slots`` CTAs, each round's CTAs going to the slots that free up first, which is the
greedy schedule whenever a round's CTAs all start before any of them ends — exact for
equal CTAs (wave quantization) and close otherwise, at numpy speed. ``order`` is the
launch order (query blocks fastest within a head, as FlashAttention's grid) or
``longest-first`` (FA3's causal scheduler), which trims the tail of imbalanced masks.
"""

from __future__ import annotations

import math

import numpy as np


def occupancy(smem_kb: int, bm: int, bn: int, head_dim: int, value_dim: int, dtype_bytes: int,
              stages: int = 2) -> int:
    """CTAs per SM that fit in shared memory: a Q tile plus ``stages`` K/V tiles each."""
    need = (bm * head_dim + stages * bn * (head_dim + value_dim)) * dtype_bytes / 1024
    return max(1, int(smem_kb // max(need, 1e-9)))


MAX_SPLITS = 128  # FlashAttention's cap on KV splits


def num_splits(ctas: int, kv_blocks: int, sms: int) -> int:
    """How many chunks a split-KV kernel (FlashDecoding; FlashAttention's ``num_splits_heuristic``)
    cuts each CTA's key range into: none when the CTAs already fill 80% of the SMs; otherwise
    the fewest splits whose wave efficiency (waves over whole waves) is within 85% of the best.

    >>> num_splits(8, 1024, 132), num_splits(2048, 1024, 132)
    (14, 1)
    """
    if ctas >= 0.8 * sms or kv_blocks <= 1:
        return 1
    # a split count is worth trying only if it changes the blocks per split
    eligible = [s for s in range(1, min(MAX_SPLITS, kv_blocks, sms) + 1)
                if s == 1 or -(-kv_blocks // s) != -(-kv_blocks // (s - 1))]
    efficiency = {s: (s * ctas / sms) / math.ceil(s * ctas / sms) for s in eligible}
    best = max(efficiency.values())
    return next(s for s in eligible if efficiency[s] >= 0.85 * best)


def split(counts: np.ndarray, splits: int) -> np.ndarray:
    """Tiles of each CTA dealt over ``splits`` contiguous chunks (one more to the first
    ``counts % splits``): shape ``counts.shape + (splits,)``."""
    base, rest = np.divmod(counts, splits)
    return base[..., None] + (np.arange(splits) < rest[..., None])


def makespan(durations: np.ndarray, slots: int, order: str = "launch", copies: int = 1) -> float:
    """Completion time of CTAs with these durations (in launch order) on ``slots`` slots;
    ``copies``: the list is launched that many times in a row (one per head, all alike)."""
    if len(durations) == 0:
        return 0.0
    if order == "longest-first":
        work = np.repeat(np.sort(durations)[::-1], copies)
    else:
        work = np.tile(np.asarray(durations, dtype=np.float64), copies)
    if len(work) <= slots:
        return float(work.max())
    if work[0] == work[-1] and np.ptp(work) == 0:  # equal CTAs: whole waves (dense kernels)
        return float(work[0] * -(-len(work) // slots))
    # slots are interchangeable: keep their finish times sorted, and give a round's CTAs, in
    # order, to the slots that free up first (a short last round is padded with empty CTAs)
    rounds = np.zeros(-(-len(work) // slots) * slots)
    rounds[: len(work)] = work
    finish = np.zeros(slots)
    for chunk in rounds.reshape(-1, slots):
        finish += chunk
        finish.sort()
    return float(finish[-1])
