#!/usr/bin/env python3
"""Run the `setup:` and `run:` blocks that gptoss-sky renders on a real GPU, as SkyPilot runs them, and time them.

For a machine with no network and vLLM 0.26.0 staged in place of the pinned version (see README.md):
- a fake `~/gptoss-sky/vllm-venv` whose `activate` puts the staged vLLM on PYTHONPATH and whose `vllm` is
  `python3 -m vllm.entrypoints.cli.main`;
- setup runs verbatim with stub `uv`/`pip`/`curl`/`hf` first on PATH: `hf download REPO --revision SHA` lays
  out the Hugging Face cache exactly as the real one leaves it (blobs named by their git oid, relative
  symlinks in snapshots/SHA/, no refs/ for a commit revision) from the gpt-oss shapes; `curl` copies the
  staged tiktoken files to the `-o` path it is given;
- run executes VERBATIM with real bash, nvidia-smi and curl, SkyPilot's env and the key as env only. Each
  output line is stamped on arrival; phases come from the node's `gptoss-sky phase` markers and from the
  engine's own log lines; ready = first 200 from 127.0.0.1:8000/health.

Then per step: auth probes (every path without the key must be 401 except /health), `gptoss-sky smoke`,
`gptoss-sky bench` at concurrency 256 while /metrics is sampled with the key, `vllm bench serve` with a fresh
seed; stop; restart with the cache kept (cold vs warm). Stdlib only (plus what the GPU machine has).

    node_proof.py run --yaml-dir DIR --stage /root/stage --site /root/site --out /root/results \
        --queue /root/queue.txt
    node_proof.py local-check ...   (same, against stubs; see test_node_proof.sh)

Queue lines: `STEP MODEL CACHE TASKS [EXTRA FLAGS...] [ENV:K=V...]`, CACHE cold|warm|warmall|node-cold|
node-warm|seeded|bare, TASKS joined by `+` from probes, smoke, bench, bench2, vbench, none. The queue file is re-read
before each step, so it can be edited while the driver runs. `warm` keeps only vLLM's cache root (and caches the
run block configures itself) and moves the machine's other compile caches aside; `warmall` keeps every cache on
the machine. node-cold/node-warm/seeded: a new node with the lane's --cache bucket (see run_step; --lane); bare: a new
node, plain `vllm serve` in place of the run block.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import itertools
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT = 8000  # the engine's port in the rendered run block; a lane other than 0 moves it (--lane)
BASE = f"http://127.0.0.1:{PORT}"
GPU_INDEX: str | None = None  # the lane's GPU: nvidia-smi is asked about it alone
NUM_GPUS = 1  # SKYPILOT_NUM_GPUS_PER_NODE of every step (--gpus): the run block's --tensor-parallel-size
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PHASE = re.compile(r"^gptoss-sky phase (\S+) (\d+(?:\.\d+)?)(?: (-?\d+))?\s*$")
# The engine's own milestones (first line that matches), vLLM 0.26.
MILESTONES = {
    "api_server_start": re.compile(r"vLLM API server version|Starting vLLM API server|non-default args"),
    "engine_core_start": re.compile(r"Initializing a V1 LLM engine|EngineCore.*(started|Initializing)"),
    "load_start": re.compile(r"Starting to load model|Loading model from scratch|Loading weights"),
    "load_done": re.compile(r"Model loading took"),
    "compile_start": re.compile(r"Start compiling|Dynamo bytecode transform time|Compiling a graph|Directly load"),
    "compile_done": re.compile(r"torch\.compile (?:takes|took) [\d.]+ s in total|run together took|"
                               r"Directly load the compiled graph|Directly load AOT compilation|"
                               r"saved AOT compiled function"),
    "aot_loaded": re.compile(r"Directly load AOT compilation"),
    "kv_cache_sized": re.compile(r"GPU KV cache size"),
    "graphs_start": re.compile(r"Capturing CUDA graph"),
    "graphs_done": re.compile(r"Graph capturing finished"),
    "engine_init_done": re.compile(r"init engine \(profile, create kv cache, warmup model\) took"),
    "app_startup_complete": re.compile(r"Application startup complete"),
}
NUMBERS = {
    "model_loading": re.compile(r"Model loading took ([\d.]+) GiB (?:memory )?and ([\d.]+) seconds"),
    "dynamo_transform_s": re.compile(r"Dynamo bytecode transform time: ([\d.]+) s"),
    "torch_compile_total_s": re.compile(r"torch\.compile (?:takes|took) ([\d.]+) s in total"),
    "compile_and_warmup_s": re.compile(r"torch\.compile and initial profiling/warmup run together took ([\d.]+) s"),
    "compile_cache_load_s": re.compile(r"Directly load the compiled graph.*?took ([\d.]+) s"),
    "compile_range_s": re.compile(r"Compiling a graph for compile range .*? takes ([\d.]+) s"),
    "graph_capture_s": re.compile(r"Graph capturing finished in ([\d.]+) secs?, took ([\d.]+) GiB"),
    "engine_init_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    "engine_init_compilation_s": re.compile(r"init engine .*? took [\d.]+ s \(compilation: ([\d.]+) s"),
    "kv_cache_gib": re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
    "max_concurrency": re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x"),
}
# Paths probed without the key (besides every route /openapi.json lists). Only /health may answer.
PROBES = [
    ("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"), ("GET", "/v1/responses/x"), ("POST", "/v1/embeddings"), ("POST", "/invocations"),
    ("POST", "/tokenize"), ("POST", "/detokenize"), ("GET", "/metrics"), ("GET", "/version"), ("GET", "/ping"),
    ("POST", "/ping"), ("GET", "/load"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/redoc"),
    ("GET", "/server_info"), ("POST", "/pooling"), ("POST", "/classify"), ("POST", "/score"),
    ("POST", "/v1/score"), ("POST", "/rerank"), ("POST", "/v1/rerank"), ("POST", "/v2/rerank"),
    ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"), ("GET", "/is_sleeping"),
    ("POST", "/v1/messages"), ("GET", "/v1/models/openai/gpt-oss-20b"), ("GET", "/nonexistent-path"),
    ("GET", "/health/../v1/models"), ("GET", "//v1/models"), ("GET", "/V1/MODELS"), ("GET", "/health?x=1"),
    ("GET", "/healthz"), ("POST", "/health"),
]
# Routes never sent a body without the key even if listed (a guard that fails open must not trigger them).
SIDE_EFFECTS = re.compile(r"sleep|wake|pause|resume|collective_rpc|scale|shutdown|reset|profile|lora|"
                          r"update_weights|init_weights|abort|kill", re.I)
CACHE_ENV = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME",
             "HF_HUB_CACHE", "FLASHINFER_WORKSPACE_BASE", "CUDA_CACHE_PATH", "VLLM_CONFIG_ROOT")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: str, timeout: float = 120) -> str:
    try:
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
        return (p.stdout + p.stderr).strip()
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc!r}"


def git_blob_oid(data: bytes) -> str:
    """The id the Hub's ETag gives a non-LFS file, which names its blob in the cache."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def yaml_block(text: str, key: str) -> str:
    """The literal block `key: |` of a rendered task YAML (no YAML library needed on the GPU machine)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.rstrip() in (f"{key}: |", f"{key}: |-"):
            body = []
            for nxt in lines[i + 1:]:
                if nxt and not nxt.startswith("  "):
                    break
                body.append(nxt[2:])
            return "\n".join(body).rstrip("\n") + "\n"
    raise SystemExit(f"no `{key}: |` block in the task YAML")


def yaml_envs(text: str) -> dict[str, str]:
    """`envs:` of a rendered task YAML (flat `KEY: "value"` lines)."""
    out, inside = {}, False
    for line in text.splitlines():
        if line.startswith("envs:"):
            inside = True
            continue
        if inside:
            m = re.match(r'^  ([A-Za-z_][A-Za-z0-9_]*): ?(.*)$', line)
            if not m:
                break
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[m.group(1)] = value
    return out


def yaml_file_mounts(text: str) -> dict[str, str]:
    """`file_mounts:` of a rendered task YAML: DEST -> local SRC (flat lines only; buckets are not modelled)."""
    out, inside = {}, False
    for line in text.splitlines():
        if line.startswith("file_mounts:"):
            inside = True
            continue
        if inside:
            m = re.match(r'^  ("?)([^":]+)\1: ?(.*)$', line)
            if not m:
                break
            src = m.group(3).strip().strip("\"'")
            if src:
                out[m.group(2)] = src
    return out


def apply_file_mounts(text: str, home: Path, cwd: Path) -> dict:
    """Copy local file_mounts sources to their destinations as SkyPilot would (paths under a checkout's
    launcher/ are found in this machine's copy of the repository)."""
    done = {}
    for dest, src in yaml_file_mounts(text).items():
        path = Path(os.path.expanduser(src))
        if not path.exists() and "/launcher/" in src:
            path = cwd / ("launcher/" + src.split("/launcher/", 1)[1])
        target = Path(dest.replace("~", str(home), 1)) if dest.startswith("~") else Path(dest)
        if not path.exists():
            done[dest] = f"MISSING source {src}"
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)
        done[dest] = str(path)
    return done


# ---------------------------------------------------------------- node preparation


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def make_fake_venv(venv: Path, site: Path, python: str) -> Path:
    """What `uv venv` + `uv pip install vllm` leave, for the staged vLLM (made by the uv stub, wherever the
    setup block asks for the venv)."""
    pp = f'PYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}"'
    write_exe(venv / "bin" / "activate",
              "# Fake venv (node_proof.py): the staged vLLM 0.26.0 on the machine's python3.\n"
              f'export VIRTUAL_ENV="{venv}"\nexport PATH="$VIRTUAL_ENV/bin:$PATH"\nexport {pp}\n')
    for name in ("python", "python3"):
        write_exe(venv / "bin" / name, f'#!/bin/sh\n{pp} exec "{python}" "$@"\n')
    write_exe(venv / "bin" / "vllm", f'#!/bin/sh\n{pp} exec "{python}" -m vllm.entrypoints.cli.main "$@"\n')
    return venv


HF_STUB = r'''#!PYTHON
"""Stub `hf` (node_proof.py): `hf download REPO [--revision R] [--include P].. [--exclude P]..` lays out the
Hugging Face cache as huggingface_hub's snapshot download leaves it, from the staged gpt-oss shapes."""
import fnmatch, hashlib, json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["NODE_PROOF_STUB_LOG"], "a") as f:
    f.write(json.dumps({"t": time.time(), "argv": ["hf"] + args}) + "\n")
if not args or args[0] != "download":
    sys.exit(0)
repo, rev, inc, exc, cache = None, "main", [], [], None
i = 1
while i < len(args):
    a = args[i]
    if a in ("--revision", "--include", "--exclude", "--cache-dir", "--local-dir", "--repo-type", "--token"):
        v = args[i + 1]; i += 2
        if a == "--revision": rev = v
        elif a == "--include": inc.append(v)
        elif a == "--exclude": exc.append(v)
        elif a == "--cache-dir": cache = v
        elif a == "--local-dir": sys.exit("hf stub: --local-dir not modelled")
    elif a.startswith("-"):
        i += 1
    else:
        if repo is None: repo = a
        else: inc.append(a)  # filenames given positionally
        i += 1
stage = Path(os.environ["NODE_PROOF_STAGE"])
name = repo.split("/")[-1]
files = {"config.json": stage / "models" / name / "config.json",
         "generation_config.json": stage / "models" / name / "generation_config.json",
         "tokenizer.json": stage / "tok" / "tokenizer.json",
         "tokenizer_config.json": stage / "tok" / "tokenizer_config.json"}
if not files["config.json"].exists():
    sys.exit(f"hf stub: no staged shapes for {repo}")
def wanted(f):
    if inc and not any(fnmatch.fnmatch(f, p) for p in inc): return False
    return not any(fnmatch.fnmatch(f, p) for p in exc)
if cache is None:
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
base = Path(cache) / ("models--" + repo.replace("/", "--"))
commit = rev if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else os.environ["NODE_PROOF_COMMIT"]
snap = base / "snapshots" / commit
for fname, src in files.items():
    if not wanted(fname): continue
    data = src.read_bytes()
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    blob = base / "blobs" / oid
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists(): blob.write_bytes(data)
    link = snap / fname
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists(): link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
if rev != commit:  # only a branch or tag revision writes a ref (huggingface_hub does the same)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / rev).write_text(commit)
print(snap)
'''

CURL_STUB = r'''#!/bin/bash
# Stub curl for setup (node_proof.py): records argv; `-o PATH URL` of a *.tiktoken URL copies the staged file.
printf '%s\n' "{\"t\": $(date +%s), \"argv\": \"curl $*\"}" >> "$NODE_PROOF_STUB_LOG"
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--output) out=$2; shift 2 ;;
    -*) shift ;;
    *) url=$1; shift ;;
  esac
done
case "$url" in
  *.tiktoken) cp "$NODE_PROOF_STAGE/tiktoken/$(basename "$url")" "${out:-/dev/stdout}" ;;
  *) echo "curl stub: not fetching $url" >&2 ;;
esac
'''

NOOP_STUB = '''#!/bin/bash
# Stub (node_proof.py): records argv, does nothing (no network on this machine).
printf '%s\\n' "{\\"t\\": $(date +%s), \\"argv\\": \\"$(basename "$0") $*\\"}" >> "$NODE_PROOF_STUB_LOG"
'''


UV_STUB = r'''#!PYTHON
"""Stub uv (node_proof.py): records argv; `uv venv ... DIR` makes the fake venv over the staged vLLM at DIR."""
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["NODE_PROOF_STUB_LOG"], "a") as f:
    f.write(json.dumps({"t": time.time(), "argv": ["uv"] + args}) + "\n")
if args[:1] == ["venv"]:
    sys.path.insert(0, os.environ["NODE_PROOF_DRIVER_DIR"])
    from node_proof import make_fake_venv
    make_fake_venv(Path(args[-1]), Path(os.environ["NODE_PROOF_SITE"]), sys.executable)
'''


def make_setup_stubs(stub_dir: Path, python: str) -> None:
    write_exe(stub_dir / "hf", HF_STUB.replace("PYTHON", python, 1))
    write_exe(stub_dir / "huggingface-cli", HF_STUB.replace("PYTHON", python, 1))
    write_exe(stub_dir / "curl", CURL_STUB)
    write_exe(stub_dir / "uv", UV_STUB.replace("PYTHON", python, 1))
    for name in ("pip", "pip3"):
        write_exe(stub_dir / name, NOOP_STUB)


# ---------------------------------------------------------------- running a block


class Block:
    """A node script run with bash in its own session; every output line stamped on arrival."""

    def __init__(self, script: str, path: Path, log_path: Path, env: dict, cwd: Path) -> None:
        path.write_text(script)
        self.lines: list[tuple[float, str]] = []
        self.log = open(log_path, "w")
        self.t0 = time.time()
        self.proc = subprocess.Popen(["bash", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            t = time.time()
            line = ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\n"))
            self.lines.append((t, line))
            self.log.write(f"{t:.3f} {line}\n")
            self.log.flush()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(timeout=10)
        return rc

    SHELLS = ("bash", "sh", "sleep", "ps", "awk", "mawk", "gawk", "cat", "tee", "date", "curl", "grep")

    def only_shell_left(self) -> bool:
        """True when the block's session holds nothing but shells, sleeps and log filters (engine gone)."""
        ps = sh(f"ps -o comm= -s {self.proc.pid} || true").split()
        return bool(ps) and all(c in self.SHELLS for c in ps)

    def engine_pids(self) -> list[int]:
        out = []
        for row in sh(f"ps -o pid=,comm= -s {self.proc.pid} || true").splitlines():
            pid, _, comm = row.strip().partition(" ")
            if pid.isdigit() and comm.strip() not in self.SHELLS:
                out.append(int(pid))
        return out

    def stop(self) -> dict:
        """TERM the whole session (bash, the engine and its workers), KILL what is left after 45 s."""
        out: dict = {}
        if self.proc.poll() is None:
            t = time.time()
            # TERM the engine first (not the log filter, so it flushes what it holds once the pipe closes),
            # then the run block's shell as SkyPilot's cancel would.
            for pid in self.engine_pids():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            while time.time() - t < 40 and self.engine_pids():
                time.sleep(0.5)
            out["engine_exit_s"] = round(time.time() - t, 1)
            time.sleep(2)  # let a log filter flush
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            rc = None
            while rc is None and time.time() - t < 45:
                rc = self.wait(1)
                if rc is None and self.only_shell_left():
                    # The engine is gone but the run block sleeps out its watchdog interval: end it.
                    out["run_block_still_sleeping_after_engine_exit"] = True
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    rc = self.wait(10)
            out["stop_s"] = round(time.time() - t, 1)
            if rc is None:
                out["killed"] = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(30)
        else:
            self.wait(10)
        # Engine workers in their own session would escape killpg: end any left holding the port or GPU.
        left = sh(f"pgrep -s {self.proc.pid} || true")
        if left.strip():
            out["left_after_stop"] = left.split()
            for pid in left.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        out["rc"] = self.proc.returncode
        self.log.close()
        return out


def call(method: str, path: str, key: str | None = None, body: bytes | None = None,
         timeout: float = 10) -> tuple[int, str]:
    req = urllib.request.Request(BASE + path, data=body, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(400).decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(400).decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001
        return -1, repr(exc)[:200]


def raw_get(path: str, timeout: float = 5) -> int:
    """A GET with the path sent as-is (urllib would normalise `..` and `//`)."""
    import http.client  # noqa: PLC0415
    try:
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
        c.putrequest("GET", path, skip_host=False)
        c.endheaders()
        status = c.getresponse().status
        c.close()
        return status
    except Exception:  # noqa: BLE001
        return -1


def gpu_mem_used_mib() -> int | None:
    sel = f"-i {GPU_INDEX} " if GPU_INDEX is not None else ""
    out = sh(f"nvidia-smi {sel}--query-gpu=memory.used --format=csv,noheader,nounits")
    try:
        return int(out.splitlines()[0].strip())
    except (ValueError, IndexError):
        return None


def wait_gpu_free(limit_s: float = 90) -> float:
    t = time.time()
    while time.time() - t < limit_s:
        used = gpu_mem_used_mib()
        if used is not None and used < 2000:
            break
        time.sleep(1)
    return round(time.time() - t, 1)


def port_free(limit_s: float = 30) -> bool:
    t = time.time()
    while time.time() - t < limit_s:
        if call("GET", "/health", timeout=1)[0] == -1:
            return True
        time.sleep(1)
    return False


# ---------------------------------------------------------------- phases


LOG_TIME = re.compile(r"\b(?:INFO|WARNING|DEBUG|ERROR|CRITICAL) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \[")


def log_time(line: str, near: float) -> float | None:
    """The engine's own timestamp of a log line (vLLM: `INFO MM-DD HH:MM:SS [file:line]`, local time, whole
    seconds). Lines can reach us late (a log filter that buffers its input), so phases use this when present."""
    m = LOG_TIME.search(line)
    if not m:
        return None
    mon, day, hh, mm, ss = (int(x) for x in m.groups())
    year = time.localtime(near).tm_year
    try:
        t = time.mktime((year, mon, day, hh, mm, ss, 0, 0, -1))
    except (OverflowError, ValueError):
        return None
    return t if abs(t - near) < 86400 else None


def phases_of(lines: list[tuple[float, str]], t0: float, ready_t: float | None) -> dict:
    markers: dict = {}
    milestones: dict = {}
    arrival: dict = {}
    numbers: dict = {}
    for t_arrive, line in lines:
        lt = log_time(line, t_arrive)
        t = lt if lt is not None else t_arrive
        m = PHASE.match(line.strip())
        if m:
            markers.setdefault(m.group(1), {"epoch": float(m.group(2)), "seen_at": round(t_arrive - t0, 2),
                                            **({"code": int(m.group(3))} if m.group(3) else {})})
            continue
        for name, pat in MILESTONES.items():
            if name not in milestones and pat.search(line):
                milestones[name] = round(t - t0, 2)
                arrival[name] = round(t_arrive - t0, 2)
        for name, pat in NUMBERS.items():
            if name in numbers:
                continue
            n = pat.search(line)
            if n:
                g = [x.replace(",", "") for x in n.groups()]
                numbers[name] = [float(x) for x in g] if len(g) > 1 else float(g[0])
    for v in markers.values():
        v["rel_s"] = round(v["epoch"] - t0, 2)
    out = {"markers": markers, "milestones_s": milestones, "milestones_arrival_s": arrival,
           "engine_numbers": numbers}
    if ready_t is not None:
        out["ready_s"] = round(ready_t - t0, 2)
        # Split the start into consecutive spans from the engine's own milestones.
        order = ["api_server_start", "load_start", "load_done", "compile_done", "graphs_start", "graphs_done",
                 "app_startup_complete"]
        points = [("run_start", 0.0)] + [(k, milestones[k]) for k in order if k in milestones] + \
                 [("health_200", out["ready_s"])]
        out["spans_s"] = {f"{a}->{b}": round(tb - ta, 2) for (a, ta), (b, tb) in itertools.pairwise(points)}
    return out


# ---------------------------------------------------------------- tasks


def auth_probes(key: str, served: str) -> dict:
    results = []
    paths = list(PROBES)
    code, body = call("GET", "/openapi.json", key=key, timeout=10)
    listed = []
    if code == 200:
        try:
            spec = json.loads(urllib.request.urlopen(
                urllib.request.Request(BASE + "/openapi.json", headers={"Authorization": f"Bearer {key}"}),
                timeout=10).read())
            for p, ops in spec.get("paths", {}).items():
                for method in ops:
                    listed.append((method.upper(), re.sub(r"\{[^}]+\}", "x", p)))
        except Exception as exc:  # noqa: BLE001
            listed.append(("ERROR", repr(exc)[:100]))
    for m, p in listed:
        if (m, p) not in paths and m in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            paths.append((m, p))
    for method, path in paths:
        if path.startswith("/health") and path not in ("/health", "/health?x=1") or "//" in path or ".." in path:
            status = raw_get(path) if method == "GET" else call(method, path)[0]
            results.append({"method": method, "path": path, "status": status, "raw": True})
            continue
        body = None
        if method in ("POST", "PUT", "PATCH"):
            if SIDE_EFFECTS.search(path):
                method = "GET"  # never send a body to an admin route without the key
            else:
                body = json.dumps({"model": served, "prompt": "hi", "max_tokens": 1}).encode()
        status, text = call(method, path, body=body)
        results.append({"method": method, "path": path, "status": status, "body": text[:120]})
    wrong = call("GET", "/v1/models", key="wrong-" + key[:4])[0]
    with_key = {p: call("GET", p, key=key)[0] for p in ("/v1/models", "/metrics", "/health")}
    answered = [r for r in results if r["status"] != 401
                and not (r["method"] in ("GET", "HEAD") and r["path"].split("?")[0] == "/health")]
    return {"probes": results, "openapi_routes": len(listed), "wrong_key_v1_models": wrong,
            "with_key": with_key, "health_without_key": next(r["status"] for r in results if r["path"] == "/health"),
            "answered_without_key": answered, "pass": not answered and wrong == 401
            and with_key["/v1/models"] == 200}


def key_exposure(key: str, block: Block) -> dict:
    ps = sh("ps -eo args")
    in_log = any(key in line for _, line in block.lines)
    return {"key_in_process_args": key in ps, "key_in_job_log": in_log}


def engine_env(block: Block) -> dict:
    """Cache-related env of this block's running engine (read from /proc), to know which caches it uses."""
    out: dict = {}
    for pid in sh(f"pgrep -s {block.proc.pid} -f 'vllm.entrypoints|EngineCore|VLLM' || true").split():
        try:
            env = dict(kv.split("=", 1) for kv in
                       Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace").split("\0") if "=" in kv)
        except OSError:
            continue
        for k in CACHE_ENV + ("VLLM_FLASHINFER_ALLREDUCE_BACKEND",):  # the run script's choice on a TP>1 node
            if k in env:
                out[k] = env[k]
        if out:
            break
    return out


class MetricsSampler:
    """GET /metrics with the key every `period` s, keeping the raw text (the `operate` parser's test data)."""

    def __init__(self, key: str, path: Path, period: float = 2.0) -> None:
        self.key, self.path, self.period = key, path, period
        self.stop_flag = threading.Event()
        self.samples: list[dict] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MetricsSampler:
        self.fh = open(self.path, "w")
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            t = time.time()
            code, _ = 0, ""
            try:
                req = urllib.request.Request(BASE + "/metrics", headers={"Authorization": f"Bearer {self.key}"})
                text = urllib.request.urlopen(req, timeout=5).read().decode()
                code = 200
            except Exception as exc:  # noqa: BLE001
                text, code = repr(exc), -1
            t1 = time.time()
            rec = {"t": round(t, 3), "t_done": round(t1, 3), "status": code, "text": text}
            self.fh.write(json.dumps(rec) + "\n")
            self.samples.append({"t": (t + t1) / 2, **parse_metrics(text)})
            self.stop_flag.wait(max(0.0, self.period - (time.time() - t)))

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=10)
        self.fh.close()


class StatusPoller:
    """What `gptoss-sky status` shows, read the way it reads it (launcher.operate.metrics.read_many: two scrapes
    `window_s` apart with the key), over and over while the bench runs. Skipped when launcher.operate.metrics is
    not importable here."""

    def __init__(self, key: str, cwd: Path, window_s: float = 2.0) -> None:
        self.key, self.window_s = key, window_s
        self.readings: list[dict] = []
        self.error: str | None = None
        self.stop_flag = threading.Event()
        try:
            sys.path.insert(0, str(cwd))
            from launcher.operate import metrics
            from launcher.plan import catalog  # noqa: PLC0415
            self.metrics = metrics
            self.engines = list(catalog.load().engines.values())
        except Exception as exc:  # noqa: BLE001
            self.metrics, self.error = None, f"launcher.operate.metrics not usable: {exc!r}"
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusPoller:
        if self.metrics is not None:
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            t0 = time.time()
            try:
                numbers = self.metrics.read_many([(BASE, self.key)], self.engines, window_s=self.window_s)[0]
                self.readings.append({"t_start": round(t0, 3), "t_end": round(time.time(), 3), **numbers.to_dict()})
            except Exception as exc:  # noqa: BLE001
                self.error = repr(exc)
                return

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        if self.metrics is not None:
            self.thread.join(timeout=15)


def parse_metrics(text: str) -> dict:
    """The few series the status comparison needs (summed over label sets)."""
    want = {"vllm:generation_tokens_total": "gen", "vllm:prompt_tokens_total": "prompt",
            "vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
            "vllm:kv_cache_usage_perc": "kv", "vllm:gpu_cache_usage_perc": "kv",
            "vllm:request_success_total": "success"}
    out: dict = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in want:
            try:
                out[want[name]] = out.get(want[name], 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return out


def window_rate(samples: list[dict], t_a: float, t_b: float) -> float | None:
    """Generation tokens/s between the samples nearest t_a and t_b (the way a status poll computes it)."""
    pts = [s for s in samples if "gen" in s]
    if len(pts) < 2:
        return None
    a = min(pts, key=lambda s: abs(s["t"] - t_a))
    b = min(pts, key=lambda s: abs(s["t"] - t_b))
    return None if b["t"] <= a["t"] else (b["gen"] - a["gen"]) / (b["t"] - a["t"])


def metrics_summary(samples: list[dict], t_start: float, t_end: float, bench_tps: float | None) -> dict:
    inside = [s for s in samples if t_start <= s["t"] <= t_end]
    before = [s for s in samples if s["t"] < t_start]
    out: dict = {"samples": len(samples), "samples_in_window": len(inside),
                 "window_s": round(t_end - t_start, 2), "bench_output_tokens_per_s": bench_tps}
    whole = window_rate(samples, t_start, t_end)
    out["metrics_tokens_per_s_whole_window"] = None if whole is None else round(whole, 1)
    # 10 s windows like a `status` poll, over the steady part (skip the first and last 15% of the bench).
    rates = []
    lo, hi = t_start + 0.15 * (t_end - t_start), t_end - 0.15 * (t_end - t_start)
    t = lo
    while t + 10 <= hi:
        r = window_rate(samples, t, t + 10)
        if r is not None:
            rates.append(round(r, 1))
        t += 5
    out["metrics_tokens_per_s_10s_windows"] = rates
    if bench_tps:
        if whole:
            out["whole_window_vs_bench"] = round(whole / bench_tps - 1, 4)
        if rates:
            out["max_abs_10s_window_vs_bench"] = round(max(abs(r / bench_tps - 1) for r in rates), 4)
    for k in ("running", "waiting", "kv"):
        vals = [s[k] for s in inside if k in s]
        out[f"{k}_max_under_load"] = max(vals) if vals else None
        idle = [s[k] for s in before if k in s]
        out[f"{k}_idle_before"] = idle[-1] if idle else None
    return out


def run_cli(args: list[str], env: dict, cwd: Path, timeout: float, out_path: Path) -> dict:
    t0 = time.time()
    try:
        p = subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
                           env=env, cwd=cwd, timeout=timeout)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    t1 = time.time()
    res: dict = {"command": "gptoss-sky " + shlex.join(args), "rc": rc, "t_start": round(t0, 3),
                 "t_end": round(t1, 3), "wall_s": round(t1 - t0, 1), "stderr_tail": stderr[-3000:]}
    try:
        res["result"] = json.loads(stdout)
    except ValueError:
        res["stdout_tail"] = stdout[-3000:]
    out_path.write_text(json.dumps(res, indent=1))
    return res


def vllm_bench(served: str, tok: Path, key: str, env: dict, rundir: Path, conc: int, prompts: int,
               seed: int) -> dict:
    fname = f"vbench-c{conc}-s{seed}.json"
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "openai",
           "--base-url", BASE, "--endpoint", "/v1/completions", "--model", served, "--tokenizer", str(tok),
           "--dataset-name", "random", "--random-input-len", "1024", "--random-output-len", "512", "--ignore-eos",
           "--max-concurrency", str(conc), "--num-prompts", str(prompts), "--seed", str(seed),
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
           "--save-result", "--result-dir", str(rundir), "--result-filename", fname]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(env, OPENAI_API_KEY=key), timeout=900)
        rc, tail = p.returncode, (p.stdout + p.stderr)[-2500:]
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", ""
    res: dict = {"command": shlex.join(["vllm"] + cmd[3:]), "rc": rc, "wall_s": round(time.time() - t0, 1),
                 "seed": seed, "t_start": round(t0, 3), "t_end": round(time.time(), 3)}
    path = rundir / fname
    if path.exists():
        data = json.loads(path.read_text())
        for k in ("completed", "duration", "request_throughput", "output_throughput", "total_token_throughput",
                  "median_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms",
                  "median_itl_ms", "p99_itl_ms", "median_e2el_ms"):
            if k in data:
                res[k] = round(data[k], 3) if isinstance(data[k], float) else data[k]
    else:
        res["tail"] = tail
    return res


# ---------------------------------------------------------------- caches


def du(path: Path) -> int | None:
    if not path.exists():
        return None
    out = sh(f"du -sb {shlex.quote(str(path))}")
    try:
        return int(out.split()[0])
    except (ValueError, IndexError):
        return None


def cache_dirs(home: Path, eng_env: dict, local: bool = False) -> dict[str, Path]:
    """Every place a vLLM start writes compile artifacts or downloads, by role."""
    xdg = Path(eng_env.get("XDG_CACHE_HOME") or home / ".cache")
    dirs = {
        "vllm_cache_root": Path(eng_env.get("VLLM_CACHE_ROOT") or xdg / "vllm"),
        "huggingface": Path(eng_env.get("HF_HOME") or xdg / "huggingface"),
        "triton": Path(eng_env.get("TRITON_CACHE_DIR") or home / ".triton"),
        "torchinductor": Path(eng_env.get("TORCHINDUCTOR_CACHE_DIR")
                              or (home / ".torchinductor" if local else f"/tmp/torchinductor_{getpass.getuser()}")),
        "flashinfer": Path(eng_env.get("FLASHINFER_WORKSPACE_BASE") or xdg / "flashinfer"),
        "nv_compute_cache": Path(eng_env.get("CUDA_CACHE_PATH") or home / ".nv"),
    }
    if xdg.exists():
        for child in xdg.iterdir():
            if child.is_dir() and child not in dirs.values():
                dirs[f"xdg_cache/{child.name}"] = child
    return dirs


def prepare_caches(mode: str, home: Path, last_env: dict, aside: Path, local: bool) -> dict:
    """cold: remove every compile cache; warm: keep vLLM's cache root and caches the run block sets itself
    (the rest moved aside); warmall: keep everything."""
    dirs = cache_dirs(home, last_env, local)
    sizes = {k: du(v) for k, v in dirs.items()}
    acted: dict = {}
    if mode == "warmall":
        return {"sizes_before": sizes, "kept": list(dirs)}
    configured = {k for k in CACHE_ENV if k in last_env}
    role_env = {"triton": "TRITON_CACHE_DIR", "torchinductor": "TORCHINDUCTOR_CACHE_DIR",
                "flashinfer": "FLASHINFER_WORKSPACE_BASE", "nv_compute_cache": "CUDA_CACHE_PATH"}
    vroot = dirs["vllm_cache_root"]
    for role, path in dirs.items():
        if role == "huggingface" or not path.exists():
            continue
        if mode == "warm":
            if role == "vllm_cache_root" or role_env.get(role) in configured or vroot in path.parents:
                acted[role] = "kept"
                continue
            dest = aside / role.replace("/", "_")
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(dest))
            acted[role] = f"moved aside ({sizes[role]} B)"
        else:
            shutil.rmtree(path, ignore_errors=True)
            acted[role] = "removed"
    if mode == "cold" and not local:
        for p in Path("/tmp").glob("torchinductor_*"):
            shutil.rmtree(p, ignore_errors=True)
    return {"sizes_before": sizes, "actions": acted}


# ---------------------------------------------------------------- one step


def skypilot_env(base: dict, yaml_text: str, home: Path, key: str, extra_path: str = "") -> dict:
    env = dict(base)
    env.update(yaml_envs(yaml_text))
    env.update({"HOME": str(home), "USER": env.get("USER", "root"), "VLLM_API_KEY": key,
                "SKYPILOT_NUM_GPUS_PER_NODE": str(NUM_GPUS), "SKYPILOT_NODE_RANK": "0", "SKYPILOT_NUM_NODES": "1",
                "SKYPILOT_NODE_IPS": "127.0.0.1", "SKYPILOT_TASK_ID": "node-proof", "PYTHONUNBUFFERED": "1",
                "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    for k in ("PYTHONPATH", "VIRTUAL_ENV") + CACHE_ENV:
        env.pop(k, None)
    if extra_path:
        env["PATH"] = extra_path + ":" + env["PATH"]
    return env


def add_flags(run_script: str, flags: list[str]) -> str:
    if not flags:
        return run_script
    lines = run_script.splitlines()
    hits = [i for i, ln in enumerate(lines) if re.search(r"\bvllm serve\b", ln)]
    if len(hits) != 1:
        raise SystemExit(f"expected one `vllm serve` line in the run block, found {len(hits)}")
    i = hits[0]
    m = re.search(r"\s+(?:\d?>|\||&\s*$)", lines[i])  # before the first redirection, pipe or final &
    cut = m.start() if m else len(lines[i])
    lines[i] = lines[i][:cut] + " " + shlex.join(flags) + lines[i][cut:]
    return "\n".join(lines) + "\n"


def with_port(run_script: str, port: int) -> str:
    """A second lane's engine cannot also listen on 8000: its run block gets PORT in place of 8000 (the
    engine's --port and the block's own /health and /metrics URLs); nothing else changes."""
    return run_script if port == 8000 else re.sub(r"(?<=[\s:])8000\b", str(port), run_script)


CACHE_KEY = re.compile(r"cache_restore\s+'?([^'\s]+)'?")


def cache_key_of(yaml_text: str) -> str | None:
    m = CACHE_KEY.search(yaml_block(yaml_text, "run"))
    return m.group(1) if m else None


def seed_bucket(bucket: Path, yaml_text: str, seed_yaml: str) -> dict:
    """`seeded`: before a start-up flag cell, the lane's bucket gets, under the cell's own cache key, a copy of
    what the default recipe's starts saved there: every cell starts from the same compile caches (Triton,
    FlashInfer, inductor and vLLM's own, which keys its torch.compile artifacts by config), whatever ran
    before it on the lane."""
    key, default = cache_key_of(yaml_text), cache_key_of(seed_yaml)
    if not key or not default:
        return {"error": "no cache_restore key in the run block (render with --cache)"}
    src, dst = bucket / "compiled" / default, bucket / "compiled" / key
    if not src.is_dir():
        return {"error": f"nothing saved under the default key {default}"}
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return {"from": default, "to": key, "bytes": du(dst)}


def bucket_listing(bucket: Path) -> dict:
    out = {}
    for kind in ("weights", "compiled"):
        for done in sorted((bucket / kind).rglob(".done")) if (bucket / kind).is_dir() else []:
            out[str(done.parent.relative_to(bucket))] = du(done.parent)
    return out


def drop_page_cache() -> str:
    """Every start of a round reads Python packages from disk as a fresh node would."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "dropped"
    except OSError as exc:
        return f"not dropped: {exc}"


def barrier(d: Path, step: str, lane: int, lanes: int, drop: bool, local: bool) -> dict:
    """Lanes start each step together (same contention for both cells of a round); lane 0 drops the page
    cache once all have arrived. A lane whose driver has exited is not waited for."""
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{step}.{lane}").write_text(str(time.time()))
    t = time.time()
    def here(i: int) -> bool:
        return (d / f"{step}.{i}").exists() or (d / f"exited.{i}").exists()
    while time.time() - t < 900 and not all(here(i) for i in range(lanes)):
        time.sleep(0.5)
    info: dict = {"waited_s": round(time.time() - t, 1)}
    if lane == 0:
        info["page_cache"] = drop_page_cache() if drop and not local else "kept"
        (d / f"{step}.go").write_text(json.dumps(info))
    else:
        while time.time() - t < 960 and not (d / f"{step}.go").exists() and not (d / "exited.0").exists():
            time.sleep(0.5)
        try:
            info.update(json.loads((d / f"{step}.go").read_text()))
        except (OSError, ValueError):
            info["go"] = "missing"
    return info


NODE_MODES = ("node-cold", "node-warm", "seeded", "bare")
REVISION = re.compile(r"--revision (\S+)")


def bare_run_block(yaml_text: str, model: str) -> str:
    """`vllm serve MODEL` with vLLM's defaults on the node setup prepared (only --revision, which the offline
    Hub cache needs, and the dummy weights): the baseline our flags are compared with."""
    m = REVISION.search(yaml_block(yaml_text, "run"))
    rev = f" --revision {m.group(1)}" if m else ""
    return ("set -uo pipefail\n"
            'source "$HOME/gptoss-sky/vllm-venv/bin/activate"\n'
            # the Hub cache setup filled (the node's fixed path, as the run block sees it)
            'export TIKTOKEN_ENCODINGS_BASE="$HOME/gptoss-sky/tiktoken" HF_HUB_OFFLINE=1'
            ' HF_HUB_CACHE="$HOME/gptoss-sky/hf-hub"\n'
            'echo "gptoss-sky phase engine_start $(date +%s)"\n'
            f"vllm serve openai/gpt-oss-{model}{rev} --load-format dummy --port 8000\n")


# Compile caches a fresh node would not have that live outside HOME (or under the real user's home, for
# tools that read it from the password database instead of $HOME).
OUTSIDE_HOME = ("/tmp/torchinductor_*", "/root/.triton", "/root/.cache/vllm", "/root/.cache/flashinfer",
                "/root/.cache/torch_extensions", "/root/.nv")


def clear_outside_home(local: bool) -> dict:
    """Remove them before a node step (sizes kept in the record: anything found there leaked between steps)."""
    if local:
        return {}
    found: dict = {}
    for pattern in OUTSIDE_HOME:
        for path in Path("/").glob(pattern.lstrip("/")):
            found[str(path)] = du(path)
            shutil.rmtree(path, ignore_errors=True)
    return found


def node_root(ctx: dict) -> Path:
    """The node's fixed path as the run block sees it (GPTOSS_NODE_ROOT overrides it, as in the tests)."""
    return Path(ctx["base_env"].get("GPTOSS_NODE_ROOT") or "/var/tmp/gptoss-sky")


def keep_ninja_logs(home: Path, fixed: Path, rundir: Path) -> dict:
    """FlashInfer's JIT builds run ninja on every start; its .ninja_log says what was compiled and how long
    each object took (start and end ms), so a rebuild shows even though no log line names it."""
    out: dict = {}
    roots = [home, fixed]
    seen: set = set()
    for root in roots:
        for log_path in sorted(Path(root).rglob(".ninja_log")) if Path(root).exists() else []:
            real = log_path.resolve()
            if real in seen:
                continue
            seen.add(real)
            rel = str(log_path.relative_to(root)).replace("/", "__")
            try:
                text = real.read_text()
            except OSError:
                continue
            (rundir / f"ninja_log.{rel}.txt").write_text(text)
            lines = [ln.split("\t") for ln in text.splitlines() if ln and not ln.startswith("#")]
            out[str(real)] = {"entries": len(lines),
                              "build_ms": [int(x[1]) - int(x[0]) for x in lines if len(x) >= 4]}
    return out


def served_name(run_script: str, model: str) -> str:
    m = re.search(r"--served-model-name (\S+)", run_script)
    return m.group(1) if m else f"openai/gpt-oss-{model}"


def run_step(spec: list[str], ctx: dict) -> dict:
    name, model, mode, tasks = spec[:4]
    # ENV:K=V items are environment for the run block (as `gptoss-sky up --env K=V` gives SkyPilot's job);
    # the rest are engine flags added to the rendered command
    flags = [f for f in spec[4:] if not f.startswith("ENV:")]
    step_env = dict(f[4:].split("=", 1) for f in spec[4:] if f.startswith("ENV:"))
    tasks_l = [t for t in tasks.split("+") if t and t != "none"]
    rundir = ctx["out"] / name
    rundir.mkdir(parents=True, exist_ok=True)
    yaml_text = (ctx["yaml_dir"] / f"{model}.yaml").read_text()
    home = Path(f"/root/node-{model}") if not ctx["local"] else ctx["out"] / f"home-{model}"
    key = ctx["key"]
    rec: dict = {"step": name, "model": model, "cache": mode, "tasks": tasks_l, "extra_flags": flags,
                 "extra_env": step_env,
                 "lane": ctx["lane"], "port": PORT, "barrier": ctx.get("barrier_info"),
                 "started": time.strftime("%FT%TZ", time.gmtime())}
    node_env: dict = {}
    if mode in NODE_MODES:
        rec["outside_home"] = clear_outside_home(ctx["local"])
        # a new machine: nothing at the node's fixed path either (setup makes it and links ~/gptoss-sky to it)
        fixed = node_root(ctx)
        if fixed.is_symlink():
            fixed.unlink()
        shutil.rmtree(fixed, ignore_errors=True)
    if mode in ("node-cold", "node-warm", "seeded"):
        # A new node per step (an emptied HOME: nothing compiled, nothing downloaded) at the SAME path every
        # step, as replicas of one service on one image share their HOME path: vLLM's torch.compile cache key
        # holds the model's path under HOME, and FlashInfer's JIT rebuilds when its build folder moves (both
        # missed in the 2026-11-30 run, which gave every step its own HOME). The lane's bucket is the --cache
        # bucket (GPTOSS_CACHE_DIR): emptied for node-cold, kept for node-warm, seeded for `seeded`.
        home = ctx["lane_root"] / "node"
        shutil.rmtree(home, ignore_errors=True)
        bucket = ctx["lane_root"] / "bucket"
        if mode == "node-cold":
            shutil.rmtree(bucket, ignore_errors=True)
        bucket.mkdir(parents=True, exist_ok=True)
        if mode == "seeded":
            rec["seeded"] = seed_bucket(bucket, yaml_text, (ctx["yaml_dir"] / f"{ctx['seed_yaml']}.yaml").read_text())
        rec["cache_key"] = cache_key_of(yaml_text)
        rec["bucket_before"] = bucket_listing(bucket)
        node_env = {"GPTOSS_CACHE_DIR": str(bucket)}
    elif mode == "bare":
        # Bare `vllm serve` on a new node at the same HOME path: setup from the task (venv, Hub cache,
        # tiktoken), then the engine with vLLM's defaults in place of the run block.
        home = ctx["lane_root"] / "node"
        shutil.rmtree(home, ignore_errors=True)
    else:
        rec["cache_prep"] = prepare_caches(mode, home, ctx["last_env"].get(model, {}), ctx["aside"] / model,
                                           ctx["local"])
    rec["home"] = str(home)
    fresh = not (home / "gptoss-sky" / "vllm-venv" / "bin" / "activate").exists()
    if fresh:
        home.mkdir(parents=True, exist_ok=True)
        stub_dir = rundir / "stubs"
        make_setup_stubs(stub_dir, ctx["python"])
        rec["file_mounts"] = apply_file_mounts(yaml_text, home, ctx["cwd"])
        env = skypilot_env(ctx["base_env"], yaml_text, home, key, str(stub_dir))
        env.update({"NODE_PROOF_STAGE": str(ctx["stage"]), "NODE_PROOF_STUB_LOG": str(rundir / "stubs.jsonl"),
                    "NODE_PROOF_SITE": str(ctx["site"]), "NODE_PROOF_DRIVER_DIR": str(Path(__file__).resolve().parent),
                    "NODE_PROOF_COMMIT": ctx["commits"][model.split("-")[0]], **node_env})
        setup = Block(yaml_block(yaml_text, "setup"), rundir / "setup.sh", rundir / "setup.log", env, ctx["cwd"])
        src = setup.wait(600)
        rec["setup"] = {"rc": src, "wall_s": round(time.time() - setup.t0, 1),
                        "markers": phases_of(setup.lines, setup.t0, None)["markers"],
                        "stub_calls": [json.loads(x) for x in (rundir / "stubs.jsonl").read_text().splitlines()]
                        if (rundir / "stubs.jsonl").exists() else []}
        setup.stop()
        hub = next((h / f"models--openai--gpt-oss-{model}" for h in (node_root(ctx) / "hf-hub",
                    home / "gptoss-sky" / "hf-hub", home / ".cache" / "huggingface" / "hub")
                    if (h / f"models--openai--gpt-oss-{model}").exists()), home)
        rec["hf_cache"] = sh(f"cd {hub} 2>/dev/null && find . -printf '%p %l\\n' | sort")
        entries = rec["hf_cache"].count("\n") + 1
        log(f"{name}: setup rc={src} in {rec['setup']['wall_s']}s; hf cache: {entries} entries")
    run_script = with_port(add_flags(bare_run_block(yaml_text, model) if mode == "bare"
                                     else yaml_block(yaml_text, "run"), flags), PORT)
    env = skypilot_env(ctx["base_env"], yaml_text, home, key)
    env.update(node_env)
    env.update(step_env)
    if not port_free(30):
        rec["error"] = f"port {PORT} still answering before start"
        return rec
    rec["gpu_mem_before_mib"] = gpu_mem_used_mib()
    block = Block(run_script, rundir / "run.sh", rundir / "run.log", env, ctx["cwd"])
    log(f"{name}: run block started ({mode} cache{', flags ' + ' '.join(flags) if flags else ''})")
    ready_t = None
    while time.time() - block.t0 < ctx["startup_timeout"]:
        if block.proc.poll() is not None:
            break
        if call("GET", "/health", timeout=2)[0] == 200:
            ready_t = time.time()
            break
        time.sleep(0.5)
    rec["phases"] = phases_of(block.lines, block.t0, ready_t)
    rec["engine_env"] = engine_env(block)
    if ready_t is None:
        rec["error"] = f"run block exited rc={block.proc.returncode}" if block.proc.poll() is not None \
            else f"no /health 200 after {ctx['startup_timeout']} s"
        rec["log_tail"] = [ln for _, ln in block.lines[-60:]]
        rec["stop"] = block.stop()
        log(f"{name}: FAILED {rec['error']}")
        return rec
    log(f"{name}: /health 200 after {rec['phases']['ready_s']} s")
    ctx["last_env"][model] = rec["engine_env"]
    served = served_name(run_script, model)
    penv = dict(ctx["base_env"], PYTHONPATH=f"{ctx['site']}:{ctx['cwd']}", GPTOSS_SKY_API_KEY=key,
                TIKTOKEN_ENCODINGS_BASE=str(ctx["stage"] / "tiktoken"), HF_HUB_OFFLINE="1", HOME=str(home))
    try:
        if "probes" in tasks_l:
            rec["auth"] = auth_probes(key, served)
            rec["key_exposure"] = key_exposure(key, block)
            log(f"{name}: auth probes pass={rec['auth']['pass']} "
                f"({len(rec['auth']['probes'])} paths; answered without key: "
                f"{[(r['method'], r['path'], r['status']) for r in rec['auth']['answered_without_key']]})")
        if "smoke" in tasks_l:
            r = run_cli(["smoke", "--endpoint", BASE, "--json", "--timeout", "120"], penv, ctx["cwd"], 600,
                        rundir / "smoke.json")
            checks = (r.get("result") or {}).get("checks", [])
            rec["smoke"] = {"rc": r["rc"], "wall_s": r["wall_s"],
                            "checks": {c.get("name"): c.get("ok") for c in checks if isinstance(c, dict)}}
            log(f"{name}: smoke rc={r['rc']} {rec['smoke']['checks']}")
        if "bench" in tasks_l:
            with MetricsSampler(key, rundir / "metrics.jsonl", ctx["metrics_period"]) as ms, \
                    StatusPoller(key, ctx["cwd"]) as sp:
                time.sleep(2 * ctx["metrics_period"])  # idle samples first
                r = run_cli(["bench", "--endpoint", BASE, "--concurrency", str(ctx["conc"]), "--requests",
                             str(ctx["prompts"]), "--input-len", "1024", "--output-len", "512", "--json"],
                            penv, ctx["cwd"], 900, rundir / "bench.json")
                time.sleep(3 * ctx["metrics_period"])
            lvl = ((r.get("result") or {}).get("levels") or [{}])[0]
            tps = lvl.get("output_tokens_per_s")
            rec["bench"] = {"rc": r["rc"], "wall_s": r["wall_s"], "level": lvl, "command": r["command"]}
            # The bench's own window is its requests' run; the subprocess adds start-up on both ends.
            dur = lvl.get("duration_s") or lvl.get("wall_s")
            t_end = r["t_end"] - 0.5
            t_start = (t_end - dur) if dur else r["t_start"]
            rec["status_check"] = metrics_summary(ms.samples, t_start, t_end, tps)
            rec["status_check"]["bench_window"] = [round(t_start, 3), round(t_end, 3)]
            rec["status_readings"] = {"error": sp.error, "readings": sp.readings}
            inside = [x for x in sp.readings if x["t_start"] >= t_start and x["t_end"] <= t_end
                      and x.get("tokens_per_s") is not None]
            if inside and tps:
                rec["status_check"]["status_2s_tokens_per_s"] = [x["tokens_per_s"] for x in inside]
                rec["status_check"]["status_2s_median_vs_bench"] = round(
                    sorted(x["tokens_per_s"] for x in inside)[len(inside) // 2] / tps - 1, 4)
            log(f"{name}: gptoss-sky bench c={ctx['conc']} rc={r['rc']} {tps} tok/s; /metrics "
                f"{rec['status_check']['metrics_tokens_per_s_whole_window']} tok/s (whole), 10s windows "
                f"{rec['status_check']['metrics_tokens_per_s_10s_windows']}; running max "
                f"{rec['status_check']['running_max_under_load']}, waiting max "
                f"{rec['status_check']['waiting_max_under_load']}, kv max {rec['status_check']['kv_max_under_load']}")
        if "bench2" in tasks_l:  # a second load on the same server: steady state, after the first load's JIT
            r = run_cli(["bench", "--endpoint", BASE, "--concurrency", str(ctx["conc"]), "--requests",
                         str(ctx["prompts"]), "--input-len", "1024", "--output-len", "512", "--json"],
                        penv, ctx["cwd"], 900, rundir / "bench2.json")
            lvl = ((r.get("result") or {}).get("levels") or [{}])[0]
            rec["bench2"] = {"rc": r["rc"], "wall_s": r["wall_s"], "level": lvl, "command": r["command"],
                             "seed": (r.get("result") or {}).get("seed")}
            log(f"{name}: second load c={ctx['conc']} rc={r['rc']} {lvl.get('output_tokens_per_s')} tok/s")
        if "vbench" in tasks_l:
            seed = random.SystemRandom().randrange(1, 2**31)
            vb = vllm_bench(served, ctx["stage"] / "tok", key, penv, rundir, ctx["conc"], ctx["prompts"], seed)
            rec["vbench"] = vb
            log(f"{name}: vllm bench c={ctx['conc']} seed={seed} rc={vb['rc']} {vb.get('output_throughput')} tok/s "
                f"TTFT p50 {vb.get('median_ttft_ms')} TPOT p50 {vb.get('median_tpot_ms')}")
    finally:
        (rundir / "record.json").write_text(json.dumps(rec, indent=1))
        rec["stop"] = block.stop()
        rec["stop"]["gpu_free_wait_s"] = wait_gpu_free()
        # Again now that the log is complete (a buffering log filter can hold lines until the engine exits).
        at_ready = rec["phases"]
        rec["phases"] = phases_of(block.lines, block.t0, ready_t)
        rec["phases"]["markers_seen_by_ready"] = sorted(at_ready["markers"])
        rec["phases"]["milestones_seen_by_ready"] = sorted(at_ready["milestones_s"])
        rec["phases_after_stop"] = {k: v for k, v in rec["phases"]["markers"].items()
                                    if k not in at_ready["markers"]}
        rec["log_lines"] = len(block.lines)
        rec["cache_sizes_after"] = {k: du(v) for k, v in
                                    cache_dirs(home, rec.get("engine_env", {}), ctx["local"]).items()}
        if node_env:
            rec["bucket_after"] = bucket_listing(Path(node_env["GPTOSS_CACHE_DIR"]))
        rec["ninja_logs"] = keep_ninja_logs(home, node_root(ctx), rundir)
        rec["finished"] = time.strftime("%FT%TZ", time.gmtime())
        (rundir / "record.json").write_text(json.dumps(rec, indent=1))
    return rec


def summary_line(rec: dict) -> str:
    ph = rec.get("phases", {})
    parts = [f"{rec['step']}: {rec['cache']}", f"ready {ph.get('ready_s')} s"]
    n = ph.get("engine_numbers", {})
    for k in ("model_loading", "torch_compile_total_s", "compile_cache_load_s", "graph_capture_s", "engine_init_s"):
        if k in n:
            parts.append(f"{k}={n[k]}")
    if "bench" in rec:
        parts.append(f"bench {rec['bench']['level'].get('output_tokens_per_s')} tok/s")
    if "bench2" in rec:
        parts.append(f"second load {rec['bench2']['level'].get('output_tokens_per_s')} tok/s")
    if "vbench" in rec:
        parts.append(f"vbench {rec['vbench'].get('output_throughput')} tok/s")
    if "error" in rec:
        parts.append("ERROR " + rec["error"])
    return " | ".join(parts)


def versions(site: Path) -> dict:
    code = ("import sys, json, importlib\nout={'python': sys.version.split()[0]}\n"
            "for m in ('torch','vllm','transformers','huggingface_hub','triton','flashinfer','tiktoken','openai',"
            "'click','rich','jinja2','httpx','yaml','prometheus_client'):\n"
            "  try: out[m]=getattr(importlib.import_module(m),'__version__','?')\n"
            "  except Exception as e: out[m]='MISSING '+type(e).__name__\n"
            "print(json.dumps(out))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(site)), timeout=300)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = {"error": p.stderr[-500:]}
    out["nvidia_smi"] = sh("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader")
    out["uname"] = sh("uname -r")
    out["cpus"] = os.cpu_count()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--yaml-dir", type=Path, required=True, help="20b.yaml, 120b.yaml: rendered task YAMLs")
    ap.add_argument("--stage", type=Path, required=True, help="models/, tok/, tiktoken/ of the shapes tarball")
    ap.add_argument("--site", type=Path, required=True, help="the extracted vLLM 0.26.0 site")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--queue", type=Path, required=True)
    ap.add_argument("--commits", default="20b=6cee5e81ee83917806bbde320786a8fb61efebee,"
                                          "120b=b5c939de8f754692c1647ca79fbf85e8c1e70f8a")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--metrics-period", type=float, default=2.0)
    ap.add_argument("--startup-timeout", type=int, default=900)
    ap.add_argument("--local", action="store_true", help="stub check on a machine without a GPU")
    ap.add_argument("--lane", type=int, default=None,
                    help="run on GPU N (CUDA_VISIBLE_DEVICES), port 8000+N, homes and bucket under /root/laneN")
    ap.add_argument("--lanes", type=int, default=1, help="how many lanes run side by side (for --barrier)")
    ap.add_argument("--barrier", type=Path, default=None, help="a folder the lanes meet in before each step")
    ap.add_argument("--drop-page-cache", action="store_true",
                    help="one lane: drop the page cache before every new-node step (as a fresh node reads from disk)")
    ap.add_argument("--seed-yaml", default="20b", help="`seeded` steps copy this task's saved cache")
    ap.add_argument("--gpus", type=int, default=1,
                    help="GPUs of the node (SKYPILOT_NUM_GPUS_PER_NODE; all visible): 2 for the TP2 tasks (TP2.md)")
    args = ap.parse_args()
    global PORT, BASE, GPU_INDEX, NUM_GPUS
    NUM_GPUS = args.gpus
    if args.gpus > 1 and args.lane is not None:
        raise SystemExit("--gpus N runs one node with every GPU visible: no --lane")
    lane = args.lane or 0
    if args.lane is not None:
        PORT, BASE, GPU_INDEX = 8000 + lane, f"http://127.0.0.1:{8000 + lane}", str(lane)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = {"yaml_dir": args.yaml_dir.resolve(), "stage": args.stage.resolve(), "site": args.site.resolve(),
           "out": args.out.resolve(), "python": sys.executable, "cwd": Path.cwd(), "local": args.local,
           "key": "gpu-proof-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24],
           "commits": dict(kv.split("=") for kv in args.commits.split(",")), "aside": Path("/root/aside")
           if not args.local else args.out / "aside", "conc": args.concurrency, "prompts": args.prompts,
           "metrics_period": args.metrics_period, "startup_timeout": args.startup_timeout, "last_env": {},
           "lane": args.lane, "seed_yaml": args.seed_yaml,
           "lane_root": (args.out.resolve() if args.local else Path("/root")) / f"lane{lane}"}
    ctx["base_env"] = {k: v for k, v in os.environ.items() if k not in ("VLLM_API_KEY", "OPENAI_API_KEY")}
    if args.lane is not None:
        ctx["base_env"]["CUDA_VISIBLE_DEVICES"] = str(lane)
        # each lane is a machine of its own: its own fixed node path (one machine has one /var/tmp/gptoss-sky)
        ctx["base_env"]["GPTOSS_NODE_ROOT"] = f"/var/tmp/gptoss-sky-lane{lane}" if not args.local \
            else str(ctx["lane_root"] / "var-tmp-gptoss-sky")
        ctx["aside"] = ctx["lane_root"] / "aside"
    v = versions(ctx["site"])
    (ctx["out"] / "versions.json").write_text(json.dumps(v, indent=1))
    log(f"versions: {v}")
    done: set[str] = set()
    records = []
    while True:
        spec = None
        for line in args.queue.read_text().splitlines() if args.queue.exists() else []:
            parts = shlex.split(line.split("#", 1)[0])
            if len(parts) >= 4 and parts[0] not in done:
                spec = parts
                break
        if spec is None:
            break
        done.add(spec[0])
        if args.barrier:
            ctx["barrier_info"] = barrier(args.barrier, spec[0], lane, args.lanes,
                                          spec[2] in ("node-cold", "node-warm"), args.local)
        elif args.drop_page_cache and spec[2] in NODE_MODES and not args.local:
            ctx["barrier_info"] = {"page_cache": drop_page_cache()}
        log(f"== step {' '.join(spec)}")
        try:
            rec = run_step(spec, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken step must not lose the others
            import traceback  # noqa: PLC0415
            rec = {"step": spec[0], "cache": spec[2], "error": repr(exc), "traceback": traceback.format_exc()}
            (ctx["out"] / spec[0]).mkdir(exist_ok=True)
            (ctx["out"] / spec[0] / "record.json").write_text(json.dumps(rec, indent=1))
        records.append(summary_line(rec))
        log("SUMMARY " + records[-1])
        (ctx["out"] / "summary.txt").write_text("\n".join(records) + "\n")
    if args.barrier:
        (args.barrier / f"exited.{lane}").write_text(str(time.time()))
    log("ALL DONE")


if __name__ == "__main__":
    main()
