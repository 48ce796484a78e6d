"""The node's scripts, run by real bash on a simulated node (tests/nodesim.py), as SkyPilot runs them.

The expected engine command per GPU name and count is computed here from the raw catalog YAML (engine
flags, generation, overrides, profile) and the capacity planner's context, not taken from the renderer.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from catalog_argv import expected_argv
from nodesim import NVIDIA_SMI_NAMES, Node, phases

from launcher.node import render
from launcher.plan import catalog, recipes

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "catalogs"
KEY = "sk-nodesim-3c1f5e0b9a"
# The any-GPU file of each model and engine (a service's run block is its task's: test_node_scripts dedups)
ANY_FILES = ["tasks/20b-any.sky.yaml", "tasks/120b-any.sky.yaml",
             "tasks/20b-any-sglang.sky.yaml", "services/120b-any-sglang.sky.yaml"]


def _blocks(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def _file_choices(path: str) -> list[tuple[str, int]]:
    """(catalog GPU, count) pairs the file's resources offer the optimizer."""
    cat = catalog.load()
    res = _blocks(path)["resources"]
    pairs = [(n, c) for n, c in res["accelerators"].items()] if "accelerators" in res else \
        [next(iter(a["accelerators"].items())) for a in res["any_of"]]
    by_name = {n: g.name for g in cat.gpus.values() for n in g.catalog_names}
    return sorted({(by_name[n], c) for n, c in pairs})


def _setup_node(tmp_path, path, gpu_name="NVIDIA H200", count=1, **envs) -> tuple[Node, dict]:
    blocks = _blocks(path)
    node = Node(tmp_path, gpu_name=gpu_name, gpu_count=count, secrets={k: KEY for k in blocks["secrets"]},
                envs={**blocks["envs"], **envs})
    result = node.bash(blocks["setup"])
    assert result.returncode == 0, result.stdout
    return node, blocks


@pytest.mark.parametrize("path", ANY_FILES)
def test_every_gpu_name_and_count_starts_exactly_the_catalogs_command(tmp_path, path):
    engine = "sglang" if "sglang" in path else "vllm"
    model = path.split("/")[1].split("-")[0]
    node, blocks = _setup_node(tmp_path, path)
    choices = _file_choices(path)
    cat = catalog.load()
    started = set()
    for smi_name, gpu in sorted(NVIDIA_SMI_NAMES.items()):
        counts = [c for g, c in choices if g == gpu]
        for count in counts + [max(counts, default=1) * 2 if counts else 1]:
            node.clear_calls()
            node.gpu_name, node.gpu_count = smi_name, count
            result = node.bash(blocks["run"])
            engines = node.engine_calls()
            if count not in counts:  # a GPU/count this file has no recipe for: say so, start nothing
                assert result.returncode == 1 and "no recipe for" in result.stdout, (smi_name, count)
                assert not engines
                continue
            started.add((gpu, count))
            assert result.returncode == 0, (smi_name, count, result.stdout)
            assert len(engines) == 1, (smi_name, count)
            assert engines[0].argv == expected_argv(engine, model, gpu, count, node.home)[1:], (smi_name, count)
            expected_env = cat.engine(engine).generations[cat.gpu(gpu).generation]["env"]
            for name, value in expected_env.items():
                assert engines[0].env.get(name) == value
            if not expected_env:
                assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in engines[0].env
    assert started == set(choices)  # every choice the optimizer may pick was started on its real GPU name


def test_every_catalog_gpu_has_a_real_name_its_glob_matches():
    cat = catalog.load()
    for gpu in cat.gpus.values():
        names = [n for n, g in NVIDIA_SMI_NAMES.items() if g == gpu.name]
        assert names, gpu.name
        assert all(fnmatch.fnmatchcase(n, gpu.nvidia_smi) for n in names)


@pytest.mark.parametrize("path", ["tasks/20b-h200.sky.yaml", "tasks/20b-h200-sglang.sky.yaml"])
def test_the_key_reaches_the_engine_by_env_or_0600_file_and_never_argv_or_log(tmp_path, path):
    node, blocks = _setup_node(tmp_path, path)
    secret = next(iter(blocks["secrets"]))
    # an engine that prints the key (as a careless debug log would): the job log masks it
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE_LOG": f"INFO args: api_key={KEY}\nINFO ok"})
    assert result.returncode == 0, result.stdout
    assert KEY not in result.stdout and "api_key=<key>" in result.stdout
    for call in node.calls():
        assert not any(KEY in a for a in call.argv), (call.name, call.argv)
    engine = node.engine_calls()[0]
    assert engine.env[secret] == KEY and engine.env["GPTOSS_KEY_ENV"] == secret
    # the fixed path (~/gptoss-sky links to it)
    assert str(node.node_root / "guard") in engine.env["PYTHONPATH"].split(":")
    assert (node.home / "gptoss-sky").readlink() == node.node_root
    header = node.home / "gptoss-sky" / "auth-header"
    assert oct(header.stat().st_mode & 0o777) == "0o600"
    assert header.read_text() == f"Authorization: Bearer {KEY}\n"
    if "sglang" in path:
        config = engine.files[engine.argv[engine.argv.index("--config") + 1]]
        assert config["mode"] == "0o600" and yaml.safe_load(config["text"]) == {"api-key": KEY}
        assert engine.argv[:3] == ["-m", "gptoss_guard", "sglang.launch_server"]
    else:
        assert engine.argv[-2:] == ["--middleware", "gptoss_guard.Guard"]
    # setup wrote the guard the engine imports, byte for byte launcher/node/guard.py
    assert (node.home / "gptoss-sky" / "guard" / "gptoss_guard.py").read_text() == render.guard_source() + "\n"


def test_an_empty_secret_stops_the_job_before_the_engine(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    result = node.bash(blocks["run"], extra={"VLLM_API_KEY": ""})
    assert result.returncode == 1 and "secret VLLM_API_KEY is empty" in result.stdout
    assert not node.engine_calls()


@pytest.mark.parametrize("code", [1, 137])
def test_an_engine_that_exits_non_zero_fails_the_job(tmp_path, code):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": f"exit:{code}"})
    assert result.returncode == code
    assert re.search(rf"^gptoss-sky phase engine_exit \d+ {code}$", result.stdout, re.M)


def test_the_idle_watchdog_stops_the_engine_with_the_key_from_the_header_file(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    (node.state / "metrics").write_text("vllm:num_requests_running 0.0\nvllm:request_success_total 5.0\n")
    result = node.bash(blocks["run"], timeout=30, extra={
        "NODESIM_ENGINE": "serve", "GPTOSS_IDLE_MINUTES": "1", "GPTOSS_IDLE_SECONDS": "1",
        "GPTOSS_WATCHDOG_POLL_SECONDS": "0"})
    assert result.returncode == 0, result.stdout
    assert "no requests for 1 minutes; stopping the server" in result.stdout
    assert (node.state / "engine-stopped").read_text() == "15"  # SIGTERM
    assert phases(result.stdout)[-1] == "engine_exit" and result.stdout.rstrip().endswith(" 0")
    metrics = [c for c in node.calls("curl") if c.argv[-1].endswith("/metrics")]
    assert metrics and all(c.argv[-1] == "http://127.0.0.1:8000/metrics" for c in metrics)
    for call in metrics:
        header = next(a[1:] for a in call.argv if a.startswith("@"))
        assert call.files[header] == {"text": f"Authorization: Bearer {KEY}\n", "mode": "0o600"}


def test_the_watchdog_keeps_a_busy_engine_and_is_off_by_default(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    # GPTOSS_IDLE_MINUTES is "0" in the YAML: the engine runs until it exits by itself
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": "exit:0", "GPTOSS_WATCHDOG_POLL_SECONDS": "0"})
    assert result.returncode == 0 and "stopping the server" not in result.stdout
    assert not [c for c in node.calls("curl") if c.argv[-1].endswith("/metrics")]


def test_phases_in_order_from_setup_and_the_engines_own_log(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    log = "\n".join([
        "(APIServer pid=1) INFO non-default args: {'model': 'openai/gpt-oss-20b'}",
        "(EngineCore pid=2) INFO [gpu_model_runner.py:3] Starting to load model openai/gpt-oss-20b...",
        "(EngineCore pid=2) INFO [gpu_model_runner.py:5347] Model loading took 13.03 GiB memory and 1.4 s",
        "(EngineCore pid=2) INFO [gpu_model_runner.py:6612] Profiling CUDA graph memory: PIECEWISE=147",
        "(EngineCore pid=2) INFO [gpu_model_runner.py:6844] Graph capturing finished in 90 secs",
    ])
    node.clear_calls()
    setup = node.bash(blocks["setup"])
    assert phases(setup.stdout) == ["install", "download", "setup_done"]
    assert not node.calls("uv")  # the second setup finds the engine installed
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": "exit:0", "NODESIM_ENGINE_LOG": log})
    assert result.returncode == 0
    names = phases(result.stdout)
    assert names[0] == "engine_start" and names[-1] == "engine_exit"
    assert [n for n in names if n in ("load", "compile", "graphs")] == ["load", "compile", "graphs"]
    assert "ready" in names
    for line in log.splitlines():
        assert line in result.stdout  # the engine's log passes through unchanged


def test_sglang_log_phases(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200-sglang.sky.yaml")
    log = ("[2026-11-30] Load weight begin. avail mem=139.20 GB\n"
           "[2026-11-30] Capture decode CUDA graph begin. This can take")
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE_LOG": log})
    assert [n for n in phases(result.stdout) if n in ("load", "compile", "graphs")] == ["load", "graphs"]


def test_first_setup_installs_the_pinned_engine_and_downloads_the_pinned_revision(tmp_path):
    node, blocks = _setup_node(tmp_path, "tasks/120b-h100.sky.yaml")
    cat = catalog.load()
    installs = [c.argv for c in node.calls("uv") if c.argv[:2] == ["pip", "install"]]
    assert len(installs) == 1 and "vllm==0.32.0" in installs[0] and "--torch-backend=auto" in installs[0]
    # bytecode compiled at install, by uv in parallel, so the first engine start imports from .pyc
    assert "--compile-bytecode" in installs[0]
    (download,) = node.calls("hf")
    assert download.argv[:4] == ["download", "openai/gpt-oss-120b", "--revision", cat.model("120b").revision]
    assert download.argv[4:] == ["--exclude", "original/*", "--exclude", "metal/*"]
    fetched = [c.argv for c in node.calls("curl") if "-o" in c.argv]
    assert {Path(a[a.index("-o") + 1]).name for a in fetched} == {"o200k_base.tiktoken", "cl100k_base.tiktoken"}


RESOLVE = """
import sys
import time
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
try:
    print(snapshot_download(sys.argv[1], revision=sys.argv[2] or None))
except LocalEntryNotFoundError as exc:
    print("not found:", type(exc).__name__)
"""


@pytest.mark.parametrize("dummy", [False, True])
def test_the_model_resolves_offline_the_way_the_run_block_asks_for_it(tmp_path, dummy):
    """Setup's download leaves snapshots/SHA and no refs/main; huggingface_hub's own resolver, in the
    engine's recorded environment (HF_HUB_OFFLINE=1, the node's HOME), finds the model at the engine's
    --revision, and would not without it (the pre-fix run block)."""
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, dummy_weights=dummy)
    blocks = yaml.safe_load(render.render_text(cat, render.Deployment(name="gptoss-x", recipes=(recipe,))))
    node = Node(tmp_path, secrets={"VLLM_API_KEY": KEY}, envs=blocks["envs"])
    assert node.bash(blocks["setup"]).returncode == 0
    result = node.bash(blocks["run"])
    assert result.returncode == 0, result.stdout
    (engine,) = node.engine_calls()
    argv = engine.argv
    repo, revision = argv[1], argv[argv.index("--revision") + 1]
    assert engine.env["HF_HUB_OFFLINE"] == "1" and ("--load-format" in argv) == dummy
    folder = node.node_root / "hf-hub" / "models--openai--gpt-oss-20b"
    # as `hf download --revision <commit>` leaves it
    assert (folder / "snapshots" / revision).is_dir() and not (folder / "refs").exists()
    env = {k: v for k, v in engine.env.items() if not k.startswith("NODESIM_")}
    env["PATH"] = os.environ["PATH"]  # this interpreter, with huggingface_hub, in place of the engine's
    # the cache is in the node's fixed path itself, not behind a link (its path is part of vLLM's compile key,
    # and huggingface_hub resolves links in it)
    through = folder / "snapshots" / revision
    assert engine.env["HF_HUB_CACHE"] == str(node.node_root / "hf-hub")
    assert os.path.realpath(through) == str(through)
    for rev, expected in ((revision, str(through)), ("", "not found:")):
        out = subprocess.run([sys.executable, "-c", RESOLVE, repo, rev], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.stdout.startswith(expected), (rev, out.stdout, out.stderr[-500:])


def test_a_second_start_with_the_cache_downloads_and_compiles_nothing(tmp_path):
    """--cache: a local folder stands in for the bucket SkyPilot mounts (GPTOSS_CACHE_DIR). The first node
    downloads and compiles, then writes both once it is ready; a fresh second node (another replica of the
    same service) finds them: no `hf download`, no kernel compiled, the model still resolves."""
    from launcher import lifecycle
    from launcher.sky import skyapi

    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1)
    deployment = lifecycle.deployment_for("gptoss-x", (recipe,), service=True, cache="s3://team-bucket/gptoss")
    config = render.render_config(cat, deployment)
    assert config["file_mounts"] == {"/gptoss-cache": {"source": "s3://team-bucket/gptoss", "mode": "MOUNT_CACHED"}}
    task = skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})  # SkyPilot's own parser takes it
    assert list(task.storage_mounts) == ["/gptoss-cache"]
    bucket = tmp_path / "bucket"
    starts = []
    for n in (1, 2):
        node = Node(tmp_path / f"node{n}", secrets={"VLLM_API_KEY": KEY},
                    envs={**config["envs"], "GPTOSS_CACHE_DIR": str(bucket)})
        setup = node.bash(config["setup"])
        assert setup.returncode == 0, setup.stdout
        run = node.bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:0.5"})
        assert run.returncode == 0, run.stdout
        (engine,) = node.engine_calls()
        starts.append((node, setup.stdout, run.stdout, engine))
    (node1, setup1, run1, engine1), (node2, setup2, run2, engine2) = starts
    key = render.cache_key(recipe)
    assert len(node1.calls("hf")) == 1 and set(engine1.compiled) == set(cat.engine("vllm").compile_caches)
    assert (bucket / "compiled" / key / ".done").exists() and "cache up to date" in run1
    weights = bucket / "weights" / f"models--openai--gpt-oss-20b@{recipe.model.revision}"
    assert (weights / ".done").exists() and (weights / "model-00000-of-00002.safetensors").is_file()
    assert not node2.calls("hf") and "weights from the cache" in setup2
    assert engine2.compiled == [] and f"compiled kernels from the cache ({key})" in run2
    snapshot = node2.node_root / "hf-hub/models--openai--gpt-oss-20b/snapshots" / recipe.model.revision
    assert (snapshot / "config.json").is_file() and not (snapshot / ".done").exists()


def test_the_cache_key_changes_with_anything_that_changes_compiled_code():
    cat = catalog.load()
    base = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1)
    others = [recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 2),
              recipes.build(cat, cat.model("20b"), cat.gpu("H100"), 1),
              recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, profile="throughput"),
              recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, context=32768),
              recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, engine="sglang")]
    keys = {render.cache_key(r) for r in [base, *others]}
    assert len(keys) == 6
    assert render.cache_key(base).startswith("vllm-0.32.0/h200-tp1/")
    assert render.cache_key(base) == render.cache_key(recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1))


def test_cache_uri_is_checked_before_pricing():
    from click.testing import CliRunner

    from launcher.cli import cli

    result = CliRunner(mix_stderr=False).invoke(cli, ["up", "20b", "--cache", "/tmp/x", "--dryrun", "-y"])
    assert result.exit_code == 2 and "--cache '/tmp/x': give a bucket URI" in result.stderr
    assert "Traceback" not in result.stderr


def _rendered_with_cache(service: bool) -> tuple[catalog.Catalog, recipes.Recipe, dict]:
    """The 20b recipe on one H200 rendered with --cache s3://team-bucket/gptoss: (catalog, recipe, config)."""
    from launcher import lifecycle

    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1)
    return cat, recipe, render.render_config(cat, lifecycle.deployment_for("gptoss-x", (recipe,), service=service,
                                                                           cache="s3://team-bucket/gptoss"))


def test_a_cache_whose_content_has_not_all_arrived_is_not_used(tmp_path):
    """A bucket mount uploads in the background: a .done whose manifest the files do not match yet (a file
    missing or short) is ignored: the node downloads and compiles as if there were no cache."""
    cat, recipe, config = _rendered_with_cache(service=True)
    bucket = tmp_path / "bucket"
    first = Node(tmp_path / "node1", secrets={"VLLM_API_KEY": KEY},
                 envs={**config["envs"], "GPTOSS_CACHE_DIR": str(bucket)})
    assert first.bash(config["setup"]).returncode == 0
    assert first.bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:0.5"}).returncode == 0
    weights = bucket / "weights" / f"models--openai--gpt-oss-20b@{recipe.model.revision}"
    compiled = bucket / "compiled" / render.cache_key(recipe)
    (weights / "model-00001-of-00002.safetensors").unlink()  # still uploading
    kernel = next(p for p in compiled.rglob("kernel.bin"))
    kernel.write_text("half")  # a short file
    second = Node(tmp_path / "node2", secrets={"VLLM_API_KEY": KEY},
                  envs={**config["envs"], "GPTOSS_CACHE_DIR": str(bucket)})
    setup = second.bash(config["setup"])
    assert setup.returncode == 0 and len(second.calls("hf")) == 1 and "weights from the cache" not in setup.stdout
    run = second.bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:0.5"})
    assert run.returncode == 0 and "compiled kernels from the cache" not in run.stdout
    (engine,) = second.engine_calls()
    assert set(engine.compiled) == set(cat.engine("vllm").compile_caches)
    # ... and this node, once ready, completes what the first one left incomplete
    assert (weights / "model-00001-of-00002.safetensors").is_file() and kernel.read_text() != "half"


def _cache_config(tmp_path):
    """A --cache service's rendered config (bucket: a local folder) and a maker of fresh nodes sharing it."""
    cat, recipe, config = _rendered_with_cache(service=True)
    bucket = tmp_path / "bucket"

    def node(n: int) -> Node:
        fresh = Node(tmp_path / f"node{n}", secrets={"VLLM_API_KEY": KEY},
                     envs={**config["envs"], "GPTOSS_CACHE_DIR": str(bucket)})
        assert fresh.bash(config["setup"]).returncode == 0
        return fresh
    return config, bucket / "compiled" / render.cache_key(recipe), node


LATE = "triton/late topk/_topk_forward.cubin"  # where the stub's late kernel lands (NODESIM_LATE_KERNEL)


def _restores_everything(node: Node, config: dict, compiled: Path) -> str:
    """Run a fresh node on the cache: nothing compiled, not at start nor later; returns its log."""
    run = node.bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:1", "NODESIM_LATE_KERNEL": "0.3"})
    assert run.returncode == 0 and "compiled kernels from the cache" in run.stdout, run.stdout
    (engine,) = node.engine_calls()
    assert engine.compiled == [] and not (node.state / "compiled-late").exists(), run.stdout
    assert (node.home / "gptoss-sky/compile-cache" / LATE).is_file()
    return run.stdout


@pytest.mark.parametrize("stop", ["engine-exits", "idle-stop"])
def test_a_kernel_compiled_after_ready_is_cached_when_the_engine_stops(tmp_path, stop):
    """vLLM and Triton keep compiling after /health (first requests): what is compiled late still reaches the
    cache once the engine ends, by itself or stopped by the idle watchdog, so the next replica has it."""
    config, compiled, node = _cache_config(tmp_path)
    first = node(1)
    (first.state / "metrics").write_text("vllm:num_requests_running 0.0\nvllm:request_success_total 5.0\n")
    ends = {"engine-exits": {"NODESIM_ENGINE": "serve-for:2"},
            "idle-stop": {"NODESIM_ENGINE": "serve", "GPTOSS_IDLE_MINUTES": "1", "GPTOSS_IDLE_SECONDS": "2",
                          "GPTOSS_WATCHDOG_POLL_SECONDS": "0"}}[stop]
    run = first.bash(config["run"], extra={**ends, "NODESIM_LATE_KERNEL": "0.5"})
    assert run.returncode == 0 and (first.state / "compiled-late").exists(), run.stdout
    assert (compiled / LATE).is_file() and f" ./{LATE}\n" in (compiled / ".done").read_text()
    assert phases(run.stdout)[-1] == "engine_exit"
    _restores_everything(node(2), config, compiled)


def test_replicas_add_kernels_to_one_folder_and_it_stays_complete(tmp_path):
    """Replicas share the key folder: a second one adds its late kernel after the first one's manifest, a third
    is still uploading a file it has not listed yet. The folder stays complete (every listed file is there
    at its size) and a restore copies exactly the listed files."""
    config, compiled, node = _cache_config(tmp_path)
    assert node(1).bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:0.5"}).returncode == 0
    assert LATE not in (compiled / ".done").read_text()
    second = node(2)
    run = second.bash(config["run"], extra={"NODESIM_ENGINE": "serve-for:1.5", "NODESIM_LATE_KERNEL": "0.3"})
    assert run.returncode == 0 and (second.state / "compiled-late").exists(), run.stdout
    uploading = compiled / "triton" / "still uploading" / "kernel.cubin"
    uploading.parent.mkdir(parents=True)
    uploading.write_text("hal")  # a third replica's copy under way: present, short, in no manifest
    _restores_everything(node(3), config, compiled)
    assert not (tmp_path / "node3/home/gptoss-sky/compile-cache/triton/still uploading").exists()


def test_a_periodic_sync_saves_a_late_kernel_before_a_preemption(tmp_path):
    """While the engine serves, the compiled folder is synced every GPTOSS_CACHE_SYNC_SECONDS when it grew:
    a spot preemption (everything killed -9, no exit path runs) loses nothing compiled before the last sync."""
    config, compiled, node = _cache_config(tmp_path)
    first = node(1)
    proc = first.start(config["run"], extra={"NODESIM_ENGINE": "serve", "NODESIM_LATE_KERNEL": "0.3",
                                             "GPTOSS_CACHE_SYNC_SECONDS": "1"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                (compiled / ".done").exists() and LATE in (compiled / ".done").read_text()):
            time.sleep(0.1)
        assert proc.poll() is None and not (first.state / "engine-stopped").exists()  # still serving
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
    assert (first.state / "compiled-late").exists() and "phase engine_exit" not in log, log
    assert (compiled / LATE).is_file() and f" ./{LATE}\n" in (compiled / ".done").read_text(), log
    _restores_everything(node(2), config, compiled)


ENGINE_PATHS = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE",
                "HF_HUB_CACHE", "VIRTUAL_ENV", "PYTHONPATH")


def test_nodes_with_different_homes_show_the_engine_the_same_paths(tmp_path):
    """vLLM keys its torch.compile cache by the model's path and its source files' paths, and FlashInfer
    rebuilds its kernels when their paths change: a replica whose HOME differs (another cloud's image) missed
    both on the GPU (benchmarks/gpu/STARTUP.md). Two nodes, HOMEs of different names and lengths, one fixed
    node path (each machine has its own /var/tmp, emptied between them): the engine gets the same argv and the
    same cache, model and venv paths, none under either HOME, also once links are resolved (huggingface_hub
    resolves the Hub cache's path, FlashInfer its sources' and build folders')."""
    cat, recipe, config = _rendered_with_cache(service=True)
    fixed = tmp_path / "var-tmp" / "gptoss-sky"
    fixed.parent.mkdir()
    engines, homes = [], []
    for n, name in ((1, "ubuntu"), (2, "gcpuser-longer")):
        node = Node(tmp_path / f"node{n}" / name, secrets={"VLLM_API_KEY": KEY},
                    envs={**config["envs"], "GPTOSS_CACHE_DIR": str(tmp_path / "bucket")})
        shutil.rmtree(fixed, ignore_errors=True)  # a machine of its own: only the bucket is shared
        extra = {"GPTOSS_NODE_ROOT": str(fixed), "NODESIM_ENGINE": "serve-for:0.3"}
        assert node.bash(config["setup"], extra=extra).returncode == 0
        run = node.bash(config["run"], extra=extra)
        assert run.returncode == 0, run.stdout
        (engine,) = node.engine_calls()
        engines.append(engine)
        homes.append(str(node.home))
    first, second = engines
    assert first.argv == second.argv
    for var in ENGINE_PATHS:
        assert first.env[var] == second.env[var], var
        assert str(fixed) in first.env[var] and not any(h in first.env[var] for h in homes), (var, first.env[var])
        for path in first.env[var].split(":"):
            if path.startswith(str(fixed)):
                real = Path(os.path.realpath(path))
                assert real == Path(path) and fixed in real.parents, (var, path, real)
    assert second.compiled == []  # and the second node found the first one's kernels at those paths


def test_a_fresh_node_keeps_the_flashinfer_build_another_node_cached(tmp_path):
    """FlashInfer JIT-builds its kernels with real ninja at every start (on the H200 its sampler took 100-110 s
    on every warm start, benchmarks/gpu/STARTUP.md). Ninja rebuilds what its log says was built before its
    sources' mtime, and an object whose mtime moved past its stored header dependencies. Two nodes one after
    the other at the node's fixed path, the second restoring the first's --cache: what ninja (and a real C
    compiler writing the dependency file) built on the first is up to date on the second, though the second's
    venv was installed later (the uv stub stamps files with the install's time, as uv does)."""
    ninja, cc = shutil.which("ninja"), shutil.which("cc")
    assert ninja and cc, "this test needs ninja (FlashInfer's builder) and a C compiler on PATH"
    cat, recipe, config = _rendered_with_cache(service=False)
    fixed = tmp_path / "var-tmp" / "gptoss-sky"
    fixed.parent.mkdir()
    build = fixed / "compile-cache/flashinfer/.cache/flashinfer/0.6.14/90a/cached_ops/sampling"
    for n in (1, 2):
        shutil.rmtree(fixed, ignore_errors=True)  # a machine of its own: only the bucket is shared
        node = Node(tmp_path / f"node{n}", secrets={"VLLM_API_KEY": KEY},
                    envs={**config["envs"], "GPTOSS_CACHE_DIR": str(tmp_path / "bucket")})
        extra = {"GPTOSS_NODE_ROOT": str(fixed), "NODESIM_ENGINE": "serve-for:0.3"}
        setup = node.bash(config["setup"], extra=extra)
        assert setup.returncode == 0, setup.stdout
        (source,) = fixed.glob("vllm-venv/lib/python*/site-packages/flashinfer/data/csrc/sampling.cu")
        if n == 1:  # the first start's JIT build, as FlashInfer writes it (absolute paths, a gcc depfile)
            build.mkdir(parents=True)
            (build / "build.ninja").write_text(
                f"rule cuda_compile\n  command = {cc} -x c -MD -MF $out.d -c $in -o $out\n  depfile = $out.d\n"
                f"  deps = gcc\nbuild {build}/sampling.cuda.o: cuda_compile {source}\n")
            subprocess.run([ninja, "-C", str(build)], check=True, capture_output=True, timeout=60)
        run = node.bash(config["run"], extra=extra)
        assert run.returncode == 0, run.stdout
    assert "compiled kernels from the cache" in run.stdout, run.stdout
    out = subprocess.run([ninja, "-C", str(build), "-n", "-d", "explain"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "no work to do" in out.stdout, out.stdout + out.stderr
    (py,) = fixed.glob("vllm-venv/lib/python*/site-packages/flashinfer/sampling.py")
    assert py.stat().st_mtime > source.stat().st_mtime  # Python sources keep theirs (their .pyc hold it)


def test_a_node_path_held_by_another_user_falls_back_to_home(tmp_path):
    """On a shared machine the fixed name may belong to someone else: the node keeps ~/gptoss-sky and runs."""
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    held = tmp_path / "held"
    held.mkdir()
    (held / "theirs").write_text("not ours")
    run = node.bash(blocks["run"], extra={"GPTOSS_NODE_ROOT": str(held)})
    assert run.returncode == 0, run.stdout
    (engine,) = node.engine_calls()
    assert engine.env["HF_HUB_CACHE"] == str(node.home / "gptoss-sky" / "hf-hub")
    assert sorted(p.name for p in held.iterdir()) == ["theirs"]  # nothing of theirs touched, nothing added


def test_uv_keeps_the_fixed_path_of_a_venv_made_through_it(tmp_path):
    """The real installer: `uv venv` through the node's symlink writes that path into the venv (activate,
    sys.prefix), so vLLM's source files are seen under it on every node, not under the HOME it points to."""
    import uv

    home = tmp_path / "home" / "gptoss-sky"
    home.mkdir(parents=True)
    link = tmp_path / "gptoss-sky"
    link.symlink_to(home)
    out = subprocess.run([uv.find_uv_bin(), "venv", "--offline", "--python", sys.executable, str(link / "vllm-venv")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    prefix = subprocess.run([str(link / "vllm-venv" / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, timeout=60).stdout.strip()
    assert prefix == str(link / "vllm-venv")
    assert str(link / "vllm-venv") in (link / "vllm-venv" / "bin" / "activate").read_text()


def test_phases_from_a_real_vllm_log_split_compile_from_the_silent_warmup(tmp_path):
    """vLLM 0.26.0's own log of a warm 20b start on an H200 (benchmarks/gpu/records/startup-2026-11-30, as data),
    replayed by the stub engine: the markers come in launch order, and `warmup` separates torch.compile (22 s there)
    from the 117 s in which vLLM printed nothing before "Profiling CUDA graph memory"."""
    node, blocks = _setup_node(tmp_path, "tasks/20b-h200.sky.yaml")
    with tarfile.open("benchmarks/gpu/records/startup-2026-11-30/records.tar.xz") as tar:  # the run's records, as data
        recorded = tar.extractfile("./lane0/r2/run.log").read().decode().splitlines()
    engine = [line.split(" ", 1)[1] for line in recorded if line.split(" ", 1)[1].startswith("(")]
    log = "\n".join(engine[:next(i for i, line in enumerate(engine) if "Graph capturing finished" in line) + 1])
    result = node.bash(blocks["run"], extra={"NODESIM_ENGINE": "exit:0", "NODESIM_ENGINE_LOG": log})
    assert result.returncode == 0, result.stdout[-2000:]
    names = [n for n in phases(result.stdout) if n in ("load", "compile", "warmup", "graphs")]
    assert names == ["load", "compile", "warmup", "graphs"]
