"""A new user's first analysis, from a cold process, vs eager create_block_mask.

For each mask (written as in benchmarks/block_mask.py), in a fresh process per
measurement: (1) the first ``ac.analyze(ac.attention(mask=...))`` at 16K tokens right
after ``import attncomp`` (import time reported apart), against eager
``create_block_mask``'s first call in its own fresh process and a warm call; (2) a new
mask in the same process (a different window, document split or grid), against eager
create_block_mask for that mask. Medians over --repeat runs.

    python benchmarks/cold_start.py --repeat 3      # writes benchmarks/results/cold_start.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from block_mask import BLOCK, make_mask  # noqa: E402

MASKS = ("causal", "sliding_window", "document", "na2d_tiled")
LENGTH = 16384


def other_mask(name: str, length: int):
    """A mask of the same family not seen before in the process."""
    import torch

    if name == "sliding_window":
        return lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx < 2048)
    if name == "causal":
        return lambda b, h, q_idx, kv_idx: q_idx - kv_idx >= 64
    if name == "document":
        doc = torch.arange(length, dtype=torch.int32) // 3000
        return lambda b, h, q_idx, kv_idx: (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)
    return make_mask(name, length, na_kernel=9)


def child(method: str, mask: str) -> dict:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(2)
    out = {}
    if method == "attncomp":
        import attncomp as ac

        out["import_s"] = time.perf_counter() - start
        run = lambda f: ac.analyze(ac.attention(mask=f), LENGTH, LENGTH, (BLOCK, BLOCK))
    else:
        from torch.nn.attention.flex_attention import create_block_mask

        run = lambda f: create_block_mask(f, None, None, LENGTH, LENGTH, device="cpu", BLOCK_SIZE=BLOCK)
    fn, new = make_mask(mask, LENGTH), other_mask(mask, LENGTH)
    for key, f in (("first_s", fn), ("new_s", new)):
        t = time.perf_counter()
        run(f)
        out[key] = time.perf_counter() - t
    t = time.perf_counter()
    run(new)
    out["warm_s"] = time.perf_counter() - t
    return out


def measure(method: str, mask: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, mask]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--masks", default=",".join(MASKS))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    ms = lambda t: f"{t * 1000:.1f} ms"
    lines = [f"Command: `python benchmarks/cold_start.py --repeat {args.repeat}` ({LENGTH} tokens, "
             f"block {BLOCK}, medians of {args.repeat} fresh processes each)", "",
             "| mask | import attncomp | first analyze (cold) | eager first call (cold) | eager warm | first: eager / attncomp | "
             "new mask: attncomp | new mask: eager | new: eager / attncomp |", "|---|---|---|---|---|---|---|---|---|"]
    for mask in args.masks.split(","):
        runs = {m: [measure(m, mask) for _ in range(args.repeat)] for m in ("attncomp", "eager")}
        med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
        a, e = med["attncomp"], med["eager"]
        lines.append(f"| {mask} | {ms(a['import_s'])} | {ms(a['first_s'])} | {ms(e['first_s'])} | {ms(e['warm_s'])} | "
                     f"{e['first_s'] / a['first_s']:.0f}x | {ms(a['new_s'])} | {ms(e['new_s'])} | "
                     f"{e['new_s'] / a['new_s']:.0f}x |")
        print(lines[-1], flush=True)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cold_start.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
