#!/usr/bin/env python3
"""Issue 20's bar on the two-GPU run: vLLM's printed "Maximum concurrency" and KV size per GPU against
`gptoss-sky capacity` for the same task, within 3% (TP2.md). Reads node_proof.py's step records
(RESULTS/STEP/record.json, or the results.tar.xz the device returned); exit 1 when a step misses the bar
or did not reach /health.

    python3 benchmarks/gpu/compare_tp2.py RESULTS_DIR_OR_TAR [--vllm-version 0.26.0]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

BAR = 0.03
# step -> the `gptoss-sky capacity` arguments of the task it ran (stage_tp2.sh renders the same two)
TASKS = {"120b-tp2": ["120b", "--gpu", "H200:2"],
         "20b-latency-tp2": ["20b", "--gpu", "H200:2", "--profile", "latency"]}
REPO = Path(__file__).resolve().parents[2]


def records(source: Path) -> dict[str, dict]:
    found: dict[str, dict] = {}
    if source.is_dir():
        for path in source.glob("*/record.json"):
            found[path.parent.name] = json.loads(path.read_text())
        return found
    with tarfile.open(source) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith("/record.json"):
                handle = archive.extractfile(member)
                assert handle is not None
                found[Path(member.name).parent.name] = json.load(io.TextIOWrapper(handle))
    return found


def planned(args: list[str], vllm_version: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "launcher.cli", "capacity", *args, "--vllm-version", vllm_version,
                          "--json"], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("--vllm-version", default="0.26.0", help="the engine that ran (the staged one)")
    args = ap.parse_args()
    found = records(args.source)
    ok = True
    for step, capacity_args in TASKS.items():
        rec = found.get(step)
        if rec is None or "error" in rec:
            print(f"{step}: no record" if rec is None else f"{step}: FAILED {rec['error']}")
            ok = False
            continue
        numbers = rec.get("phases", {}).get("engine_numbers", {})
        plan = planned(capacity_args, args.vllm_version)
        printed = numbers.get("max_concurrency")
        lines = [f"{step}: /health after {rec['phases'].get('ready_s')} s, backend "
                 f"{rec.get('engine_env', {}).get('VLLM_FLASHINFER_ALLREDUCE_BACKEND', 'auto')}"]
        for label, got, want in (("max concurrency", printed[1] if printed else None, plan["max_concurrency"]),
                                 ("KV GiB per GPU", numbers.get("kv_cache_gib"), plan["kv_cache_gib_per_gpu"])):
            if got is None:
                lines.append(f"  {label}: not printed")
                ok = False
                continue
            off = want / got - 1
            ok &= abs(off) <= BAR
            lines.append(f"  {label}: vLLM {got:g}, planner {want:g} ({off:+.2%}; bar {BAR:.0%}: "
                         f"{'met' if abs(off) <= BAR else 'MISSED'})")
        print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
