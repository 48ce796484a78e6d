"""Environment variables a catalog sets for an engine are checked like its options: each must be one the
pinned release reads (catalogs/engines/options/<engine>-<version>.env.txt, dumped from the release's own
source by scripts/dump_engine_env.py). A catalog naming another is one line naming the file, the key, the
variable and the release, exit 2; `--env` names in the engine's own namespace are checked the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from clitools import invoke

from launcher.plan import catalog

SOURCE = Path(__file__).resolve().parents[1] / "catalogs"
CAPACITY = ("capacity", "20b", "--gpu", "H200")


def _listed(engine: str, version: str) -> set[str]:
    """The dumped list, read here on its own (name first on a line; `#` starts a comment)."""
    text = (SOURCE / "engines" / "options" / f"{engine}-{version}.env.txt").read_text()
    return {line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()}


def _set_for_the_engine(data: dict) -> dict[str, str]:
    """Every variable the engine file puts into the engine's environment, by the key that sets it: the
    generations' env, the compile caches (--cache), without_multicast's env, and the API key variable unless
    the file says that variable is gptoss-sky's own (own_env: read by the node scripts, not by the engine)."""
    out = {name: f"generations.{gen}.env" for gen, spec in data["generations"].items() for name in spec["env"]}
    out.update({name: "compile_caches" for name in data.get("compile_caches") or {}})
    out.update({name: "without_multicast.env" for name in (data.get("without_multicast") or {}).get("env", {})})
    if data["api_key_env"] not in (data.get("own_env") or {}):
        out[data["api_key_env"]] = "api_key_env"
    return out


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_every_variable_a_catalog_sets_for_an_engine_is_read_by_its_pinned_release(engine):
    data = yaml.safe_load((SOURCE / "engines" / f"{engine}.yaml").read_text())
    known = _listed(engine, data["version"])
    unknown = {name: key for name, key in _set_for_the_engine(data).items() if name not in known}
    assert not unknown, f"{engine} {data['version']} reads none of {unknown}"
    # gptoss-sky's own variables are named as such, and the release really does not read them
    assert not set(data.get("own_env") or {}) & known


def test_the_lists_hold_what_each_release_reads():
    vllm, sglang = _listed("vllm", "0.32.0"), _listed("sglang", "0.5.23")
    assert {"VLLM_API_KEY", "VLLM_CACHE_ROOT", "VLLM_USE_FLASHINFER_MOE_INT4"} <= vllm
    # 0.32 picks the MXFP4 MoE kernel with --moe-backend and the MoE activation, not this variable
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in vllm
    assert {"SGLANG_CACHE_DIR", "TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE"} <= sglang
    assert "SGLANG_API_KEY" not in sglang  # SGLang takes the key only as --api-key


def _one_line_error(*command: str) -> str:
    result = invoke(*command)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("engine", "change", "key", "variable"), [
    # the variable Blackwell's generation set until vLLM 0.32.0 was checked: 0.32 no longer reads it
    ("vllm", lambda d: d["generations"]["blackwell"]["env"].update(VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8="1"),
     "generations.blackwell.env", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8"),
    ("vllm", lambda d: d["generations"]["hopper"]["env"].update(VLLM_USE_TRTLLM_ATTENTION="1"),
     "generations.hopper.env", "VLLM_USE_TRTLLM_ATTENTION"),
    ("vllm", lambda d: d["compile_caches"].update(VLLM_TORCH_COMPILE_DIR="compile"),
     "compile_caches", "VLLM_TORCH_COMPILE_DIR"),
    ("sglang", lambda d: d["generations"]["hopper"]["env"].update(SGLANG_USE_FLASHINFER_MXFP4_MOE="1"),
     "generations.hopper.env", "SGLANG_USE_FLASHINFER_MXFP4_MOE"),
    ("vllm", lambda d: d["without_multicast"]["env"].update(VLLM_FLASHINFER_ALLREDUCE_BACKENDS="trtllm"),
     "without_multicast.env", "VLLM_FLASHINFER_ALLREDUCE_BACKENDS"),
    ("sglang", lambda d: d.pop("own_env"), "api_key_env", "SGLANG_API_KEY"),
])
def test_a_catalog_setting_a_variable_the_release_does_not_read_is_one_line_exit_2(
        edit, engine, change, key, variable):
    edit(f"engines/{engine}.yaml", change)
    line = _one_line_error(*CAPACITY)
    version = {"vllm": "0.32.0", "sglang": "0.5.23"}[engine]
    assert f"engines/{engine}.yaml" in line and key in line and variable in line, line
    assert f"{engine} {version}" in line and f"{engine}-{version}.env.txt" in line, line


def test_a_variable_the_release_reads_is_accepted(edit):
    edit("engines/vllm.yaml", lambda d: d["generations"]["hopper"]["env"].update(VLLM_LOGGING_LEVEL="INFO"))
    result = invoke(*CAPACITY)
    assert result.exit_code == 0, result.stderr


# --- --env and --secret: the engine's own variables checked as --engine-arg's flags are --------------------

UP = ("up", "20b", "--gpu", "H200", "--dryrun", "--json")


@pytest.mark.parametrize(("engine", "option", "pair", "named"), [
    ("vllm", "--env", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8=1", "vllm 0.32.0 reads no such variable"),
    ("vllm", "--secret", "VLLM_S3_KEY=x", "vllm 0.32.0 reads no such variable"),
    ("sglang", "--env", "SGLANG_USE_FLASHINFER_MXFP4_MOE=1", "sglang 0.5.23 reads no such variable"),
])
def test_an_engine_variable_the_release_does_not_read_is_refused_like_an_unknown_engine_arg(
        engine, option, pair, named):
    line = _one_line_error(*UP, "--engine", engine, option, pair)
    name = pair.partition("=")[0]
    assert line.startswith(f"Error: {option} {name}: {named}"), line
    assert f"engines/options/{engine}-" in line, line


def test_a_close_misspelling_is_named():
    line = _one_line_error(*UP, "--env", "VLLM_LOGING_LEVEL=DEBUG")
    assert "did you mean VLLM_LOGGING_LEVEL?" in line, line


def test_another_release_is_checked_against_the_nearest_list_and_says_so():
    line = _one_line_error(*UP, "--engine-version", "0.26.0", "--env", "VLLM_NO_SUCH_VARIABLE=1")
    assert "vllm 0.32.0 reads no such variable" in line and "none for 0.26.0" in line, line


@pytest.mark.parametrize(("engine", "pair"), [
    ("vllm", "VLLM_LOGGING_LEVEL=DEBUG"),     # vLLM's own, in its envs.py
    ("vllm", "HF_TOKEN=hf_x"),                # not the engine's namespace: huggingface_hub reads it
    ("vllm", "NCCL_DEBUG=INFO"),
    ("sglang", "SGLANG_ENABLE_TORCH_COMPILE=1"),
])
def test_a_variable_the_release_reads_or_outside_its_namespace_reaches_the_node(engine, pair):
    import json

    result = invoke(*UP, "--engine", engine, "--env", pair)
    assert result.exit_code == 0, result.stderr
    name, _, value = pair.partition("=")
    assert json.loads(result.stdout)["envs"][name] == value  # the SkyPilot env override the launch sends


# --- Blackwell's MoE kernel in vLLM 0.32's own terms ------------------------------------------------------

ORACLE = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.config.quantization import resolve_quantization_config
from vllm.model_executor.layers.fused_moe.oracle import mxfp4 as oracle
args = make_arg_parser(FlexibleArgumentParser(prog="vllm serve")).parse_args(json.load(sys.stdin))
asked = resolve_quantization_config(args.quantization, args.quantization_config)
tried = oracle._get_requested_backends(args.moe_backend, asked.moe.activation if asked and asked.moe else None)
hidden, inter = oracle.mxfp4_round_up_hidden_size_and_intermediate_size(tried[0], 2880, 2880)
print(json.dumps({"tried": [b.value for b in tried], "hidden": hidden, "intermediate": inter}))
"""


def test_blackwell_asks_vllm_0_32_for_the_trtllm_mxfp4_x_mxfp8_moe_kernel():
    import json
    import os
    import subprocess

    from launcher.plan import recipes

    cat = catalog.load()
    argv = recipes.build(cat, cat.model("20b"), cat.gpu("B200"), 1).engine_argv(tp=1)
    rules = json.loads((SOURCE / "engines" / "options" / "vllm-0.32.0.values.json").read_text())
    backend = argv[argv.index("--moe-backend") + 1]
    assert backend == "flashinfer_trtllm" and backend in rules["--moe-backend"]["choices"]
    assert json.loads(argv[argv.index("--quantization-config") + 1]) == {"moe": {"activation": "mxfp8"}}
    assert cat.engine("vllm").generations["blackwell"]["env"] == {}
    assert "--moe-backend" not in recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1).engine_argv(tp=1)
    checker = os.environ.get("VLLM_CHECK_PYTHON")
    if checker:  # by hand: vLLM 0.32.0's own selection order and padding (the CPU venv check-vllm-args builds)
        done = subprocess.run([checker, "-c", ORACLE], input=json.dumps(argv[2:]), capture_output=True, text=True,
                              env={**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "ERROR"})
        assert done.returncode == 0, done.stderr[-3000:]
        chosen = json.loads(done.stdout.strip().splitlines()[-1])
        # tried first: MXFP4 weights x MXFP8 activations; the only fallback, TRT-LLM's x BF16
        assert chosen["tried"] == ["FLASHINFER_TRTLLM_MXFP4_MXFP8", "FLASHINFER_TRTLLM_MXFP4_BF16"]
        pad = cat.engine("vllm").moe_kernels["flashinfer_trtllm"]
        assert chosen["hidden"] == -(-2880 // pad["hidden_multiple"]) * pad["hidden_multiple"]
        assert chosen["intermediate"] == -(-2880 // pad["intermediate_multiple"]) * pad["intermediate_multiple"]
