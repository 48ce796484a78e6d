"""A GPU node as SkyPilot gives it to the `setup:` and `run:` blocks, for real bash to run them in.

Temporary HOME, SkyPilot's environment (SKYPILOT_NUM_GPUS_PER_NODE, the task's envs, secrets as env), and
stub executables on PATH that record their argv and environment (one JSON file per call):
  nvidia-smi  prints the GPU's real name string, once per GPU (bash; it records nothing)
  uv          `uv venv DIR` makes a venv whose bin/ holds the engine stubs; `uv pip install` records the
              packages and marks them installed (setup's version check then skips the install)
  hf          `hf download REPO --revision SHA ...` lays the Hugging Face cache out as huggingface_hub does:
              blobs/<hash>, snapshots/SHA/<file> -> ../../blobs/<hash>, and no refs/ for a commit revision
  curl        `-o FILE URL` writes FILE; .../health answers once the engine is ready; .../metrics prints
              the node's metrics file (the header file of `-H @FILE` is recorded with its mode)
  vllm, python (in the venv)  the engine: record, print the log lines given, mark ready, then exit with
              the code given or serve until SIGTERM; "compiles" (writes a kernel) into each compile cache
              folder the environment names unless one is there; with NODESIM_LATE_KERNEL=SECONDS one more
              into TRITON_CACHE_DIR that long after ready (state/compiled-late says it had to).
              `python -c "import ..."` is setup's check. NODESIM_ENGINE=worker-dies: a child "worker" prints
              a CUDA error and exits 1, the engine logs vLLM's "Worker proc ... died unexpectedly" and serves
              nothing (never ready) until SIGTERM.
The stubs use this interpreter (sys.executable); nothing here talks to a network or a GPU.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUB = r'''#!{python}
"""nodesim stub: records the call, then behaves as its name says (tests/nodesim.py)."""
import hashlib, json, os, signal, subprocess, sys, threading, time
from pathlib import Path

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
calls = Path(os.environ["NODESIM_CALLS"])
state = Path(os.environ["NODESIM_STATE"])
record = {{"name": name, "argv": args, "env": dict(os.environ), "files": {{}}}}


def save():
    path = calls / f"{{time.monotonic_ns():020d}}-{{os.getpid()}}-{{name}}.json"
    path.write_text(json.dumps(record))


def remember(path):
    p = Path(os.path.expandvars(os.path.expanduser(path)))
    if p.is_file():
        record["files"][str(path)] = {{"text": p.read_text(), "mode": oct(p.stat().st_mode & 0o777)}}


COMPILE_CACHES = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE")


def compile_late(delay):
    """One more kernel, in a folder whose name has a space, `delay` seconds after ready, unless it is there."""
    time.sleep(delay)
    kernel = Path(os.environ["TRITON_CACHE_DIR"]) / "late topk" / "_topk_forward.cubin"
    if not kernel.exists():
        kernel.parent.mkdir(parents=True, exist_ok=True)
        kernel.write_text("compiled late for " + " ".join(args))
        (state / "compiled-late").touch()


def serve_until_stopped():
    def stop(signum, frame):
        (state / "engine-stopped").write_text(str(signum))
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + 60  # never outlive a failed test by more than a minute
    while time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(124)


def worker_dies():
    """vLLM 0.26.0 on 2x H200 without NVLink multicast: a worker process dies in memory profiling, the engine
    core logs it, and the API server lives on with /health never answering."""
    worker = subprocess.Popen([sys.executable, "-c", (
        "import sys; print('(Worker_TP1 pid=2) RuntimeError: CUDA error: CUBLAS_STATUS_INTERNAL_ERROR when "
        "calling cublasGemmEx(handle, opa, opb, m, n, k)', flush=True); sys.exit(1)")])
    worker.wait()
    print(f"(EngineCore pid={{os.getpid()}}) ERROR [multiproc_executor.py:316] Worker proc VllmWorker-1 died "
          f"unexpectedly (exit code: {{worker.returncode}}), shutting down executor.", flush=True)
    (state / "worker-died").touch()
    serve_until_stopped()


def engine():
    if "--config" in args:
        remember(args[args.index("--config") + 1])
    # "compile": write a kernel into every compile cache the environment points at, unless one is there
    record["compiled"] = []
    for var in COMPILE_CACHES:
        if var in os.environ:
            kernel = Path(os.environ[var]) / "kernel.bin"
            if not kernel.exists():
                kernel.parent.mkdir(parents=True, exist_ok=True)
                kernel.write_text("compiled for " + " ".join(args))
                record["compiled"].append(var)
    save()
    log = os.environ.get("NODESIM_ENGINE_LOG", "")
    for line in log.splitlines():
        print(line, flush=True)
    mode = os.environ.get("NODESIM_ENGINE", "exit:0")
    if mode == "worker-dies":
        worker_dies()
    (state / "ready").touch()
    late = os.environ.get("NODESIM_LATE_KERNEL")
    if late and "TRITON_CACHE_DIR" in os.environ:  # JIT after /health, as vLLM's first requests make Triton do
        threading.Thread(target=compile_late, args=(float(late),), daemon=True).start()
    if mode.startswith("exit:"):
        sys.exit(int(mode.split(":")[1]))
    if mode.startswith("serve-for:"):  # answer /health for a while, then exit 0
        time.sleep(float(mode.split(":")[1]))
        sys.exit(0)
    serve_until_stopped()


if name == "uv":
    save()
    if args[:1] == ["venv"]:
        venv = Path(args[-1])
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        (venv / "bin" / "activate").write_text(
            f'export VIRTUAL_ENV="{{venv}}"\nexport PATH="$VIRTUAL_ENV/bin:$PATH"\n')
        for tool in ("python", "vllm"):
            target = venv / "bin" / tool
            target.write_text(Path(__file__).read_text())
            target.chmod(0o755)
    elif args[:2] == ["pip", "install"]:
        (state / "installed").write_text(" ".join(args))
        # as the real uv leaves them: package files stamped with the install's time
        site = Path(args[args.index("--python") + 1]).parent.parent / "lib" / "python3.12" / "site-packages"
        for rel in ("flashinfer/data/csrc/sampling.cu", "flashinfer/sampling.py"):
            (site / rel).parent.mkdir(parents=True, exist_ok=True)
            (site / rel).write_text(f"/* {{rel}} */\n" if rel.endswith(".cu") else f"# {{rel}}\n")
elif name == "hf":
    save()
    assert args[0] == "download", args
    repo, revision = args[1], args[args.index("--revision") + 1]
    include = [args[i + 1] for i, a in enumerate(args) if a == "--include"]
    home = os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface"))
    cache = Path(os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub")))
    folder = cache / ("models--" + repo.replace("/", "--"))
    files = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "chat_template.jinja"]
    if not include:
        files += ["model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors",
                  "model.safetensors.index.json"]
    for f in files:
        body = json.dumps({{"file": f, "repo": repo}}).encode()
        blob = hashlib.sha256(body).hexdigest()
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        (folder / "blobs" / blob).write_bytes(body)
        link = folder / "snapshots" / revision / f
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(os.path.join("..", "..", "blobs", blob))
    print(folder / "snapshots" / revision)
elif name == "curl":
    for i, a in enumerate(args):
        if a == "-H" and args[i + 1].startswith("@"):
            remember(args[i + 1][1:])
    save()
    url = args[-1]
    if "-o" in args:
        out = Path(args[args.index("-o") + 1])
        if str(out) != "/dev/null":
            out.write_text("stub " + url)
    if url.endswith("/health"):
        sys.exit(0 if (state / "ready").exists() else 7)
    if url.endswith("/metrics"):
        metrics = state / "metrics"
        if not (state / "ready").exists():
            sys.exit(7)
        sys.stdout.write(metrics.read_text() if metrics.exists() else "")
elif name == "python" and args[:1] == ["-c"]:
    save()  # setup's "is the engine installed at this version" check
    sys.exit(0 if (state / "installed").exists() else 1)
elif name in ("vllm", "python"):
    engine()
else:
    save()
    sys.exit(f"nodesim: no behaviour for {{name}}")
'''


# What `nvidia-smi --query-gpu=name --format=csv,noheader` prints on each supported part.
NVIDIA_SMI_NAMES = {
    "NVIDIA L4": "L4", "NVIDIA A10G": "A10G", "NVIDIA L40S": "L40S", "NVIDIA L40": "L40",
    "NVIDIA RTX 6000 Ada Generation": "RTX6000-Ada", "NVIDIA A100-SXM4-40GB": "A100",
    "NVIDIA A100-SXM4-80GB": "A100-80GB", "NVIDIA A100 80GB PCIe": "A100-80GB",
    "NVIDIA H100 80GB HBM3": "H100", "NVIDIA H100 PCIe": "H100", "NVIDIA H100 NVL": "H100",
    "NVIDIA H200": "H200", "NVIDIA B200": "B200",
}


NVIDIA_SMI = """#!/usr/bin/env bash
# nodesim stub: `nvidia-smi --query-gpu=name --format=csv,noheader` on NODESIM_GPU_COUNT x NODESIM_GPU_NAME
[ "$*" = "--query-gpu=name --format=csv,noheader" ] || { echo "nodesim nvidia-smi: unexpected $*" >&2; exit 2; }
for _ in $(seq "$NODESIM_GPU_COUNT"); do echo "$NODESIM_GPU_NAME"; done
"""


@dataclass
class Call:
    name: str
    argv: list[str]
    env: dict[str, str]
    files: dict[str, Any]
    compiled: list[str] | None = None  # engines: the compile caches it had to fill


class Node:
    """One simulated node: a HOME, stubs on PATH, and the calls they recorded."""

    def __init__(self, root: Path, gpu_name: str = "NVIDIA H200", gpu_count: int = 1,
                 secrets: dict[str, str] | None = None, envs: dict[str, str] | None = None):
        self.root = root
        self.home = root / "home"
        self.bin = root / "bin"
        self.calls_dir = root / "calls"
        self.state = root / "state"
        # the node's own /var/tmp/gptoss-sky (GPTOSS_NODE_ROOT): one per simulated node, as each machine has one
        self.node_root = root / "var-tmp" / "gptoss-sky"
        for d in (self.home, self.bin, self.calls_dir, self.state, self.node_root.parent):
            d.mkdir(parents=True, exist_ok=True)
        text = STUB.format(python=sys.executable)
        for tool in ("uv", "hf", "curl"):
            (self.bin / tool).write_text(text)
        # bash, not Python: it runs on every start, and a Python start costs ~0.1 s on a busy machine
        (self.bin / "nvidia-smi").write_text(NVIDIA_SMI)
        for path in self.bin.iterdir():
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.gpu_name, self.gpu_count = gpu_name, gpu_count
        self.secrets = dict(secrets or {})
        self.envs = dict(envs or {})

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What SkyPilot's job runner gives the scripts: PATH, HOME, its own variables, envs and secrets."""
        env = {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "GPTOSS_NODE_ROOT": str(self.node_root),
            "LANG": "C.UTF-8",
            "SKYPILOT_NUM_GPUS_PER_NODE": str(self.gpu_count),
            "SKYPILOT_NODE_RANK": "0",
            "SKYPILOT_NUM_NODES": "1",
            "SKYPILOT_TASK_ID": "sky-2026-11-30-00-00-00-000000_gptoss-x_1",
            "NODESIM_CALLS": str(self.calls_dir),
            "NODESIM_STATE": str(self.state),
            "NODESIM_GPU_NAME": self.gpu_name,
            "NODESIM_GPU_COUNT": str(self.gpu_count),
            "GPTOSS_POLL_SECONDS": "0.05",
        }
        env.update(self.envs)
        env.update(self.secrets)
        env.update(extra or {})
        return env

    def start(self, script: str, extra: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a setup/run block with bash as SkyPilot does (a script file; stdout+stderr are the job log),
        in its own process group, so killing the group ends the engine stub and the log filter with bash."""
        path = self.root / f"script-{len(list(self.root.glob('script-*')))}.sh"
        path.write_text(script)
        return subprocess.Popen(["bash", str(path)], cwd=self.home, env=self.environment(extra),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def bash(self, script: str, extra: dict[str, str] | None = None, timeout: float = 30):
        """Run a setup/run block to its end (or kill it past `timeout`)."""
        proc = self.start(script, extra)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"node script ran past {timeout}s; its log:\n{out}") from exc
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)

    def calls(self, name: str | None = None) -> list[Call]:
        out = []
        for path in sorted(self.calls_dir.glob("*.json")):
            data = json.loads(path.read_text())
            if name is None or data["name"] == name:
                out.append(Call(data["name"], data["argv"], data["env"], data["files"], data.get("compiled")))
        return out

    def clear_calls(self) -> None:
        for path in self.calls_dir.glob("*.json"):
            path.unlink()
        (self.state / "ready").unlink(missing_ok=True)
        (self.state / "engine-stopped").unlink(missing_ok=True)
        (self.state / "compiled-late").unlink(missing_ok=True)

    def engine_calls(self) -> list[Call]:
        return [c for c in self.calls() if c.name == "vllm" or (c.name == "python" and c.argv[:1] != ["-c"])]


def phases(log: str) -> list[str]:
    """The phase names in a job log, in order (docs/node-protocol.md)."""
    return [line.split()[2] for line in log.splitlines() if line.startswith("gptoss-sky phase ")]
