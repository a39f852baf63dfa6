"""Memory of a data-dependent selection at long context: MoBA's choice of key blocks for
every query, and the exact tile layout of that choice, computed a chunk of rows at a time
(what the Triton backend does before its launch), never as a dense [q, kv] mask.

Each length runs in a fresh process (its own peak memory, inputs included); the table
also shows what one dense boolean [q, kv] mask per head would take.

    python benchmarks/selection_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import torch

import attncomp as ac
from attncomp.ir.analysis import selected
from attncomp.ir.plan import plan_of

HEADS, HEAD_DIM, BLOCK, TOP_K, TILE = 8, 128, 512, 3, (128, 128)


def one(length: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, HEADS, length, HEAD_DIM, generator=gen, dtype=torch.bfloat16)
    k = torch.randn(1, HEADS, length, HEAD_DIM, generator=gen, dtype=torch.bfloat16)
    program = plan_of(ac.variants.moba(block_size=BLOCK, top_k=TOP_K)).program
    params = {n: v for n, v in program.params.items() if v is not None}
    start = time.perf_counter()
    lists: list = []
    layout = selected.from_data(program, lambda p: ac.analyze(p, length, length, TILE, batch=1, heads=HEADS),
                                {"Q": q, "K": k}, {}, params, TILE, start, lists)
    chosen = selected.chosen_lists(lists)
    seconds = time.perf_counter() - start
    return {"tokens": length, "seconds": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "visited": layout.counts["partial"] + layout.counts["full"], "width": chosen.shape[-1],
            "dense_gib": HEADS * length * length / 2 ** 30}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(one(int(sys.argv[1]))))
        return
    print(f"MoBA (block {BLOCK}, top-{TOP_K}), {HEADS} heads, head dim {HEAD_DIM}, bf16 inputs, tiles {TILE[0]}x{TILE[1]}")
    print()
    print("| tokens | choice + exact layout | peak memory (whole process) | limit | visited tiles | "
          "dense bool [q, kv] masks |")
    print("|---|---|---|---|---|---|")
    for length in (32 * 1024, 64 * 1024, 128 * 1024):
        run = subprocess.run([sys.executable, __file__, str(length)], capture_output=True, text=True, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"| {r['tokens'] // 1024}K | {r['seconds']:.2f} s | {r['peak_gib']:.2f} GiB | "
              f"{'< 2 GiB' if r['tokens'] == 128 * 1024 else ''} | {r['visited']:,} | {r['dense_gib']:.0f} GiB |")


if __name__ == "__main__":
    main()
