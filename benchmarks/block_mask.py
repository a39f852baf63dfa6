"""attncomp's exact block-sparsity analysis vs FlexAttention's create_block_mask.

Both sides get the same FlexAttention-style mask_mod, written here as a user would; the
peer runs it through ``create_block_mask`` (eager, and compiled with torch.compile), and
attncomp traces it with ``ac.attention(mask=...)`` and runs ``ac.analyze``. Every
measurement runs in a fresh process, after a small warm-up run of the same method, and
reports wall time and peak resident memory above the process's size before the call.
Counts of partial and full tiles are compared wherever both sides ran.

    python benchmarks/block_mask.py                  # all masks, 4K..1M tokens
    python benchmarks/block_mask.py --sizes 4k,16k --masks causal
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SIZES = {"4k": 4096, "16k": 16384, "64k": 65536, "128k": 131072, "1m": 1 << 20}
NA_GRID = {4096: (64, 64), 16384: (128, 128), 65536: (256, 256), 131072: (256, 512), 1 << 20: (1024, 1024)}
MEMORY_LIMIT_GIB = 16.0  # of this machine's 24 GiB, what a peer may ask for before we skip it
BLOCK = 128


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_mask(name: str, length: int, na_kernel: int = 13):
    """The mask_mod a FlexAttention user would write, and its captured data."""
    import torch

    if name == "causal":
        def causal(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx
        return causal
    if name == "sliding_window":
        def sliding_window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < 1024)
        return sliding_window
    if name == "document":
        gen = torch.Generator().manual_seed(0)
        docs = max(2, length // 4096)
        cuts = torch.sort(torch.randperm(length - 1, generator=gen)[: docs - 1] + 1).values
        document_id = torch.zeros(length, dtype=torch.int32)
        document_id[cuts] = 1
        document_id = torch.cumsum(document_id, 0).to(torch.int32)

        def document(b, h, q_idx, kv_idx):
            return (document_id[q_idx] == document_id[kv_idx]) & (q_idx >= kv_idx)
        return document
    if name == "na2d_tiled":
        H, W = NA_GRID[length]
        TH, TW, K = 16, 8, na_kernel  # a 128-token block is one 16 x 8 tile of the image

        def na2d_tiled(b, h, q_idx, kv_idx):
            def coords(idx):
                tile, r = idx // (TH * TW), idx % (TH * TW)
                return (tile // (W // TW)) * TH + r // TW, (tile % (W // TW)) * TW + r % TW
            qy, qx = coords(q_idx)
            ky, kx = coords(kv_idx)
            cy = torch.clamp(qy - K // 2, 0, H - K)
            cx = torch.clamp(qx - K // 2, 0, W - K)
            return (cy <= ky) & (ky < cy + K) & (cx <= kx) & (kx < cx + K)
        return na2d_tiled
    raise KeyError(name)


def tile_counts(block_mask) -> tuple[int, int]:
    return int(block_mask.kv_num_blocks.sum()), int(block_mask.full_kv_num_blocks.sum())


def child(method: str, mask: str, length: int) -> dict:
    import torch

    torch.set_num_threads(2)
    fn = make_mask(mask, length)
    warm = 4096
    if method.startswith("attncomp"):
        import attncomp as ac
        from attncomp.backends.flex_blockmask import to_block_mask

        def run(L, f):
            layout = ac.analyze(ac.attention(mask=f), L, L, (BLOCK, BLOCK))
            if method == "attncomp+blockmask":
                return tile_counts(to_block_mask(layout))
            return layout.counts["partial"], layout.counts["full"]
    else:
        from torch.nn.attention.flex_attention import create_block_mask

        need_gib = 8 * length * length / 2**30  # the dense int64 index grids of the vmap'd mask_mod
        if method == "eager" and need_gib > MEMORY_LIMIT_GIB:
            return {"skipped": f"skipped (would need {need_gib:.0f} GiB)"}
        build = torch.compile(create_block_mask) if method == "compiled" else create_block_mask

        def run(L, f):
            return tile_counts(build(f, None, None, L, L, device="cpu", BLOCK_SIZE=BLOCK))
    out = {}
    if method == "compiled":  # the first call at this size compiles; report it, then time a warm call
        start = time.perf_counter()
        run(length, fn)
        out["first_s"] = time.perf_counter() - start
    else:
        run(warm, make_mask(mask, warm))
        if method.startswith("attncomp"):  # the warm-up planned an equal spec: time the passes too
            from attncomp.ir.plan import clear_plans

            clear_plans()
    base = rss_mib()
    start = time.perf_counter()
    partial, full = run(length, fn)
    out.update(time_s=time.perf_counter() - start, peak_mib=max(0.0, peak_mib() - base), partial=partial, full=full)
    return out


def measure(method: str, mask: str, length: int, timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, mask, str(length)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timeout (> {timeout:.0f} s)"}
    if res.returncode != 0:
        oom = res.returncode in (-9, 137) or "MemoryError" in res.stderr or "DefaultCPUAllocator" in res.stderr
        return {"skipped": "OOM" if oom else f"failed: {res.stderr.strip().splitlines()[-1][:80]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fmt(r: dict, key: str = "time_s") -> str:
    if "skipped" in r:
        return r["skipped"]
    t = r[key]
    return (f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s") + f" / {r['peak_mib']:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "MASK", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="4k,16k,64k,128k,1m")
    parser.add_argument("--masks", default="causal,sliding_window,document,na2d_tiled")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.child:
        method, mask, length = args.child
        print(json.dumps(child(method, mask, int(length))))
        return
    print("| mask | tokens | attncomp analyze | attncomp + to_block_mask | create_block_mask eager | "
          "create_block_mask compiled (warm; first call) | eager / attncomp | compiled warm / attncomp | tiles agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mask in args.masks.split(","):
        for size in args.sizes.split(","):
            L = SIZES[size]
            ours = measure("attncomp", mask, L, args.timeout)
            ours_bm = measure("attncomp+blockmask", mask, L, args.timeout)
            eager = measure("eager", mask, L, args.timeout)
            comp = measure("compiled", mask, L, args.timeout)
            ratio = lambda r: f"{r['time_s'] / ours['time_s']:.0f}x" if "time_s" in r and "time_s" in ours else "-"
            peers = [r for r in (eager, comp, ours_bm) if "partial" in r]
            agree = "yes" if peers and all((r["partial"], r["full"]) == (ours["partial"], ours["full"]) for r in peers) \
                else ("-" if not peers else "NO")
            first = f"; {comp['first_s']:.1f} s" if "first_s" in comp else ""
            print(f"| {mask} | {size} | {fmt(ours)} | {fmt(ours_bm)} | {fmt(eager)} | {fmt(comp)}{first} | "
                  f"{ratio(eager)} | {ratio(comp)} | {agree} |", flush=True)


if __name__ == "__main__":
    main()
