"""The SGLang engine: plan/render choose it with one flag, its YAMLs are valid, smoke runs unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from sglang_parts import known_flags, sglang_config_merger

from launcher.cli import cli
from launcher.node import render
from launcher.plan import capacity, catalog, recipes
from launcher.sky import skyapi


def test_smoke_runs_unchanged_against_an_sglang_like_server(server):
    from openai_server import API_KEY

    server.config.flavor = "sglang"
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["smoke", "--endpoint", server.url, "--api-key", API_KEY, "--json", "--timeout", "10"])
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["failed"] == []


def test_engine_flag_switches_the_whole_deployment():
    cat = catalog.load()
    vllm = recipes.build(cat, cat.model("120b"), cat.gpu("H200"), 1)
    sglang = recipes.build(cat, cat.model("120b"), cat.gpu("H200"), 1, engine="sglang")
    assert vllm.engine_argv()[:2] == ["vllm", "serve"]
    argv = sglang.engine_argv()
    assert argv[:4] == ["python", "-m", "gptoss_guard", "sglang.launch_server"]  # through the key guard
    assert argv[argv.index("--tp-size") + 1] == "$SKYPILOT_NUM_GPUS_PER_NODE"
    assert argv[argv.index("--max-running-requests") + 1] == argv[argv.index("--cuda-graph-max-bs-decode") + 1]
    config = render.render_config(cat, render.Deployment(name="gptoss-x", recipes=(sglang,), service=True))
    assert config["secrets"] == {"SGLANG_API_KEY": None}
    assert "uv pip install" in config["setup"] and '"sglang==0.5.23"' in config["setup"]
    task = skyapi.task_from_config(config, secrets={"SGLANG_API_KEY": "k"})
    assert task.service.readiness_headers["Authorization"] == "Bearer k"


def test_latency_profile_uses_twice_the_gpus_and_a_small_batch():
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["serve", "120b", "--engine", "sglang", "--profile", "latency", "--gpu", "H200:2", "--clouds", "shadeform",
              "--dryrun", "-y"])
    assert result.exit_code == 0, result.stderr
    run = yaml.safe_load(result.stdout)["run"]
    assert "--max-running-requests 16" in run and "--stream-interval 1" in run


def test_sglang_capacity_is_vllm_arithmetic_on_its_memory_fraction():
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("120b"), cat.gpu("H100"), 1, engine="sglang", context=32768)
    # mem-fraction-static 0.9 and fp8 KV, with no activation reserve inside the fraction
    same = capacity.estimate(cat, cat.model("120b"), cat.gpu("H100"), 1, context=32768,
                             gpu_memory_utilization=0.9, kv_cache_dtype="fp8", activations_outside_budget=True)
    assert recipe.capacity.kv_cache_blocks == same.kv_cache_blocks
    assert recipe.capacity.kv_cache_gib_per_gpu == round(79.19 * 0.9 - 61.43, 3)


def test_tool_server_flag_reaches_both_engines_and_demo_installs_gpt_oss():
    cat = catalog.load()
    for engine in ("vllm", "sglang"):
        recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H100"), 1, engine=engine, tool_server="demo")
        argv = recipe.engine_argv()
        assert argv[argv.index("--tool-server") + 1] == "demo"
        config = render.render_config(cat, render.Deployment(name="gptoss-t", recipes=(recipe,)))
        assert "gpt-oss" in config["setup"] and "runs model-written code" in config["setup"]


FIXTURES = Path(__file__).parent / "fixtures"


def _emitted_flags(engine: str) -> set[str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["render", "--engine-commands", "--engine", engine])
    assert result.exit_code == 0
    return {w for line in result.stdout.splitlines() if not line.startswith("#") for w in line.split()
            if w.startswith("--")}


def test_every_sglang_flag_exists_in_the_pinned_sglang():
    # Regression: SGLang's recipe flag --cuda-graph-max-bs is ambiguous (removed) in 0.5.23.
    emitted = _emitted_flags("sglang")
    assert "--cuda-graph-max-bs" not in emitted
    assert emitted <= known_flags("sglang-0.5.23-flags.txt"), emitted - known_flags("sglang-0.5.23-flags.txt")


def test_every_vllm_flag_exists_in_the_pinned_vllm():
    # Regression: recipes still use --cuda-graph-sizes (removed) and --cuda-graph-capture-size (never a flag).
    emitted = _emitted_flags("vllm")
    known = known_flags("vllm-0.32.0-flags.txt")
    assert "--cuda-graph-sizes" not in known and "--cuda-graph-capture-size" not in known
    assert emitted <= known, emitted - known


def _sglang_parser():
    """An argparse parser with exactly SGLang 0.5.23's long options (tests/fixtures), each taking one value."""
    import argparse

    parser = argparse.ArgumentParser(prog="sglang.launch_server", add_help=False, exit_on_error=False)
    for flag in sorted(known_flags("sglang-0.5.23-flags.txt")):
        if flag != "--config":
            parser.add_argument(flag)
    parser.add_argument("--config")
    return parser


def _written_key_file(tmp_path, key: str) -> Path:
    """Run the rendered run script's preamble (everything before the GPU check) with real bash."""
    import os
    import subprocess

    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, engine="sglang")
    run = render.render_config(cat, render.Deployment(name="gptoss-x", recipes=(recipe,)))["run"]
    preamble = run[:run.index("GPU_NAME=")]
    home = tmp_path / "home"
    (home / "gptoss-sky" / "sglang-venv" / "bin").mkdir(parents=True)
    (home / "gptoss-sky" / "sglang-venv" / "bin" / "activate").write_text("")
    result = subprocess.run(["bash", "-c", preamble], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": str(home), "SGLANG_API_KEY": key,
                                 "GPTOSS_NODE_ROOT": str(tmp_path / "var-tmp-gptoss-sky")})  # not the real /var/tmp
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout + result.stderr
    path = home / "gptoss-sky" / "sglang-auth.yaml"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path


def test_sglang_reads_the_key_file_through_its_own_config_merger(tmp_path):
    # Regression: the file said `api_key:`; SGLang's merger made that `--api_key`, which its parser rejects
    # (printing the key into the job log).
    key = "sk-test-0123456789abcdef"
    path = _written_key_file(tmp_path, key)
    merger = sglang_config_merger()(_sglang_parser())
    argv = merger.merge_config_with_args(["--model-path", "openai/gpt-oss-20b", "--config", str(path)])
    assert argv == ["--api-key", key, "--model-path", "openai/gpt-oss-20b"]
    assert _sglang_parser().parse_args(argv).api_key == key


def test_the_old_key_spelling_is_what_sglang_rejects(tmp_path):
    """The check above can fail: the pre-fix file goes through the same merger and parser and is refused."""
    import argparse

    import pytest

    old = tmp_path / "old.yaml"
    old.write_text('api_key: "sk-x"\n')
    argv = sglang_config_merger()(_sglang_parser()).merge_config_with_args(["--config", str(old)])
    assert argv == ["--api_key", "sk-x"]
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        _sglang_parser().parse_args(argv)
