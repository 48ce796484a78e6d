"""`gptoss-sky --help` start-up time against `sky --help` (named baseline). Goal: a quarter or less.

    python benchmarks/cli_startup.py [--runs 10]

Runs each command in a fresh interpreter (what a user pays), prints median seconds and the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    ours = median_seconds([shutil.which("gptoss-sky") or "gptoss-sky", "--help"], args.runs)
    sky = median_seconds([shutil.which("sky") or "sky", "--help"], args.runs)
    print(f"gptoss-sky --help  median {ours:.3f} s over {args.runs} runs")
    print(f"sky --help         median {sky:.3f} s over {args.runs} runs (baseline)")
    print(f"ratio gptoss-sky / sky = {ours / sky:.2f} (goal <= 0.25)")
    return 0 if ours / sky <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
