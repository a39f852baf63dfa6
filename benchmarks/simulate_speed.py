"""How long a simulation takes once the layout is analyzed (sweeps must be interactive).

    python benchmarks/simulate_speed.py
"""

import statistics
import time

import attncomp as ac
from attncomp.simulator import simulate


def main() -> None:
    print("| case | analysis (once) | simulation (median of 200) |")
    print("|---|---|---|")
    for label, spec, length in (("causal", ac.variants.causal(), 32768),
                                ("sliding window 4096", ac.variants.sliding_window(4096), 32768),
                                ("causal", ac.variants.causal(), 131072)):
        start = time.perf_counter()
        layout = ac.analyze(spec, length, block=(128, 128), heads=16)
        assert layout.mask_density > 0  # computed here: part of the analysis the simulator reads
        analysis = time.perf_counter() - start
        simulate(spec, "h100", heads=16, q_len=length, layout=layout)
        times = []
        for _ in range(200):
            start = time.perf_counter()
            simulate(spec, "h100", heads=16, q_len=length, layout=layout)
            times.append(time.perf_counter() - start)
        print(f"| {label}, {length // 1024}K tokens, 16 heads, H100 | {analysis * 1e3:.1f} ms | "
              f"{statistics.median(times) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
