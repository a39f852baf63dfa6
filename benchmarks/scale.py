"""Analysis and simulation time and peak memory where users go: very long context, masks
whose every tile is partial, 3-D neighborhoods, and masks written as users write them.

Each case runs in a fresh process (cold caches, its own peak memory), three times; the
table shows the medians. ``limit`` is what the case must stay under (issue 24).

    python benchmarks/scale.py
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import attncomp as ac

F, W0 = 4096, 1024  # Radial attention: 64 x 64 tokens per frame, spatial window at one frame apart
DILATION = torch.tensor([1, 1, 2, 2, 4, 4, 8, 8])  # Longformer: dilation per head


def parity(b, h, q_idx, kv_idx):
    return (q_idx + kv_idx) % 2 == 0


def radial(b, h, q_idx, kv_idx):
    """Radial attention (Li et al., 2025): the spatial window halves with each doubling
    of the distance in frames; the own frame is dense."""
    dt = (q_idx // F - kv_idx // F).abs()
    dp = (q_idx % F - kv_idx % F).abs()
    return (dt == 0) | (dp <= W0 * 2.0 ** (-torch.floor(torch.log2(dt.float()))))


def longformer(b, h, q_idx, kv_idx):
    """Longformer's dilated sliding window, 256 positions each side, dilation per head."""
    diff = q_idx - kv_idx
    return (diff.abs() <= 256 * DILATION[h]) & (diff % DILATION[h] == 0)


def bigbird(length: int):
    """BigBird: window of 3 blocks, 2 global blocks, 3 random key blocks per query block."""
    blocks = length // 64
    random_blocks = torch.rand(blocks, blocks, generator=torch.Generator().manual_seed(0)) < 3 / blocks

    def bigbird(b, h, q_idx, kv_idx):
        return (((q_idx - kv_idx).abs() < 192) | (q_idx < 128) | (kv_idx < 128)
                | random_blocks[q_idx // 64, kv_idx // 64])
    return bigbird


def spec_of(case: str, length: int):
    doc = lambda: ac.variants.document(ac.variants.random_documents(1, length, torch.Generator().manual_seed(0)))
    return {
        "parity": lambda: ac.attention(mask=parity, name="parity"),
        "causal": ac.variants.causal,
        "sliding window 4096": lambda: ac.variants.sliding_window(4096),
        "document": doc,
        "neighborhood 3-D 30x48x80, window 18x24x24": lambda: ac.variants.neighborhood(
            shape=(30, 48, 80), window=(18, 24, 24), tile=(2, 8, 8)),
        "neighborhood 2-D 256x256, window 80x80": lambda: ac.variants.neighborhood(
            shape=(256, 256), window=(80, 80), tile=(8, 16)),
        "Radial 3-D video (32 frames of 64x64)": lambda: ac.attention(mask=radial, name="radial"),
        "Longformer dilated window, per-head dilation": lambda: ac.attention(mask=longformer, name="longformer"),
        "BigBird window + global + random": lambda: ac.attention(mask=bigbird(length), name="bigbird"),
    }[case]()


# (case, tokens, heads, what is timed, limit in seconds, memory limit in GiB or None)
CASES = [
    ("parity", 1 << 16, 1, "analysis + density", 5, None),
    ("parity", 1 << 20, 1, "analysis + density", 30, 2),
    ("causal", 1 << 24, 1, "analysis", 5, 2),
    ("sliding window 4096", 1 << 24, 1, "analysis", 5, 2),
    ("document", 1 << 24, 1, "analysis", 5, 2),
    ("neighborhood 3-D 30x48x80, window 18x24x24", 115200, 1, "analysis", 2, None),
    ("neighborhood 2-D 256x256, window 80x80", 65536, 1, "analysis + simulation", 0.5, None),
    ("Radial 3-D video (32 frames of 64x64)", 1 << 17, 1, "analysis + simulation", 10, None),
    ("Longformer dilated window, per-head dilation", 1 << 17, 8, "analysis + simulation", 10, None),
    ("BigBird window + global + random", 1 << 17, 1, "analysis + simulation", 10, None),
]


def run_case(case: str, length: int, heads: int) -> dict:
    spec = spec_of(case, length)
    start = time.perf_counter()
    layout = ac.analyze(spec, length, block=(128, 128), heads=heads)
    analysis = time.perf_counter() - start
    start = time.perf_counter()
    density = layout.mask_density
    counted = time.perf_counter() - start
    start = time.perf_counter()
    ac.simulate(spec, "h100", q_len=length, heads=heads, layout=layout)
    simulation = time.perf_counter() - start
    return {"analysis": analysis, "density": counted, "simulation": simulation, "mask_density": density,
            "exact": layout.mask_density_exact, "ci": layout.density_ci, "visited": layout.counts["partial"] + layout.counts["full"],
            "gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def fresh(case: str, length: int, heads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps([case, length, heads])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


TIMED = {"analysis": ("analysis",), "analysis + density": ("analysis", "density"),
         "analysis + simulation": ("analysis", "density", "simulation")}  # a simulation reads the density


def main() -> None:
    print("| case | tokens | analysis | density | simulation | timed | total (median of 3) | limit | peak memory "
          "| mask density |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case, length, heads, timed, limit, gib in CASES:
        runs = [fresh(case, length, heads) for _ in range(3)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("analysis", "density", "simulation", "gib")}
        total = statistics.median(sum(r[k] for k in TIMED[timed]) for r in runs)
        r = runs[0]
        dens = f"{r['mask_density']:.5f}" if r["exact"] else \
            f"{r['mask_density']:.5f} (estimated; 95% interval {r['ci'][0]:.5f}-{r['ci'][1]:.5f})"
        size = f"{length / 2 ** 20:g}M" if length >= 1 << 20 else f"{length / 1024:g}K"
        print(f"| {case}{f', {heads} heads' if heads > 1 else ''} | {size} | {med['analysis']:.2f} s | "
              f"{med['density']:.2f} s | {1e3 * med['simulation']:.1f} ms | {timed} | {total:.2f} s | < {limit} s"
              f"{f', < {gib} GiB' if gib else ''} | {med['gib']:.2f} GiB | {dens} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(run_case(*json.loads(sys.argv[2]))))
    else:
        main()
