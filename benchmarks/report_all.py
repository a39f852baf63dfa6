"""`attncomp report` on every library variant at default sizes: wall time and check results.

    python benchmarks/report_all.py
"""

import subprocess
import sys
import time

from attncomp.variants import REGISTRY


def main() -> None:
    print("| variant | report time | triton | flex |")
    print("|---|---|---|---|")
    worst = 0.0
    for name in sorted(REGISTRY):
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "attncomp.cli", "report", name, "--quiet"],
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        worst = max(worst, elapsed)
        status = {}
        for line in res.stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("triton", "flex"):
                status[words[0]] = words[1]
        print(f"| {name} | {elapsed:.1f} s | {status.get('triton', '?')} | {status.get('flex', '?')} |", flush=True)
    print(f"\nslowest: {worst:.1f} s")


if __name__ == "__main__":
    main()
