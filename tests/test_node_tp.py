"""The run script on nodes with several GPUs (tensor parallel), in real bash on a simulated node (tests/nodesim.py):
the all-reduce backend on a host without NVLink multicast, and an engine whose worker dies while its API
server lives on (vLLM 0.26.0 on 2x H200, issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from nodesim import Node, phases

from launcher.plan import catalog

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-nodesim-tp-5d2a"
TP2 = "tasks/120b-h200-x2.sky.yaml"   # one recipe: H200:2
ONE = "tasks/120b-h200.sky.yaml"      # H200:1
# The variables the lent H200 hosts set (/work/.library/device/KINDS.md), read from the catalog's own list
# only to check that the catalog names them.
HOST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
BACKEND = "VLLM_FLASHINFER_ALLREDUCE_BACKEND"


def _node(tmp_path, path: str, count: int, **envs: str) -> tuple[Node, dict]:
    blocks = yaml.safe_load((ROOT / path).read_text())
    node = Node(tmp_path, gpu_name="NVIDIA H200", gpu_count=count, secrets={k: KEY for k in blocks["secrets"]},
                envs={**blocks["envs"], **envs})
    assert node.bash(blocks["setup"]).returncode == 0
    return node, blocks


def _engine_env(node: Node, blocks: dict) -> tuple[dict, str]:
    result = node.bash(blocks["run"])
    assert result.returncode == 0, result.stdout
    [engine] = node.engine_calls()
    return engine.env, result.stdout


def test_the_catalog_names_what_the_lent_hosts_set_and_a_backend_vllm_accepts():
    rule = catalog.load().engine("vllm").without_multicast
    assert rule is not None and rule.detect == HOST_OFF
    assert rule.env == {BACKEND: "trtllm"}
    # vLLM 0.32.0's envs.py takes auto, trtllm, mnnvl; trtllm is the one that creates no multicast object
    assert "flashinfer_all_reduce.py" in rule.source


@pytest.mark.parametrize("name", sorted(HOST_OFF))
def test_tp2_on_a_host_without_multicast_gets_the_trtllm_all_reduce_and_says_why(tmp_path, name):
    node, blocks = _node(tmp_path, TP2, 2, **{name: HOST_OFF[name]})
    env, log = _engine_env(node, blocks)
    assert env[BACKEND] == "trtllm"
    [said] = [ln for ln in log.splitlines() if BACKEND in ln]
    assert said.startswith(f"gptoss-sky: {name}={HOST_OFF[name]} on this node: NVLink multicast is off")
    assert "flashinfer_all_reduce.py" in said


@pytest.mark.parametrize("path, count, envs", [
    (ONE, 1, HOST_OFF),                                 # one GPU: no all-reduce at all
    (TP2, 2, {}),                                       # multicast not turned off
    (TP2, 2, {"NCCL_NVLS_ENABLE": "1"}),                # turned on, explicitly
])
def test_one_gpu_or_a_host_with_multicast_keeps_vllms_own_choice(tmp_path, path, count, envs):
    node, blocks = _node(tmp_path, path, count, **envs)
    env, log = _engine_env(node, blocks)
    assert BACKEND not in env
    assert "NVLink multicast is off" not in log


def test_a_backend_the_task_sets_itself_is_kept(tmp_path):
    node, blocks = _node(tmp_path, TP2, 2, **HOST_OFF, **{BACKEND: "mnnvl"})
    env, log = _engine_env(node, blocks)
    assert env[BACKEND] == "mnnvl" and "NVLink multicast is off" not in log


def test_a_worker_that_dies_while_the_server_lives_ends_the_job_with_the_cause(tmp_path):
    node, blocks = _node(tmp_path, TP2, 2, **HOST_OFF)
    # the fake engine hangs for a minute after its worker died: past 30 s the run script did not notice
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": "worker-dies"}, timeout=30)
    assert (node.state / "worker-died").exists()
    assert result.returncode == 1, result.stdout
    failed = [ln for ln in result.stdout.splitlines() if ln.startswith("gptoss-sky: engine failed: ")]
    # the first fatal line is the cause: the worker's CUDA error, not the engine core's report of it
    assert len(failed) == 1 and "CUBLAS_STATUS_INTERNAL_ERROR" in failed[0], result.stdout
    assert (node.state / "engine-stopped").read_text() == "15"   # SIGTERM, as the server is asked to stop
    assert phases(result.stdout)[-1] == "engine_exit" and "ready" not in phases(result.stdout)
    assert re.search(r"^gptoss-sky phase engine_exit \d+ 1$", result.stdout, re.M)


def test_a_healthy_engine_whose_log_quotes_a_handled_cuda_error_is_untouched(tmp_path):
    node, blocks = _node(tmp_path, TP2, 2)
    log = ("WARNING [flashinfer_all_reduce.py:115] Failed to initialize FlashInfer All Reduce workspace: CUDA error: "
           "operation not supported. This is expected on GPUs without NVSwitch\n"
           "INFO Initialized FlashInfer Allreduce norm fusion workspace with backend=trtllm")
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": "serve-for:0.5", "NODESIM_ENGINE_LOG": log})
    assert result.returncode == 0, result.stdout
    assert "engine failed" not in result.stdout
    assert "ready" in phases(result.stdout) and not (node.state / "engine-stopped").exists()

