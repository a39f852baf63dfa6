"""The simulator's predicted speedups against measurements on this CPU, in one run.

For each mask, the simulator predicts the speedup of attncomp's FlexAttention backend over
the same backend running dense (no mask), on its measured model of this CPU (one "SM" per
thread; matmul, exp, ALU and memory rates measured by ``attncomp.simulator.this_cpu``).
Then both are run and timed here. Nothing about these runs is fitted: the CPU model is
measured with microbenchmarks, the rest is the Program and the exact block layout.

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
from attncomp.simulator import simulate, this_cpu  # noqa: E402

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
    print(f"B=1, H={args.heads}, D={args.head_dim}, float32, block 128x128")
    print("| mask | tokens | tile ratio | predicted speedup | measured speedup | error |")
    print("|---|---|---|---|---|---|")
    dense_times: dict[int, float] = {}
    errors = []
    for label, length, make in CASES:
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, args.heads, length, args.head_dim, generator=gen) for _ in range(3))
        if length not in dense_times:
            dense = ac.compile(ac.attention(name="dense"), backend="flex")
            dense(q, k, v)  # compile
            dense_times[length] = timed({"dense": lambda: dense(q, k, v)}, args.repeat)["dense"]
        spec = ac.attention(mask=make(length), name=label)
        kernel = ac.compile(spec, backend="flex")
        kernel(q, k, v)  # compile
        measured = dense_times[length] / timed({"sparse": lambda: kernel(q, k, v)}, args.repeat)["sparse"]
        est = simulate(spec, cpu, heads=args.heads, q_len=length, head_dim=args.head_dim, dtype="fp32",
                       block=(128, 128), family="cpu-flex")
        err = est.speedup / measured - 1
        errors.append(abs(err))
        print(f"| {label} | {length // 1024}k | {est.tile_ratio:.2f}x | {est.speedup:.2f}x | {measured:.2f}x | "
              f"{100 * err:+.1f}% |", flush=True)
    print(f"\nmedian |error|: {100 * statistics.median(errors):.1f}%")


if __name__ == "__main__":
    main()
