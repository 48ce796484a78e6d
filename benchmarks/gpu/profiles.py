#!/usr/bin/env python3
"""The profile table (issue "Measured defaults"): each engine command on one GPU, dummy weights, loaded by
`gptoss-sky bench`'s steady state and by `vllm bench serve`, in an order that cannot be confounded.

Method (benchmarks/gpu/PROFILES.md):
- one server per command, started as rendered (run_recipe.py's dummy-weights rewrite; the node's key guard
  on PYTHONPATH when the command names it, the key in VLLM_API_KEY as on a node);
- per concurrency level at least two `gptoss-sky bench` samples, each a warm-up wave (reported, not counted)
  and counted waves with prompts of their own (a fresh seed per run), so each sample has its own spread;
- the cells run in a mirrored order (256, 1, 64, 64, 1, 256): a drift over the server's life (clocks, heat,
  allocator state) lands on both samples of a level in opposite directions instead of on one;
- `vllm bench serve` at the same shape between a level's two samples, with as many warm-up requests as the
  concurrency, as the named baseline `bench` must agree with (within 2%).
Records: one JSON per server in --out (rewritten after every cell, so a lost machine keeps what ran).

    profiles.py run --commands benchmarks/gpu/commands.txt --only 20b-bare,20b-balanced \\
        --stage /root/stage --out /root/results [--input-len 1024 --output-len 1024] [--plan 256,v256,1,v1,64,64,1,256]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_recipe  # noqa: E402  (beside this file: the dummy-weights rewrite, the log parser, start/stop)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PLAN = "256,v256,1,v1,64,64,1,256"  # N: a gptoss-sky bench sample at concurrency N; vN: vllm bench serve
API_KEY = run_recipe.API_KEY


def bench_requests(concurrency: int) -> int:
    """Requests per wave: one per worker (each wave is one full batch); two at concurrency 1."""
    return max(concurrency, 2)


def gptoss_bench(concurrency: int, input_len: int, output_len: int, waves: int, env: dict) -> dict:
    """One `gptoss-sky bench` sample (its own warm-up wave and a fresh seed); the key through the environment."""
    cmd = [sys.executable, "-m", "launcher.cli", "bench", "--endpoint", f"http://127.0.0.1:{run_recipe.PORT}",
           "--concurrency", str(concurrency), "--requests", str(bench_requests(concurrency)),
           "--waves", str(waves), "--warmup", "--input-len", str(input_len), "--output-len", str(output_len),
           "--json"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=1800,
                          env=dict(env, GPTOSS_SKY_API_KEY=API_KEY))
    res: dict = {"tool": "gptoss-sky bench", "concurrency": concurrency, "command": shlex.join(cmd[3:]),
                 "rc": proc.returncode, "wall_s": round(time.time() - t0, 1)}
    try:
        res["result"] = json.loads(proc.stdout)
    except ValueError:
        res["stdout_tail"] = proc.stdout[-3000:]
    res["stderr_tail"] = proc.stderr[-1500:]
    return res


def vllm_bench(name: str, concurrency: int, input_len: int, output_len: int, model: str, stage: Path,
               rundir: Path, env: dict, index: int) -> dict:
    """`vllm bench serve` at the same shape: 2 x concurrency prompts (4 at least) after as many warm-ups."""
    fname = f"{name}-vb{index}-c{concurrency}.json"
    prompts = max(2 * concurrency, 4)
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "openai",
           "--base-url", f"http://127.0.0.1:{run_recipe.PORT}", "--endpoint", "/v1/completions", "--model", model,
           "--tokenizer", str(stage / "tok"), "--dataset-name", "random", "--random-input-len", str(input_len),
           "--random-output-len", str(output_len), "--ignore-eos", "--max-concurrency", str(concurrency),
           "--num-prompts", str(prompts), "--num-warmups", str(concurrency), "--seed", str(int(time.time())),
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99", "--save-result",
           "--result-dir", str(rundir), "--result-filename", fname]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=dict(env, OPENAI_API_KEY=API_KEY))
    res: dict = {"tool": "vllm bench serve", "concurrency": concurrency, "num_prompts": prompts,
                 "command": shlex.join(cmd[3:]), "rc": proc.returncode, "wall_s": round(time.time() - t0, 1)}
    path = rundir / fname
    if proc.returncode != 0 or not path.exists():
        res["error_tail"] = (proc.stdout + proc.stderr)[-3000:]
        return res
    data = json.loads(path.read_text())
    res["result"] = {k: v for k, v in data.items() if isinstance(v, (int, float, str)) and k != "date"}
    return res


def line(cell: dict) -> str:
    r = cell.get("result") or {}
    if cell["tool"] == "vllm bench serve":
        return (f"vllm bench c={cell['concurrency']}: {r.get('output_throughput', '?')} tok/s, TTFT p50 "
                f"{r.get('median_ttft_ms', '?')} ms, TPOT p50 {r.get('median_tpot_ms', '?')} ms rc={cell['rc']}")
    level = (r.get("levels") or [{}])[0]
    spread = (level.get("spread") or {}).get("output_tokens_per_s_cv")
    return (f"gptoss bench c={cell['concurrency']}: {level.get('output_tokens_per_s', '?')} tok/s "
            f"(spread {spread}), TTFT p50 {level.get('ttft_ms_p50', '?')} ms, TPOT p50 {level.get('tpot_ms_p50', '?')}"
            f" ms, warm-up {(level.get('warmup') or {}).get('output_tokens_per_s', '?')} tok/s rc={cell['rc']}")


def run_server(name: str, engine_command: str, note: str, args: argparse.Namespace, gpu: dict) -> dict:
    rundir = args.out / name
    rundir.mkdir(parents=True, exist_ok=True)
    argv = run_recipe.to_dummy_command(engine_command.replace('"$SKYPILOT_NUM_GPUS_PER_NODE"', "1"), args.stage)
    env = dict(os.environ, TIKTOKEN_ENCODINGS_BASE=str(args.stage / "tiktoken"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", VLLM_API_KEY=API_KEY)
    if "gptoss_guard" in engine_command:  # as setup writes it: the guard on the engine's PYTHONPATH
        guard_dir = rundir / "guard"
        guard_dir.mkdir(exist_ok=True)
        shutil.copy(REPO / "launcher/node/guard.py", guard_dir / "gptoss_guard.py")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard_dir), env.get("PYTHONPATH", "")) if p)
        env["GPTOSS_KEY_ENV"] = "VLLM_API_KEY"
    record: dict = {"name": name, "note": note, "engine_command": engine_command,
                    "dummy_command": shlex.join(argv[1:]), "gpu": gpu, "input_len": args.input_len,
                    "output_len": args.output_len, "plan": args.plan, "waves": args.waves,
                    "started_at": time.strftime("%FT%T"), "cells": []}
    out_json = args.out / f"{name}.json"
    log_path = rundir / "server.log"
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while time.time() - t0 < args.startup_timeout and proc.poll() is None:
            if run_recipe.health():
                record["startup_s"] = round(time.time() - t0, 1)
                break
            time.sleep(1)
        record.update(run_recipe.parse_log(log_path.read_text(errors="replace")))
        if "startup_s" not in record:
            record["error"] = f"server exited rc={proc.returncode}" if proc.poll() is not None \
                else f"not healthy after {args.startup_timeout}s"
            record["log_tail"] = run_recipe.ANSI.sub("", log_path.read_text(errors="replace"))[-6000:]
            return record
        out_json.write_text(json.dumps(record, indent=1))  # the start is kept even if no cell runs
        print(f"  [{name}] healthy after {record['startup_s']} s", flush=True)
        model = run_recipe.served_name(argv)
        for index, step in enumerate(args.plan.split(",")):
            if args.deadline and time.time() > args.deadline:
                record["cut"] = f"deadline reached before step {index} ({step})"
                break
            if step.startswith("v"):
                cell = vllm_bench(name, int(step[1:]), args.input_len, args.output_len, model, args.stage, rundir,
                                  env, index)
            else:
                cell = gptoss_bench(int(step), args.input_len, args.output_len, args.waves, env)
            cell["step"], cell["at_s"] = index, round(time.time() - t0, 1)
            record["cells"].append(cell)
            out_json.write_text(json.dumps(record, indent=1))
            print(f"  [{name}] {line(cell)} ({cell['wall_s']} s)", flush=True)
        return record
    finally:
        run_recipe.stop(proc)
        record["server_log_tail"] = run_recipe.ANSI.sub("", log_path.read_text(errors="replace"))[-2000:]
        record["finished_at"] = time.strftime("%FT%T")
        out_json.write_text(json.dumps(record, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run")
    p.add_argument("--commands", type=Path, default=Path(__file__).resolve().parent / "commands.txt")
    p.add_argument("--only", required=True, help="comma-separated run names from --commands, in order")
    p.add_argument("--stage", type=Path, required=True, help="dir with models/, tok/, tiktoken/")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--input-len", type=int, default=1024)
    p.add_argument("--output-len", type=int, default=1024)
    p.add_argument("--plan", default=DEFAULT_PLAN)
    p.add_argument("--waves", type=int, default=3, help="counted waves per gptoss-sky bench sample")
    p.add_argument("--startup-timeout", type=int, default=900)
    p.add_argument("--deadline-s", type=int, default=0, help="stop starting cells after this many seconds")
    args = ap.parse_args()
    args.deadline = time.time() + args.deadline_s if args.deadline_s else 0
    runs = run_recipe.read_commands(args.commands)
    unknown = [n for n in args.only.split(",") if n not in runs]
    if unknown:
        raise SystemExit(f"not in {args.commands}: {', '.join(unknown)}")
    gpu = run_recipe.torch_total_gib()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(gpu))
    print(f"GPU: {gpu}", flush=True)
    for name in args.only.split(","):
        command, note = runs[name]
        print(f"== {name}: {command}", flush=True)
        record = run_server(name, command, note, args, gpu)
        print(f"== {name}: {'FAILED ' + record['error'] if 'error' in record else 'done'}", flush=True)
    print("ALL DONE", flush=True)


if __name__ == "__main__":
    main()
