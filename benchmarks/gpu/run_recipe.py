#!/usr/bin/env python3
"""Run a gptoss-sky engine command on one GPU with dummy weights and benchmark it.

Takes the `vllm serve ...` line that `gptoss-sky render --engine-commands` prints, rewrites it into a
dummy-weights run (same flags; model positional -> local shapes dir; --revision dropped;
--load-format dummy; --tokenizer TOK; $SKYPILOT_NUM_GPUS_PER_NODE -> 1), starts it detached, waits for
/health, parses the memory lines vLLM prints at startup, runs the fixed load with `vllm bench serve`
(random 1024 in / 512 out, --ignore-eos) at several concurrencies, optionally runs
`gptoss-sky bench` (launcher/verify/bench.py) side by side, writes one JSON record per run and stops the server.

Stdlib only (plus vLLM and torch on the GPU machine). See README.md beside this file.

    run_recipe.py one --name 20b-default --cmd 'vllm serve openai/gpt-oss-20b ...' --stage /root/stage --out DIR
    run_recipe.py batch --commands benchmarks/gpu/commands.txt --only 20b-default,20b-bare --stage /root/stage --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PORT = 8000
DEFAULT_LOAD = "1:4,64:256,256:512"  # concurrency:num_prompts
API_KEY = "gptoss-sky-gpu-bench-key"
WARMUP = os.environ.get("RUN_RECIPE_WARMUP") == "1"  # --num-warmups = concurrency before each measured load
ANSI = re.compile(r"\x1b\[[0-9;]*m")

PATTERNS = {
    "model_loading_gib": re.compile(r"Model loading took ([\d.]+) GiB"),
    "available_kv_cache_gib": re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
    "gpu_kv_cache_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "max_concurrency": re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"),
    "cudagraph_estimate_gib": re.compile(r"Estimated CUDA graph memory: ([\d.]+) GiB total"),
    "cudagraph_pool_actual_gib": re.compile(r"CUDA graph pool memory: ([\d.]+) GiB \(actual\)"),
    "graph_capture": re.compile(r"Graph capturing finished in (\d+) secs, took ([\d.]+) GiB"),
    "free_memory_breakdown": re.compile(
        r"Free memory on device \(([\d.]+)/([\d.]+) GiB\).*?Actual usage is ([\d.]+) GiB for weight, "
        r"([\d.]+) GiB for peak activation, ([\d.]+) GiB for non-torch memory, and ([\d.]+) GiB for CUDAGraph"
    ),
    "util_equivalent": re.compile(
        r"current --gpu-memory-utilization=([\d.]+) is equivalent to --gpu-memory-utilization=([\d.]+)"
    ),
}
VERBATIM = re.compile(
    r"CUDA graph|CUDAGraph memory|gpu[-_]memory[-_]utilization|Graph capturing|Model loading took|"
    r"Available KV cache|GPU KV cache size|Maximum concurrency|Using .*(MoE|backend)|max_num_batched_tokens|"
    r"Chunked prefill|max_num_seqs",
    re.I,
)


def to_dummy_command(engine_command: str, stage: Path, tp: int = 1) -> list[str]:
    """The argv of a dummy-weights `vllm serve` run equivalent to `engine_command`."""
    tokens = shlex.split(engine_command.replace("$SKYPILOT_NUM_GPUS_PER_NODE", str(tp)))
    if tokens[:2] != ["vllm", "serve"] or len(tokens) < 3 or tokens[2].startswith("-"):
        raise SystemExit(f"not a `vllm serve MODEL ...` line: {engine_command!r}")
    model_dir = stage / "models" / tokens[2].split("/")[-1]
    out = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(model_dir)]
    rest = tokens[3:]
    i = 0
    while i < len(rest):
        tok = rest[i]
        name = tok.split("=", 1)[0]
        if name in ("--revision", "--load-format", "--tokenizer"):
            i += 1 if "=" in tok else 2
            continue
        out.append(tok)
        i += 1
    out += ["--load-format", "dummy", "--tokenizer", str(stage / "tok")]
    return out


def served_name(argv: list[str]) -> str:
    if "--served-model-name" in argv:
        return argv[argv.index("--served-model-name") + 1]
    return argv[4]  # vLLM serves the model path under its own name


def health(timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def parse_log(text: str) -> dict:
    text = ANSI.sub("", text)
    found: dict = {}
    for key, pat in PATTERNS.items():
        m = pat.search(text)
        if not m:
            continue
        g = m.groups()
        if key == "max_concurrency":
            found["max_model_len_printed"] = int(g[0].replace(",", ""))
            found[key] = float(g[1])
        elif key == "gpu_kv_cache_tokens":
            found[key] = int(g[0].replace(",", ""))
        elif key == "graph_capture":
            found["graph_capture_secs"], found["graph_capture_gib"] = int(g[0]), float(g[1])
        elif key == "free_memory_breakdown":
            found["free_memory_breakdown"] = dict(zip(
                ["free_gib", "total_gib", "weights_gib", "peak_activation_gib", "non_torch_gib", "cudagraph_gib"],
                map(float, g), strict=True))
        elif key == "util_equivalent":
            found["util_requested"], found["util_equivalent_without_cg"] = float(g[0]), float(g[1])
        else:
            found[key] = float(g[0])
    lines, seen = [], set()
    for line in text.splitlines():
        if VERBATIM.search(line) and "Capturing CUDA graphs" not in line and "it/s]" not in line:
            body = re.sub(r"^.*?\] ", "", line).strip()  # drop the timestamp/pid prefix for dedupe
            if body not in seen and len(lines) < 40:
                seen.add(body)
                lines.append(line.strip()[:1500])
    found["log_lines"] = lines
    return found


def torch_total_gib() -> float | None:
    code = "import torch; f,t=torch.cuda.mem_get_info(); print(t/2**30, f/2**30, torch.cuda.get_device_name())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
        total, free, name = out.stdout.split(maxsplit=2)
        return {"total_gib": round(float(total), 3), "free_gib": round(float(free), 3), "device": name.strip()}
    except Exception as exc:  # noqa: BLE001
        return {"error": repr(exc)}


def bench(name: str, model_name: str, conc: int, prompts: int, stage: Path, rundir: Path, env: dict,
          warmups: int = 0) -> dict:
    fname = f"{name}-c{conc}.json"
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "openai",
           "--base-url", f"http://127.0.0.1:{PORT}", "--endpoint", "/v1/completions", "--model", model_name,
           "--tokenizer", str(stage / "tok"), "--dataset-name", "random", "--random-input-len", "1024",
           "--random-output-len", "512", "--ignore-eos", "--max-concurrency", str(conc),
           "--num-prompts", str(prompts), "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--metric-percentiles", "50,99", "--save-result", "--result-dir", str(rundir),
           "--result-filename", fname]
    if warmups:
        cmd += ["--num-warmups", str(warmups)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    res: dict = {"concurrency": conc, "num_prompts": prompts, "wall_s": round(time.time() - t0, 1),
                 "rc": proc.returncode}
    path = rundir / fname
    if proc.returncode != 0 or not path.exists():
        res["error_tail"] = (proc.stdout + proc.stderr)[-3000:]
        return res
    data = json.loads(path.read_text())
    for key in ("completed", "duration", "request_throughput", "output_throughput", "total_token_throughput",
                "mean_ttft_ms", "median_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
                "median_tpot_ms", "p50_tpot_ms", "p99_tpot_ms", "p50_itl_ms", "p99_itl_ms",
                "p50_e2el_ms", "p99_e2el_ms", "max_concurrent_requests"):
        if key in data:
            res[key] = round(data[key], 3) if isinstance(data[key], float) else data[key]
    return res


def launcher_bench(env: dict, repo: Path) -> dict:
    # The key goes through the environment (GPTOSS_SKY_API_KEY), never argv.
    cmd = [sys.executable, "-m", "launcher.cli", "bench", "--endpoint", f"http://127.0.0.1:{PORT}",
           "--concurrency", "64,256", "--input-len", "1024", "--output-len", "512", "--json"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, GPTOSS_SKY_API_KEY=API_KEY), cwd=repo,
                          timeout=1200)
    res: dict = {"command": shlex.join(cmd[1:]), "rc": proc.returncode, "wall_s": round(time.time() - t0, 1)}
    try:
        res["result"] = json.loads(proc.stdout)
    except ValueError:
        res["stdout_tail"] = proc.stdout[-3000:]
    res["stderr_tail"] = proc.stderr[-2000:]
    return res


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except Exception:  # noqa: BLE001
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            pass
    time.sleep(3)  # let the driver free the GPU memory before the next server


def run_one(name: str, engine_command: str, stage: Path, out: Path, load: str, gpu: dict,
            with_launcher_bench: bool, repo: Path, startup_timeout: int, note: str = "") -> dict:
    out.mkdir(parents=True, exist_ok=True)
    rundir = out / name
    rundir.mkdir(exist_ok=True)
    argv = to_dummy_command(engine_command, stage)
    env = dict(os.environ, TIKTOKEN_ENCODINGS_BASE=str(stage / "tiktoken"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    if with_launcher_bench:
        env["VLLM_API_KEY"] = API_KEY
        env["OPENAI_API_KEY"] = API_KEY
    record: dict = {"name": name, "note": note, "engine_command": engine_command,
                    "dummy_command": shlex.join(argv[1:]), "gpu": gpu, "started_at": time.strftime("%FT%T")}
    log_path = rundir / "server.log"
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while time.time() - t0 < startup_timeout:
            if proc.poll() is not None:
                break
            if health():
                record["startup_s"] = round(time.time() - t0, 1)
                break
            time.sleep(2)
        log_text = log_path.read_text(errors="replace")
        record.update(parse_log(log_text))
        if "startup_s" not in record:
            record["error"] = f"server exited rc={proc.returncode}" if proc.poll() is not None \
                else f"not healthy after {startup_timeout}s"
            record["log_tail"] = ANSI.sub("", log_text)[-6000:]
            return record
        try:
            import vllm  # noqa: PLC0415
            record["vllm_version"] = vllm.__version__
        except Exception:  # noqa: BLE001
            pass
        model_name = served_name(argv)
        record["bench"] = []
        for item in load.split(","):
            conc, prompts = (int(x) for x in item.split(":"))
            r = bench(name, model_name, conc, prompts, stage, rundir, env, conc if WARMUP else 0)
            record["bench"].append(r)
            (out / f"{name}.json").write_text(json.dumps(record, indent=1))  # a partial run survives a lost machine
            print(f"  [{name}] c={conc} n={prompts}: out {r.get('output_throughput')} tok/s, "
                  f"TTFT p50 {r.get('p50_ttft_ms')} ms, TPOT p50 {r.get('p50_tpot_ms')} ms rc={r['rc']}",
                  flush=True)
        if with_launcher_bench:
            record["launcher_bench"] = launcher_bench(env, repo)
        record["server_log_tail"] = ANSI.sub("", log_path.read_text(errors="replace"))[-1500:]
        return record
    finally:
        stop(proc)
        record["finished_at"] = time.strftime("%FT%T")
        (out / f"{name}.json").write_text(json.dumps(record, indent=1))
        print(summary(record), flush=True)


def summary(r: dict) -> str:
    if "error" in r:
        return f"{r['name']}: FAILED {r['error']}"
    parts = [f"{r['name']}: start {r.get('startup_s')}s", f"load {r.get('model_loading_gib')} GiB",
             f"KV {r.get('available_kv_cache_gib')} GiB", f"{r.get('gpu_kv_cache_tokens')} tok",
             f"conc {r.get('max_concurrency')}x", f"CG est {r.get('cudagraph_estimate_gib')} GiB"]
    for b in r.get("bench", []):
        parts.append(f"c{b['concurrency']} {b.get('output_throughput')} tok/s")
    return " | ".join(parts)


def read_commands(path: Path) -> dict[str, tuple[str, str]]:
    """`NAME: vllm serve ...` lines, each optionally preceded by `# note` lines."""
    runs, note = {}, []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            note.append(line.lstrip("# ").strip())
        elif ":" in line and "vllm serve" in line:
            name, cmd = line.split(":", 1)
            runs[name.strip()] = (cmd.strip(), " ".join(note))
            note = []
        elif not line.strip():
            note = []
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("one", "batch"):
        p = sub.add_parser(mode)
        p.add_argument("--stage", type=Path, required=True, help="dir with models/, tok/, tiktoken/")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--load", default=DEFAULT_LOAD, help="concurrency:num_prompts,...")
        p.add_argument("--startup-timeout", type=int, default=900)
        p.add_argument("--launcher-bench", choices=("auto", "yes", "no"), default="auto",
                       help="also run `python3 -m launcher.cli bench` (auto: if launcher/verify/bench.py exists)")
        if mode == "one":
            p.add_argument("--name", required=True)
            p.add_argument("--cmd", required=True, help="one `vllm serve ...` line as gptoss-sky renders it")
        else:
            p.add_argument("--commands", type=Path, required=True)
            p.add_argument("--only", default="", help="comma-separated run names, in order")
    p = sub.add_parser("show", help="print the dummy-weights argv for a command (no GPU needed)")
    p.add_argument("--stage", type=Path, default=Path("/root/stage"))
    p.add_argument("--cmd", required=True)
    args = ap.parse_args()
    if args.mode == "show":
        print(shlex.join(to_dummy_command(args.cmd, args.stage)))
        return
    repo = Path(__file__).resolve().parents[2]
    lb = args.launcher_bench == "yes" or (
        args.launcher_bench == "auto" and (repo / "launcher/verify/bench.py").exists())
    gpu = torch_total_gib()
    print(f"GPU: {gpu}; launcher bench: {lb}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(gpu))
    if args.mode == "one":
        jobs = [(args.name, args.cmd, "")]
    else:
        runs = read_commands(args.commands)
        names = [n for n in args.only.split(",") if n] or list(runs)
        jobs = [(n, *runs[n]) for n in names]
    for name, cmd, note in jobs:
        print(f"== {name}: {cmd}", flush=True)
        run_one(name, cmd, args.stage, args.out, args.load, gpu, lb, repo, args.startup_timeout, note)
    print("ALL DONE", flush=True)


if __name__ == "__main__":
    main()
