"""The simulator's predicted speedups against measurements on this CPU, in one run.

For each mask, the simulator predicts the speedup of attncomp's FlexAttention backend over
the same backend running dense (no mask), on its measured model of this CPU (one "SM" per
thread; matmul, exp, ALU and memory rates measured by ``attncomp.simulator.this_cpu``).
Then both are run and timed here, interleaved. Nothing about these runs is fitted: the CPU
model is measured with microbenchmarks, the rest is the Program and the exact block layout.

The linear-attention row prices the chunked kernel plan of ``causal_linear`` (per-block states,
their prefix sums, the quadratic form on diagonal tiles only: what attncomp's Triton kernel
runs) and times that algorithm written in torch, causal against its unmasked form: on a CPU
the Triton kernel runs only in Triton's interpreter, whose time is Python's, flex has no
linear attention, and the reference evaluates it dense, as the oracle must.

    python benchmarks/simulator_vs_cpu.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from block_mask import NA_GRID, make_mask  # noqa: E402
from flex_cpu import timed  # noqa: E402

import attncomp as ac  # noqa: E402
from attncomp.simulator import FAMILIES, simulate, this_cpu  # noqa: E402
from attncomp.simulator.costs import tile_work  # noqa: E402
from attncomp.simulator.model import tile_times  # noqa: E402

NA_GRID.setdefault(8192, (64, 128))


def sliding(width: int):
    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < width)
    return sliding_window


CASES = [
    ("causal", 8192, lambda L: make_mask("causal", L)),
    ("causal", 16384, lambda L: make_mask("causal", L)),
    ("sliding_window 1024", 16384, lambda L: sliding(1024)),
    ("sliding_window 4096", 16384, lambda L: sliding(4096)),
    ("document", 16384, lambda L: make_mask("document", L)),
    ("na2d_tiled", 16384, lambda L: make_mask("na2d_tiled", L)),
]


def chunked_linear(q, k, v, causal: bool, block: int = 128):
    """phi(Q) phi(K)^T V with phi = elu + 1, chunked: per key block the state phi(K_j)^T V_j,
    their prefix sums, and (causal) the masked quadratic form inside each diagonal block."""
    phi = lambda x: torch.nn.functional.elu(x) + 1
    B, H, L, D = q.shape
    qb, kb = (phi(x).reshape(B, H, L // block, block, D) for x in (q, k))
    vb = v.reshape(B, H, L // block, block, v.shape[-1])
    states = torch.einsum("bhnkd,bhnke->bhnde", kb, vb).cumsum(2)  # prefix states, as the kernel plan keeps
    if not causal:  # every query block reads the last prefix: all keys
        return torch.einsum("bhnqd,bhde->bhnqe", qb, states[:, :, -1]).reshape(B, H, L, -1)
    before = torch.nn.functional.pad(states[:, :, :-1], (0, 0, 0, 0, 1, 0))  # blocks strictly before
    inter = torch.einsum("bhnqd,bhnde->bhnqe", qb, before)
    diag = torch.einsum("bhnqd,bhnkd->bhnqk", qb, kb).tril()
    return (inter + diag @ vb).reshape(B, H, L, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 256
    cpu = this_cpu(args.threads)
    print(f"CPU model ({cpu.source}): {cpu.tensor_flops_per_clk:.1f} GFLOP/s matmul, "
          f"{cpu.exp_per_clk:.2f} G exp/s, {cpu.alu_per_clk:.2f} G ops/s per thread, {cpu.hbm_gbps:.0f} GB/s")
    checker = ac.attention(mask=lambda b, h, q_idx, kv_idx: (q_idx + kv_idx) % 2 == 0, name="checkerboard")
    tt = tile_times(tile_work(checker, 128, 128, args.head_dim, dtype_bytes=4, hoisted=False), cpu,
                    FAMILIES["cpu-flex"], 1.0, 1.0)
    print(f"partial tile (checkerboard mask) over full: measured {cpu.partial_tile_factor:.2f}x, modelled from "
          f"the mask's ops {tt.partial / tt.full:.2f}x; a tile whose row's K/V sweep misses the "
          f"{cpu.cache_kb:.0f} KiB cache: measured {cpu.streaming_factor:.2f}x")
    print(f"B=1, H={args.heads}, D={args.head_dim}, float32, block 128x128")
    print("| mask | tokens | tile ratio | predicted speedup | measured speedup | error |")
    print("|---|---|---|---|---|---|")
    dense = ac.compile(ac.attention(name="dense"), backend="flex")
    errors = []

    def row(label, length, est, measured):
        err = est.speedup / measured - 1
        errors.append(abs(err))
        print(f"| {label} | {length // 1024}k | {est.tile_ratio:.2f}x | {est.speedup:.2f}x | {measured:.2f}x | "
              f"{100 * err:+.1f}% |", flush=True)

    def inputs(length):
        gen = torch.Generator().manual_seed(0)
        return [torch.randn(1, args.heads, length, args.head_dim, generator=gen) for _ in range(3)]
    for label, length, make in CASES:
        q, k, v = inputs(length)
        spec = ac.attention(mask=make(length), name=label)
        kernel = ac.compile(spec, backend="flex")
        kernel(q, k, v), dense(q, k, v)  # compile
        t = timed({"dense": lambda: dense(q, k, v), "sparse": lambda: kernel(q, k, v)}, args.repeat)
        row(label, length, simulate(spec, cpu, heads=args.heads, q_len=length, head_dim=args.head_dim, dtype="fp32",
                                    block=(128, 128), family="cpu-flex"), t["dense"] / t["sparse"])
    length = 16384
    q, k, v = inputs(length)
    # ~20 ms a call: more rounds than the flex rows cost little and steady the median
    t = timed({"dense": lambda: chunked_linear(q, k, v, False), "causal": lambda: chunked_linear(q, k, v, True)},
              max(args.repeat, 15))
    row("causal_linear (chunked)", length, simulate(ac.variants.causal_linear(), cpu, heads=args.heads, q_len=length,
                                                    head_dim=args.head_dim, dtype="fp32", block=(128, 128),
                                                    family="cpu-flex"), t["dense"] / t["causal"])
    print(f"\nmedian |error|: {100 * statistics.median(errors):.1f}%, worst {100 * max(errors):.1f}%")


if __name__ == "__main__":
    main()
