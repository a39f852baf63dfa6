"""attncomp's FlexAttention backend vs hand-written FlexAttention vs SDPA, on this CPU.

All three compute the same attention (compiled FlexAttention runs on CPU, forward only):

- attncomp-flex: ``ac.compile(spec, backend="flex")`` with the spec traced from the same
  mask_mod a user writes; its BlockMask comes from ``ac.analyze``;
- hand-written: ``torch.compile(flex_attention)`` with ``create_block_mask`` (compiled);
- SDPA: ``scaled_dot_product_attention`` with the dense boolean mask.

Kernel time excludes mask construction (BlockMasks built beforehand; attncomp's cached);
end-to-end time includes it (attncomp: analysis + BlockMask on a cold cache; the peer:
a warm compiled create_block_mask, its best case). Medians of --repeat runs after warm-up.

    python benchmarks/flex_cpu.py                 # causal, sliding window, documents, 2-D NA; 8K-32K
    python benchmarks/flex_cpu.py --sizes 8k --masks causal
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from block_mask import make_mask  # noqa: E402  (the same user-written mask_mods)

import attncomp as ac  # noqa: E402

SIZES = {"8k": 8192, "16k": 16384, "32k": 32768}
EAGER_LIMIT = 4 << 30  # bytes of index grids eager create_block_mask may materialize here
NA_GRID = {8192: (64, 128), 16384: (128, 128), 32768: (128, 256)}


def timed(fns: dict, repeat: int) -> dict:
    """Median time of each function, the functions interleaved round by round so that
    no side is favoured by running first (compile workers, caches, clock)."""
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def na_mask(length: int):
    import block_mask

    block_mask.NA_GRID.setdefault(length, NA_GRID[length])
    return make_mask("na2d_tiled", length)


def run_case(mask: str, length: int, heads: int, dim: int, repeat: int, sdpa_limit: int) -> dict:
    fn = na_mask(length) if mask == "na2d_tiled" else make_mask(mask, length)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, length, dim, generator=gen) for _ in range(3))
    compiled_flex = torch.compile(flex_attention, dynamic=False)
    compiled_cbm = torch.compile(create_block_mask)

    spec = ac.attention(mask=fn, name=mask)
    kernel = ac.compile(spec, backend="flex")

    def ours_e2e():
        kernel.cache.clear()
        kernel.plan.layouts.clear()  # the analysis too: a cold start
        return kernel(q, k, v)

    bm = compiled_cbm(fn, None, None, length, length, device="cpu")
    fns = {
        "ours_kernel": lambda: kernel(q, k, v),
        "peer_kernel": lambda: compiled_flex(q, k, v, block_mask=bm),
        "ours_total": ours_e2e,
        "peer_total": lambda: compiled_flex(q, k, v, block_mask=compiled_cbm(fn, None, None, length, length,
                                                                               device="cpu")),
    }
    for f in fns.values():  # compile everything first
        f()
    result = timed(fns, repeat)
    result["max_diff"] = (fns["ours_kernel"]() - fns["peer_kernel"]()).abs().max().item()
    if 8 * length * length <= EAGER_LIMIT:  # eager create_block_mask: the default, dense path
        eager = lambda: compiled_flex(q, k, v, block_mask=create_block_mask(fn, None, None, length, length,
                                                                            device="cpu"))
        result["peer_eager_total"] = timed({"e": eager}, 1)["e"]
    result["visited"] = kernel.layout(length, length).density
    if length <= sdpa_limit:
        idx = torch.arange(length)
        dense = torch.cat([fn(0, 0, idx[i:i + 1024, None], idx[None, :]) for i in range(0, length, 1024)])
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
        sdpa()
        result["sdpa"] = timed({"sdpa": sdpa}, max(1, repeat // 2))["sdpa"]
    return result


def fmt(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1000:.0f} ms" if t < 10 else f"{t:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="8k,16k,32k")
    parser.add_argument("--masks", default="causal,sliding_window,document,na2d_tiled")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sdpa-limit", type=parse_len, default=32768, help="largest length to run SDPA at")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # every mask and length is one more compile of flex_attention for both sides; torch's default
    # limit of 8 would make later rows fall back to eager, dense flex_attention
    torch._dynamo.config.recompile_limit = 256
    print(f"B=1, H={args.heads}, D={args.head_dim}, float32, {args.threads} threads, torch {torch.__version__}")
    print("| mask | tokens | visited tiles | kernel: attncomp-flex | kernel: hand-written flex | kernel ratio | "
          "end-to-end: attncomp | end-to-end: hand-written (compiled mask, warm) | e2e speedup | "
          "end-to-end: hand-written (eager mask) | e2e speedup | SDPA dense mask | flex vs SDPA | max diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mask in args.masks.split(","):
        for size in args.sizes.split(","):
            L = SIZES[size]
            r = run_case(mask, L, args.heads, args.head_dim, args.repeat, args.sdpa_limit)
            sdpa = r.get("sdpa")
            print(f"| {mask} | {size} | {100 * r['visited']:.1f}% | {fmt(r['ours_kernel'])} | {fmt(r['peer_kernel'])} | "
                  f"{r['ours_kernel'] / r['peer_kernel']:.3f} | {fmt(r['ours_total'])} | {fmt(r['peer_total'])} | "
                  f"{r['peer_total'] / r['ours_total']:.2f}x | "
                  f"{fmt(r.get('peer_eager_total')) if 'peer_eager_total' in r else 'skipped (8 GiB+ mask grid)'} | "
                  f"{(str(round(r['peer_eager_total'] / r['ours_total'], 1)) + 'x') if 'peer_eager_total' in r else '-'} | "
                  f"{fmt(sdpa)} | "
                  f"{(sdpa / r['ours_kernel']) if sdpa else 0:.1f}x | {r['max_diff']:.1e} |", flush=True)


def parse_len(text: str) -> int:
    return SIZES.get(text, None) or int(text)


if __name__ == "__main__":
    main()
