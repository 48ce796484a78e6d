#!/usr/bin/env python3
"""The profile table from profiles.py's records (records/profiles-*/results.tar.xz, read as they are).

Per server and concurrency level: every `gptoss-sky bench` sample (output tok/s and its spread across
waves), their mean, TTFT/TPOT p50, `vllm bench serve` at the same shape and the ratio of the two. With
a baseline server (--baseline, default the bare one) each other server's level is compared with it, and a
difference is claimed only where the two samples' ranges, each widened by its largest wave spread, do not
overlap (PROFILES.md, "Method").

    python3 benchmarks/gpu/summarize_profiles.py [benchmarks/gpu/records/profiles-2026-12-03] [--baseline 20b-bare]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(run_dir: Path) -> dict[str, dict]:
    """{server name: record} from the run's results.tar.xz (the archive as the device returned it)."""
    records = {}
    with tarfile.open(run_dir / "results.tar.xz") as archive:
        for member in archive.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.endswith(".json") and name != "gpu.json" and "/" not in member.name.strip("./"):
                handle = archive.extractfile(member)
                assert handle is not None
                record = json.load(io.TextIOWrapper(handle))
                records[record["name"]] = record
    return records


def levels(record: dict) -> dict[int, dict]:
    """{concurrency: {"samples": [level dicts of gptoss-sky bench], "vllm": [vllm bench results]}}."""
    out: dict[int, dict] = {}
    for cell in record.get("cells", []):
        if cell.get("rc") != 0 or not cell.get("result"):
            continue
        slot = out.setdefault(cell["concurrency"], {"samples": [], "vllm": []})
        if cell["tool"] == "vllm bench serve":
            slot["vllm"].append(cell["result"])
        else:
            slot["samples"].append(cell["result"]["levels"][0])
    return out


def interval(samples: list[dict]) -> tuple[float, float]:
    """The samples' tok/s range widened by their largest spread across waves."""
    rates = [s["output_tokens_per_s"] for s in samples]
    cv = max((s.get("spread") or {}).get("output_tokens_per_s_cv") or 0.0 for s in samples)
    return min(rates) * (1 - cv), max(rates) * (1 + cv)


def verdict(ours: list[dict], base: list[dict]) -> str:
    if len(ours) < 2 or len(base) < 2:
        return "no claim (fewer than 2 samples)"
    (lo, hi), (blo, bhi) = interval(ours), interval(base)
    if lo > bhi:
        return "faster"
    if hi < blo:
        return "slower"
    return "no difference beyond the spread"


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


def table(records: dict[str, dict], baseline: str | None) -> str:
    rows = ["| server | start to /health | conc | gptoss-sky bench samples, out tok/s (spread across waves) | mean | "
            "TTFT p50 ms | TPOT p50 ms | vllm bench serve tok/s (TTFT/TPOT p50 ms) | bench / vllm bench | "
            "vs baseline |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    base_levels = levels(records[baseline]) if baseline in records else {}
    for name, record in records.items():
        start = f"{record['startup_s']} s" if "startup_s" in record else record.get("error", "-")
        per_level = levels(record)
        if not per_level:
            rows.append(f"| {name} | {start} | - | not loaded: {record.get('cut') or 'the lease ended first'} "
                        "| | | | | | |")
        for conc in sorted(per_level):
            slot = per_level[conc]
            samples = slot["samples"]
            rates = [s["output_tokens_per_s"] for s in samples]
            shown = ", ".join(
                f"{s['output_tokens_per_s']:,.0f} ({(s.get('spread') or {}).get('output_tokens_per_s_cv', 0):.1%})"
                for s in samples)
            vb = slot["vllm"]
            vb_text = ", ".join(f"{v['output_throughput']:,.0f} ({v['median_ttft_ms']:.0f}/{v['median_tpot_ms']:.1f})"
                                for v in vb) or "-"
            ratio = f"{mean(rates) / mean([v['output_throughput'] for v in vb]):.3f}" if vb and rates else "-"
            ttft = "/".join(f"{s['ttft_ms_p50']:.0f}" for s in samples)
            tpot = "/".join(f"{s['tpot_ms_p50']:.2f}" for s in samples)
            versus = "-"
            if name != baseline and conc in base_levels and samples:
                base_rates = [s["output_tokens_per_s"] for s in base_levels[conc]["samples"]]
                versus = f"{mean(rates) / mean(base_rates):.3f}x: {verdict(samples, base_levels[conc]['samples'])}"
            rows.append(f"| {name} | {start} | {conc} | {shown} | {mean(rates):,.0f} | {ttft} | {tpot} | {vb_text} | "
                        f"{ratio} | {versus} |")
            start = ""
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--baseline", default=None, help="server the others are compared with [default: *-bare]")
    args = ap.parse_args()
    runs = args.runs or sorted((HERE / "records").glob("profiles-*"))
    for run in runs:
        records = load(run)
        baseline = args.baseline or next((n for n in records if n.endswith("-bare")), None)
        shapes = {(r.get("input_len"), r.get("output_len")) for r in records.values()}
        print(f"## {run.name}: {', '.join(f'{i} in / {o} out' for i, o in sorted(shapes))}; baseline {baseline}\n")
        print(table(records, baseline))
        print()


if __name__ == "__main__":
    main()
