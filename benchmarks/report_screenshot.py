"""Render `attncomp report` HTML in headless Chromium and save screenshots (the report's
HTML must render, not just parse). Needs Debian's chromium (`apt-get install chromium`).

    python benchmarks/report_screenshot.py [VARIANT ...]   # default: document neighborhood_2d differential
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def main() -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium not found: apt-get install chromium")
    variants = sys.argv[1:] or ["document", "neighborhood_2d", "differential"]
    os.makedirs(RESULTS, exist_ok=True)
    print("| variant | report time | screenshot | size |")
    print("|---|---|---|---|")
    for name in variants:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "attncomp.cli", "report", name, "--out", out, "--quiet"],
                           check=True, capture_output=True)
            elapsed = time.perf_counter() - start
            shot = os.path.join(RESULTS, f"report_{name}.png")
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                                "--window-size=1200,1600", "file://" + os.path.join(out, "report.html")],
                               check=True, capture_output=True, timeout=120)
        print(f"| {name} | {elapsed:.1f} s | {os.path.relpath(shot)} | {os.path.getsize(shot) // 1024} KiB |")


if __name__ == "__main__":
    main()
