"""`gptoss-sky plan 120b` offline against one `import sky` (named baseline). Goal: at most 1.5x.

    python benchmarks/plan_speed.py [--samples 3] [--model 120b] [--checkout DIR]

--checkout runs `python -m launcher.cli` from another checkout of this repository (e.g. a `git worktree` of
an older commit) instead of the installed `gptoss-sky`, for before/after numbers on the same machine.

Each sample is a fresh interpreter (what a user pays), the two commands alternating so machine load hits
both alike, in an isolated HOME with no SkyPilot API server (SKYPILOT_DISABLE_LOCAL_API_SERVER=1) and no
cached cloud catalog, so every price comes from the bundled snapshot. The first `plan` (which parses the
snapshot and fills gptoss-sky's price cache) is reported on its own; the samples are the ones after it.
Prints the machine, the median of each, and the ratio; exits 1 when the ratio is above the goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GOAL = 1.5


CPU: dict[int, list[float]] = {}  # id(argv) -> CPU seconds (user + system) of its runs, beside the wall time


def seconds(argv: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    """Wall seconds of one fresh run; its CPU seconds are kept in CPU (steadier when the machine is busy)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(id(argv), []).append(cpu)
    return wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--model", default="120b")
    parser.add_argument("--checkout", help="run `python -m launcher.cli` from this checkout instead")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="gptoss-plan-bench-")
    env = dict(os.environ, HOME=home, SKY_RUNTIME_DIR=home, GPTOSS_SKY_HOME=os.path.join(home, "gptoss-sky"),
               SKYPILOT_DISABLE_LOCAL_API_SERVER="1")
    if args.checkout:
        plan = [sys.executable, "-m", "launcher.cli", "plan", args.model]
    else:
        plan = [shutil.which("gptoss-sky") or "gptoss-sky", "plan", args.model]
    baseline = [sys.executable, "-c", "import sky"]
    try:
        first = seconds(plan, env, args.checkout)
        ours, sky = [], []
        for i in range(args.samples):
            pair = [(ours, plan, args.checkout), (sky, baseline, None)]
            for bucket, argv, cwd in (pair if i % 2 == 0 else pair[::-1]):
                bucket.append(seconds(argv, env, cwd))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    version = subprocess.run([sys.executable, "-c", "import sky; print(sky.__version__)"], capture_output=True,
                             text=True, env=env).stdout.strip()
    ratio = statistics.median(ours) / statistics.median(sky)
    cpu_ours, cpu_sky = CPU[id(plan)][1:], CPU[id(baseline)]  # [1:]: not the first (cache-filling) run
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, SkyPilot {version}, load average {os.getloadavg()[0]:.2f}")
    if args.checkout:
        print(f"checkout: {args.checkout}")
    print(f"gptoss-sky plan {args.model}  first run (parses the snapshot) {first:.2f} s")
    print(f"gptoss-sky plan {args.model}  median {statistics.median(ours):.2f} s of {[round(t, 2) for t in ours]}")
    print(f"import sky            median {statistics.median(sky):.2f} s of {[round(t, 2) for t in sky]} (baseline)")
    print(f"ratio plan / import sky = {ratio:.2f} (goal <= {GOAL})")
    print(f"CPU seconds (user+sys): plan median {statistics.median(cpu_ours):.2f}, import sky median "
          f"{statistics.median(cpu_sky):.2f}, ratio {statistics.median(cpu_ours) / statistics.median(cpu_sky):.2f}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
