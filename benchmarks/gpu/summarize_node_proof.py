#!/usr/bin/env python3
"""Markdown tables from node_proof.py's results folder (one record.json per step).

    python3 benchmarks/gpu/summarize_node_proof.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, list):
        return "/".join(fmt(x, nd) for x in v)
    return str(v)


def main() -> None:
    root = Path(sys.argv[1])
    if root.is_file():  # a run's archive (records/<run>/records.tar.xz or results.tar.xz)
        tmp = tempfile.TemporaryDirectory()
        with tarfile.open(root) as tar:
            tar.extractall(tmp.name, filter="data")
        root = Path(tmp.name)
    recs = []
    for p in sorted(root.glob("*/record.json"), key=lambda p: p.stat().st_mtime):
        recs.append(json.loads(p.read_text()))
    print("## Start (seconds from `bash run.sh` to the milestone)\n")
    print("| step | cache | /health 200 | API server up | load done | compile done | graphs start | graphs done "
          "| app ready | vLLM: load s | torch.compile s | cache load s | graph capture s | init engine s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        ph = r.get("phases", {})
        m = ph.get("milestones_s", {})
        n = ph.get("engine_numbers", {})
        load = n.get("model_loading")
        cap = n.get("graph_capture_s")
        print(f"| {r['step']} | {r.get('cache')} | **{fmt(ph.get('ready_s'))}** | {fmt(m.get('api_server_start'))} | "
              f"{fmt(m.get('load_done'))} | {fmt(m.get('compile_done'))} | {fmt(m.get('graphs_start'))} | "
              f"{fmt(m.get('graphs_done'))} | {fmt(m.get('app_startup_complete'))} | "
              f"{fmt(load[1] if isinstance(load, list) else load)} | {fmt(n.get('torch_compile_total_s'))} | "
              f"{fmt(n.get('compile_cache_load_s'), 2)} | {fmt(cap[0] if isinstance(cap, list) else cap, 0)} | "
              f"{fmt(n.get('engine_init_s'))} |")
    print("\n### Node phase markers (seconds from run start)\n")
    for r in recs:
        mk = r.get("phases", {}).get("markers", {})
        after = r.get("phases_after_stop", {})
        setup = r.get("setup", {}).get("markers", {})
        if mk or after or setup:
            print(f"- {r['step']}: setup " + ", ".join(f"{k}" for k in setup) + "; run " +
                  ", ".join(f"{k} {v['rel_s']}" + (f" (code {v['code']})" if "code" in v else "")
                            for k, v in {**mk, **after}.items()))
    print("\n## Throughput at concurrency 256 (1024 in / 512 out, ignore_eos)\n")
    print("| step | gptoss-sky bench tok/s | TTFT p50 ms | TPOT p50 ms | errors | vllm bench tok/s | seed "
          "| TTFT p50 | TPOT p50 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        b = r.get("bench", {}).get("level", {})
        v = r.get("vbench", {})
        if b or v:
            print(f"| {r['step']} | {fmt(b.get('output_tokens_per_s'), 0)} | {fmt(b.get('ttft_ms_p50'), 0)} | "
                  f"{fmt(b.get('tpot_ms_p50'), 2)} | {fmt(b.get('errors'))} | {fmt(v.get('output_throughput'), 0)} | "
                  f"{fmt(v.get('seed'))} | {fmt(v.get('median_ttft_ms'), 0)} | {fmt(v.get('median_tpot_ms'), 2)} |")
    print("\n## /metrics during the bench (status check)\n")
    for r in recs:
        s = r.get("status_check")
        if s:
            print(f"- {r['step']}: bench {fmt(s['bench_output_tokens_per_s'])} tok/s; /metrics over the same "
                  f"{s['window_s']} s window {fmt(s['metrics_tokens_per_s_whole_window'])} tok/s "
                  f"({fmt((s.get('whole_window_vs_bench') or 0) * 100)}%); 10 s windows "
                  f"{s['metrics_tokens_per_s_10s_windows']} (max |diff| "
                  f"{fmt((s.get('max_abs_10s_window_vs_bench') or 0) * 100)}%); running idle/max "
                  f"{fmt(s['running_idle_before'], 0)}/{fmt(s['running_max_under_load'], 0)}, waiting "
                  f"{fmt(s['waiting_idle_before'], 0)}/{fmt(s['waiting_max_under_load'], 0)}, KV use "
                  f"{fmt(s['kv_idle_before'], 3)}/{fmt(s['kv_max_under_load'], 3)}")
    print("\n## Auth probes without the key\n")
    for r in recs:
        a = r.get("auth")
        if a:
            bad = [(x["method"], x["path"], x["status"]) for x in a["answered_without_key"]]
            print(f"- {r['step']}: pass={a['pass']}; {len(a['probes'])} probes ({a['openapi_routes']} routes from "
                  f"/openapi.json); /health without key {a['health_without_key']}; wrong key on /v1/models "
                  f"{a['wrong_key_v1_models']}; with key {a['with_key']}; answered without key: {bad or 'none'}; "
                  f"key exposure {r.get('key_exposure')}")
    print("\n## smoke\n")
    for r in recs:
        s = r.get("smoke")
        if s:
            print(f"- {r['step']}: rc={s['rc']} {s['checks']}")
    print("\n## Caches\n")
    for r in recs:
        print(f"- {r['step']}: before {r.get('cache_prep')}; after {r.get('cache_sizes_after')}; "
              f"engine env {r.get('engine_env')}; stop {r.get('stop')}")
        if "error" in r:
            print(f"  - ERROR {r['error']}: " + " | ".join(r.get("log_tail", [])[-15:]))


if __name__ == "__main__":
    main()
