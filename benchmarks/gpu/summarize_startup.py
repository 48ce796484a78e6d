#!/usr/bin/env python3
"""Print STARTUP.md's tables from a start-up run's records: two lanes (node_device.sh lanes) or one
(node_device.sh one), from the folder or the run's archive as kept under records/.

    python3 benchmarks/gpu/summarize_startup.py benchmarks/gpu/records/startup-2026-11-30/records.tar.xz
    python3 benchmarks/gpu/summarize_startup.py benchmarks/gpu/records/startup-2026-12-03/results.tar.xz

Every number comes from the records: /health times from the driver (first 200 on 127.0.0.1), phase splits
from the node's own `gptoss-sky phase` markers, torch.compile and CUDA-graph capture from vLLM's log lines,
loads from `gptoss-sky bench --json`. Stdlib only."""

from __future__ import annotations

import itertools
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

GRAPHS = re.compile(r"Profiling CUDA graph memory: (.*)$")
SERVE = re.compile(r"vllm serve (.*?) >")


def serve_args(run_sh: str) -> list[str]:
    """The engine command's flags as `--flag value` items (values joined to their flag)."""
    m = SERVE.search(run_sh)
    items: list[str] = []
    for word in (m.group(1).split() if m else []):
        if word.startswith("--") or not items:
            items.append(word)
        else:
            items[-1] += " " + word
    return items


def load(root: Path) -> list[dict]:
    out = []
    for rec_path in sorted(root.glob("lane*/r*/record.json")):
        rec = json.loads(rec_path.read_text())
        log = (rec_path.parent / "run.log").read_text()
        m = next((GRAPHS.search(ln) for ln in log.splitlines() if GRAPHS.search(ln)), None)
        rec["graphs_text"] = m.group(1).strip() if m else "?"
        rec["lane_name"] = rec_path.parent.parent.name
        out.append(rec)
    return out


def marker(rec: dict, name: str) -> float | None:
    m = rec["phases"]["markers"].get(name)
    return m["rel_s"] if m else None


def span(rec: dict, a: str, b: str) -> str:
    ta = 0.0 if a == "start" else marker(rec, a)
    tb = rec["phases"].get("ready_s") if b == "ready" else marker(rec, b)
    return "?" if ta is None or tb is None else f"{tb - ta:.0f}"


def loads(rec: dict) -> tuple[str, str, str]:
    first = rec.get("bench", {}).get("level", {})
    second = rec.get("bench2", {}).get("level", {})
    return (f"{first.get('output_tokens_per_s', 0):,.0f}", f"{second.get('output_tokens_per_s', 0):,.0f}",
            f"{second.get('tpot_ms_p50', 0):.1f}")


def engine(rec: dict, key: str) -> str:
    v = rec["phases"]["engine_numbers"].get(key)
    return "?" if v is None else f"{(v[0] if isinstance(v, list) else v):.0f}"


def flashinfer_jit_s(recs: list[dict]) -> dict[str, str]:
    """Per step, the wall time of FlashInfer's JIT builds, from ninja's own log: the entries this start added
    (the log travels with the --cache folder, so a warm start's log holds the cold one's too); objects compile
    in parallel, so the longest. '-' where ninja built nothing."""
    out, seen = {}, {}
    for rec in recs:
        longest = None
        for path, log in (rec.get("ninja_logs") or {}).items():
            ms = log.get("build_ms", [])
            new = ms[seen.get(path, 0) if rec["cache"] == "node-warm" else 0:]
            seen[path] = len(ms)
            longest = max([longest or 0] + new)
        out[rec["step"]] = "?" if longest is None else (f"{longest / 1000:.0f}" if longest else "-")
    return out


def one_lane(root: Path) -> None:
    recs = []
    for rec_path in sorted(root.glob("r*/record.json")):
        rec = json.loads(rec_path.read_text())
        if "phases" in rec and rec["phases"].get("ready_s") is not None:
            recs.append(rec)
    jit = flashinfer_jit_s(recs)
    points = ["start", "load", "compile", "warmup", "graphs", "ready"]
    spans = list(zip(points, points[1:], strict=False))
    print("| step | start | /health s | " + " | ".join(f"{a}->{b}" for a, b in spans) +
          " | torch.compile s | FlashInfer JIT s (ninja log) | CUDA-graph capture s | load 1 tok/s | load 2 tok/s |")
    print("|---|---|---|" + "---|" * len(spans) + "---|---|---|---|---|")
    for rec in recs:
        first = rec.get("bench", {}).get("level", {}).get("output_tokens_per_s")
        second = rec.get("bench2", {}).get("level", {}).get("output_tokens_per_s")
        label = rec["cache"] + (" " + " ".join(f"{k}={v}" for k, v in rec.get("extra_env", {}).items())
                                if rec.get("extra_env") else "")
        print(f"| {rec['step']} | {label} | **{rec['phases']['ready_s']:.0f}** | "
              + " | ".join(span(rec, a, b) for a, b in spans) + " | "
              f"{engine(rec, 'torch_compile_total_s')} | {jit[rec['step']]} | {engine(rec, 'graph_capture_s')} | "
              f"{'-' if first is None else f'{first:,.0f}'} | {'-' if second is None else f'{second:,.0f}'} |")
    cold = next((r for r in recs if r["cache"] == "node-cold" and not r.get("extra_env")), None)
    if cold:
        print("\n" + ", ".join(f"{r['step']}/{cold['step']} {r['phases']['ready_s'] / cold['phases']['ready_s']:.2f}"
                               for r in recs if r is not cold))


def main() -> None:
    root = Path(sys.argv[1])
    if root.is_file():  # a run's archive (records/<run>/results.tar.xz)
        tmp = tempfile.TemporaryDirectory()
        with tarfile.open(root) as tar:
            tar.extractall(tmp.name, filter="data")
        root = Path(tmp.name)
    if not list(root.glob("lane*/r*/record.json")):
        one_lane(root)
        return
    recs = load(root)
    print("## Cold vs warm start, gpt-oss-20b default task (seconds from `bash run.sh`)\n")
    # Runs from before the node printed `warmup` (vLLM's "Initial profiling/warmup run took") show one span
    # from compile to graphs; later runs split it there.
    points = ["start", "load", "compile"] + (["warmup"] if all(marker(r, "warmup") is not None for r in recs)
                                             else []) + ["graphs", "ready"]
    spans = list(itertools.pairwise(points))
    print("| lane | start | /health | " + " | ".join(f"{a}->{b}" for a, b in spans) +
          " | torch.compile | CUDA-graph capture | load 1 tok/s | load 2 tok/s | load 2 TPOT p50 ms |")
    print("|---|---|---|" + "---|" * len(spans) + "---|---|---|---|---|")
    by = {(r["lane_name"], r["step"]): r for r in recs}
    ratios = []
    for lane in sorted({r["lane_name"] for r in recs}):
        cold, warm = by.get((lane, "r1")), by.get((lane, "r2"))
        for rec, label in ((cold, "cold (empty bucket)"), (warm, "warm (bucket from cold)")):
            if rec is None:
                continue
            print(f"| {lane} | {label} | **{rec['phases']['ready_s']:.0f}** | "
                  + " | ".join(span(rec, a, b) for a, b in spans) + " | "
                  f"{engine(rec, 'torch_compile_total_s')} | {engine(rec, 'graph_capture_s')} | "
                  + " | ".join(loads(rec)) + " |")
        if cold and warm:
            ratios.append((lane, warm["phases"]["ready_s"] / cold["phases"]["ready_s"]))
    print("\nwarm / cold: " + ", ".join(f"{lane} {r:.2f}" for lane, r in ratios) + "\n")

    print("## Start-up flag cells (each from the default task's saved caches; rounds r2-r5, lanes swap cells)\n")
    print("| cell | flags added | round/lane | /health s | graphs captured | capture s | torch.compile s "
          "| load 1 tok/s | load 2 tok/s | load 2 TPOT p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cells = [r for r in recs if r["step"] != "r1"]
    default = serve_args((root / "lane0" / "r1" / "run.sh").read_text())
    for rec in sorted(cells, key=lambda r: (r["model"] != "20b", r["model"], r["step"], r["lane_name"])):
        changed = [a for a in serve_args((root / rec["lane_name"] / rec["step"] / "run.sh").read_text())
                   if a not in default and not a.startswith("--port ")]  # lane 1 listens on 8001
        flags = " ".join(changed) or "(default)"
        print(f"| {rec['model']} | `{flags}` | {rec['step']}/{rec['lane_name']} | {rec['phases']['ready_s']:.0f} | "
              f"{rec['graphs_text']} | {engine(rec, 'graph_capture_s')} | {engine(rec, 'torch_compile_total_s')} | "
              + " | ".join(loads(rec)) + " |")


if __name__ == "__main__":
    main()
