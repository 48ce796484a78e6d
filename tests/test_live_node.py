"""End to end with the node side real: `up` renders the task, the seam's fake runs its `setup:` and
`run:` with real bash as SkyPilot would on a node (temporary HOME, SkyPilot's env, the key as a secret,
stub executables for nvidia-smi/uv/hf/curl/vllm), and the job's output is what `tail_logs` yields. The
launch view must follow the markers the real scripts print to "answering" against the local OpenAI
server, and a node that fails must end `up` with the node's own cause and log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from clitools import invoke, missed_failures_time_out
from fakesky import FakeSky
from openai_server import API_KEY

from launcher.sky import state, watch

STUBS = {
    "nvidia-smi": 'echo "NVIDIA A100-SXM4-40GB"\n',
    # uv: `uv venv DIR` makes a venv whose activate only puts DIR/bin first; `uv pip ...` installs nothing.
    "uv": 'echo "uv $*" >> "$STUB_LOG"\n'
          'if [ "$1" = venv ]; then d="${@: -1}"; mkdir -p "$d/bin"\n'
          '  printf \'export VIRTUAL_ENV=%s\\nexport PATH="%s/bin:$PATH"\\n\' "$d" "$d" > "$d/bin/activate"; fi\n',
    "hf": 'echo "hf $*" >> "$STUB_LOG"\n'
          'if [ -n "${STUB_HF_FAIL:-}" ]; then\n'
          '  echo "huggingface_hub.errors.RepositoryNotFoundError: 401" >&2; exit 1\nfi\n',
    # curl: downloads write a placeholder; 127.0.0.1:<engine port> is the local OpenAI server.
    "curl": 'out=""; args=()\n'
            'while [ $# -gt 0 ]; do case "$1" in -o) out="$2"; shift 2;; *) args+=("$1"); shift;; esac; done\n'
            'url="${args[-1]}"\n'
            'case "$url" in http://127.0.0.1:*)\n'
            '  rest="${url#http://127.0.0.1:}"; exec "$REAL_CURL" "${args[@]:0:${#args[@]}-1}" -o "${out:-/dev/null}" '
            '"$ENGINE_URL/${rest#*/}";;\n'
            'esac\n'
            'echo "curl $url" >> "$STUB_LOG"; [ -n "$out" ] && echo placeholder > "$out"; exit 0\n',
    # vllm: the log lines vLLM prints while it starts, then it serves until it is stopped (or crashes).
    "vllm": 'echo "vllm $*" >> "$STUB_LOG"; env > "$STUB_LOG.vllm-env"\n'
            'echo "INFO 11-30 12:00:01 [api_server.py] vLLM API server version 0.0-stub"\n'
            'echo "INFO 11-30 12:00:02 [gpu_model_runner.py] Starting to load model openai/gpt-oss-20b..."\n'
            'sleep 0.3\n'
            'if [ -n "${STUB_CRASH:-}" ]; then echo "torch.OutOfMemoryError: CUDA out of memory" >&2; exit 1; fi\n'
            # a worker that dies in memory profiling while the API server hangs (vLLM 0.26.0 on 2x H200)
            'if [ -n "${STUB_WORKER_DIES:-}" ]; then\n'
            '  bash -c \'echo "(Worker_TP1 pid=7) RuntimeError: CUDA error: an illegal memory access was encountered"; '
            'exit 1\'\n'
            '  echo "(EngineCore pid=6) ERROR Worker proc VllmWorker-1 died unexpectedly (exit code: 1)"\n'
            '  while :; do sleep 1; done\n'
            'fi\n'
            'echo "INFO 11-30 12:00:20 [gpu_model_runner.py] Model loading took 13.7 GiB and 18.2 seconds"\n'
            'sleep 0.3\n'
            'echo "INFO 11-30 12:00:40 [gpu_model_runner.py] Capturing CUDA graphs (mixed prefill-decode): 100%"\n'
            'touch "$HOME/engine-up"\n'
            'while :; do sleep 1; done\n',
}


class NodeRunner(FakeSky):
    """FakeSky whose `launch` runs the task's setup and run with real bash, like SkyPilot's job on a node: the
    job's state and log are that process's. Names SkyPilot does not have raise NotFoundError, as in FakeSky."""

    def __init__(self, server, home: Path, stubs: Path, extra_env=None):
        super().__init__(server.url.removeprefix("http://"))
        self.server = server
        server.config.faults.add("loading")  # /health answers 503 until the stub engine is up
        self.home, self.stubs, self.extra_env = home, stubs, extra_env or {}
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.status: str | None = None
        self.proc: subprocess.Popen | None = None

    def launch(self, config, cluster_name, *, secrets, envs, idle_minutes, down, output=None, on_request=None):
        job_id = super().launch(config, cluster_name, secrets=secrets, envs=envs, idle_minutes=idle_minutes,
                                down=down, on_request=on_request)
        env = {"PATH": f"{self.stubs}:{os.environ['PATH']}", "HOME": str(self.home), "LANG": "C.UTF-8",
               "GPTOSS_NODE_ROOT": str(self.home.parent / "var-tmp-gptoss-sky"),  # the node's own, not this machine's
               "SKYPILOT_NUM_GPUS_PER_NODE": "1", "STUB_LOG": str(self.home / "stub.log"),
               "REAL_CURL": "/usr/bin/curl", "ENGINE_URL": f"http://{self.endpoint_value}",
               "GPTOSS_POLL_SECONDS": "0.2", **{k: str(v) for k, v in (config.get("envs") or {}).items()},
               **envs, **secrets, **self.extra_env}
        # SkyPilot runs setup, then run, as one job; its log prefixes each part's lines.
        script = ('bash -c "$GPTOSS_SETUP" 2>&1 | sed -u "s/^/(setup pid=$$) /"; s=${PIPESTATUS[0]}\n'
                  'if [ "$s" != 0 ]; then echo "__setup_failed__ $s"; exit "$s"; fi\n'
                  'echo "__running__"\n'
                  'bash -c "$GPTOSS_RUN" 2>&1 | sed -u "s/^/(task, pid=$$) /"; exit "${PIPESTATUS[0]}"\n')
        env |= {"GPTOSS_SETUP": config["setup"], "GPTOSS_RUN": config["run"]}
        self.status = "SETTING_UP"
        self.proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._engine_up, daemon=True).start()
        return job_id

    def _engine_up(self):
        """The local server stands in for the engine: it answers once the stub engine says it is up."""
        while self.proc.poll() is None:
            if (self.home / "engine-up").exists():
                self.server.config.faults.discard("loading")
                return
            time.sleep(0.05)

    def _read(self):
        failed_setup = False
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("__setup_failed__"):
                failed_setup = True
                continue
            if line == "__running__":
                self.status = "RUNNING"
                continue
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        code = self.proc.wait()
        with self.cond:
            self.status = "FAILED_SETUP" if failed_setup else ("SUCCEEDED" if code == 0 else "FAILED")
            self.cond.notify_all()

    def job_status(self, cluster_name, job_id=None):
        super().job_status(cluster_name, job_id)  # NotFoundError for a cluster SkyPilot does not have
        return self.status

    def tail_logs(self, cluster_name, job_id=None, *, follow=True, tail=0):
        super().tail_logs(cluster_name, job_id, follow=False)  # NotFoundError as above
        if not follow:
            return iter(self.lines[-tail:] if tail else list(self.lines))

        def stream():
            seen = 0
            while True:
                with self.cond:
                    while seen == len(self.lines) and self.status in ("SETTING_UP", "RUNNING"):
                        self.cond.wait(1)
                    new, seen = self.lines[seen:], len(self.lines)
                    over = self.status not in ("SETTING_UP", "RUNNING")
                yield from new
                if over and not new:
                    return
        return stream()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def node_env(seeded, server, monkeypatch, tmp_path):
    """Stub executables on PATH, the local server's key as the deployment's key, short poll intervals."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in STUBS.items():
        path = stubs / name
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(0o755)
    home = tmp_path / "node-home"
    home.mkdir()
    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)
    monkeypatch.setattr(watch, "POLL_S", 0.2)
    monkeypatch.setattr(watch, "DRAIN_S", 2.0)
    missed_failures_time_out(monkeypatch)
    runners = []

    def make(**extra_env):
        runner = NodeRunner(server, home, stubs, extra_env).install(monkeypatch)
        runners.append(runner)
        return runner
    yield make
    for runner in runners:
        runner.stop()


def test_up_follows_the_real_node_scripts_to_answering(node_env):
    runner = node_env()
    result = invoke("up", "20b", "--gpu", "A100", "-y", "--json", "--no-smoke")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    names = [p["name"] for p in doc["phases"]]
    assert names[0] == "provision" and names[-1] == "answering"
    # The markers the real scripts printed, in order, each with the node's epoch
    printed = [ln.split("gptoss-sky phase ")[1].split()[0] for ln in runner.lines if "gptoss-sky phase " in ln]
    assert printed[:2] == ["install", "download"], runner.lines
    # load/compile/graphs come from the engine's own log lines, ready from /health on the node
    assert names == ["provision", "install", "download", "start", "load", "compile", "graphs", "answering"]
    assert all(isinstance(p["start"], float) and p["end"] is not None for p in doc["phases"])
    # The engine ran as the task asked, with the key from the secret and never on its command line
    log = (runner.home / "stub.log").read_text()
    assert "vllm serve" in log and API_KEY not in log
    assert f"VLLM_API_KEY={API_KEY}" in (runner.home / "stub.log.vllm-env").read_text()
    assert state.load("gptoss-20b").phases == doc["phases"]


@pytest.mark.parametrize(("fault", "cause", "said"), [
    ("STUB_HF_FAIL", "setup failed on the node (job FAILED_SETUP)", "RepositoryNotFoundError"),
    ("STUB_CRASH", "the engine exited with code 1: torch.OutOfMemoryError: CUDA out of memory",
     "CUDA out of memory"),
    # the API server lives on with /health unanswered: the node stops it, the cause is the worker's own line
    ("STUB_WORKER_DIES", "the engine exited with code 1: (Worker_TP1 pid=7) RuntimeError: CUDA error: "
     "an illegal memory access was encountered", "died unexpectedly"),
], ids=["setup-fails", "engine-crashes", "worker-dies-server-lives"])
def test_a_real_node_that_fails_ends_up_with_its_own_cause_and_log(node_env, fault, cause, said):
    node_env(**{fault: "1"})
    result = invoke("up", "20b", "--gpu", "A100", "-y", "--json", "--no-smoke")
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["cause"] == cause
    assert any(said in line for line in doc["log_tail"])
    assert said in result.stderr
