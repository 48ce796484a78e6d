"""--engine-arg values reach the engine byte for byte: JSON, quotes, `*`, spaces and newlines.

The value goes through everything between the user and the engine: gptoss-sky's own parsing, the rendered
YAML (`up --dryrun --json`), the run script in real bash on a simulated node (tests/nodesim.py, whose
engine stub records its argv), then the engine's own argument parsing: vLLM 0.32.0's options as dumped
from its argparse (catalogs/engines/options/) and SGLang 0.5.23's config merger and options
(tests/test_sglang.py). With VLLM_CHECK_PYTHON set to an interpreter that has vLLM 0.32.0 (the venv
/work/shared/tools/check-vllm-args builds), vLLM's real `vllm serve` parser parses the argv as well.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

import pytest
import yaml
from catalog_argv import expected_argv, vllm_parser
from clitools import invoke
from nodesim import Node
from sglang_parts import known_flags, sglang_config_merger

KEY = "sk-engine-args-7d2c4e1f0a"

TEMPLATE = "{% for m in messages %}\n  <|{{ m['role'] }}|> \"{{ m.content }}\" * it's\n{% endfor %}\n"

# (what the user types after --engine-arg, the flag, the value the engine must receive)
VLLM_ARGS = [
    ('--override-generation-config {"temperature":0.5}', "--override-generation-config", '{"temperature":0.5}'),
    ('--allowed-origins ["*"]', "--allowed-origins", '["*"]'),
    ('--hf-overrides={"a": "b  c", "q": "it\'s \\"x\\""}', "--hf-overrides", '{"a": "b  c", "q": "it\'s \\"x\\""}'),
    (f"--chat-template {TEMPLATE}", "--chat-template", TEMPLATE),
    ("--default-chat-template-kwargs '{\"reasoning_effort\": \"high\"}'", "--default-chat-template-kwargs",
     '{"reasoning_effort": "high"}'),  # shell-quoted as a whole: the quotes a shell would remove go
    ("--gpu-memory-utilization 9e-1", "--gpu-memory-utilization", "9e-1"),  # a number keeps its spelling
]
SGLANG_ARGS = [
    ('--json-model-override-args {"rope_scaling": {"type": "yarn", "factor": 2}}', "--json-model-override-args",
     '{"rope_scaling": {"type": "yarn", "factor": 2}}'),
    ('--preferred-sampling-params={"temperature": 0.5, "stop": ["*", "\\n"]}', "--preferred-sampling-params",
     '{"temperature": 0.5, "stop": ["*", "\\n"]}'),
    (f"--chat-template {TEMPLATE}", "--chat-template", TEMPLATE),
]


def _launched_argv(tmp_path, engine: str, args) -> tuple[list[str], Node]:
    """`up --dryrun --json` with the args, then the YAML's setup and run blocks in bash on an H200."""
    words = [w for user, _, _ in args for w in ("--engine-arg", user)]
    result = invoke("up", "20b", "--gpu", "H200", "--engine", engine, "--dryrun", "--json", *words)
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load(json.loads(result.stdout)["yaml"])
    node = Node(tmp_path, gpu_name="NVIDIA H200", secrets={k: KEY for k in config["secrets"]}, envs=config["envs"])
    for block in ("setup", "run"):
        done = node.bash(config[block])
        assert done.returncode == 0, done.stdout
    (engine_call,) = node.engine_calls()
    return engine_call.argv, node


def _without(argv: list[str], flags: list[str]) -> list[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in flags:
            skip = True
        else:
            out.append(word)
    return out


def _check_received(argv: list[str], args, base: list[str]) -> None:
    for _, flag, value in args:
        assert argv.count(flag) == 1, flag
        assert argv[argv.index(flag) + 1] == value, flag  # byte for byte
    # and nothing else changed: the rest is the catalog's command for this GPU
    assert _without(argv, [flag for _, flag, _ in args]) == base


def test_vllm_receives_json_quotes_stars_spaces_and_newlines_as_typed(tmp_path):
    argv, node = _launched_argv(tmp_path, "vllm", VLLM_ARGS)
    _check_received(argv, VLLM_ARGS, expected_argv("vllm", "20b", "H200", 1, node.home)[1:])
    assert argv[0] == "serve"
    parsed = vars(vllm_parser().parse_args(argv[1:]))
    for _, flag, value in VLLM_ARGS:
        assert parsed[flag[2:].replace("-", "_")] == value
    # the JSON-valued flags hold the JSON the user meant (vLLM reads them with json.loads)
    assert json.loads(parsed["override_generation_config"]) == {"temperature": 0.5}
    assert json.loads(parsed["allowed_origins"]) == ["*"]
    assert json.loads(parsed["hf_overrides"]) == {"a": "b  c", "q": "it's \"x\""}
    checker = os.environ.get("VLLM_CHECK_PYTHON")
    if checker:  # by hand: vLLM's real parser (see the module docstring)
        code = ("import json, sys\n"
                "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
                "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
                "args = make_arg_parser(FlexibleArgumentParser(prog='vllm serve')).parse_args(json.load(sys.stdin))\n"
                "print(json.dumps({k: v for k, v in vars(args).items()"
                " if k in ('override_generation_config', 'allowed_origins', 'hf_overrides', 'chat_template',"
                " 'default_chat_template_kwargs', 'gpu_memory_utilization')}, default=str))\n")
        done = subprocess.run([checker, "-c", code], input=json.dumps(argv[1:]), capture_output=True, text=True,
                              env={**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "ERROR"})
        assert done.returncode == 0, done.stderr[-3000:]
        real = json.loads(done.stdout.strip().splitlines()[-1])
        assert real["override_generation_config"] == {"temperature": 0.5}
        assert real["allowed_origins"] == ["*"] and real["chat_template"] == TEMPLATE
        assert real["hf_overrides"] == {"a": "b  c", "q": "it's \"x\""}
        assert real["default_chat_template_kwargs"] == {"reasoning_effort": "high"}
        assert real["gpu_memory_utilization"] == 0.9


def test_sglang_receives_them_as_typed_through_its_config_merger(tmp_path):
    argv, node = _launched_argv(tmp_path, "sglang", SGLANG_ARGS)
    _check_received(argv, SGLANG_ARGS, expected_argv("sglang", "20b", "H200", 1, node.home)[1:])
    assert argv[:3] == ["-m", "gptoss_guard", "sglang.launch_server"]
    # SGLang 0.5.23's options (tests/fixtures); the recipe's switches (a flag followed by another flag) take
    # no value, every other option one
    switches = {w for i, w in enumerate(argv) if w.startswith("--") and (i + 1 == len(argv) or argv[i + 1][:2] == "--")}
    parser = argparse.ArgumentParser(prog="sglang.launch_server", add_help=False, exit_on_error=False,
                                     allow_abbrev=False)
    for flag in sorted(known_flags("sglang-0.5.23-flags.txt")):
        parser.add_argument(flag, action="store_true" if flag in switches else "store")
    merged = sglang_config_merger()(parser).merge_config_with_args(argv[3:])
    parsed = vars(parser.parse_args(merged))
    assert parsed["api_key"] == KEY  # the key file still merges in beside them
    for _, flag, value in SGLANG_ARGS:
        assert parsed[flag[2:].replace("-", "_")] == value
    assert json.loads(parsed["json_model_override_args"]) == {"rope_scaling": {"type": "yarn", "factor": 2}}
    assert json.loads(parsed["preferred_sampling_params"])["stop"] == ["*", "\n"]


@pytest.mark.parametrize("typed, values", [
    ("--lora-modules a=/x 'b=/y z'", ["a=/x", "b=/y z"]),  # several values: split with shell quoting
    ('--lora-modules {"name": "a", "path": "/p q"}', ['{"name": "a", "path": "/p q"}']),  # one JSON document
])
def test_a_flag_with_several_values_splits_them_unless_one_json_document(typed, values):
    from launcher.plan import engine_control

    rules = {"--lora-modules": {"value": True, "nargs": "+"}}
    assert engine_control.split_engine_arg(typed, rules, {"--lora-modules"}) == ("--lora-modules", values)


def test_an_engine_arg_value_like_a_shell_variable_is_not_expanded(tmp_path):
    args = [("--chat-template $HOME/t.jinja", "--chat-template", "$HOME/t.jinja"),
            ("--allowed-origins $SKYPILOT_NUM_GPUS_PER_NODE", "--allowed-origins", "$SKYPILOT_NUM_GPUS_PER_NODE")]
    argv, node = _launched_argv(tmp_path, "sglang", [args[0]])
    assert argv[argv.index("--chat-template") + 1] == "$HOME/t.jinja"
    assert argv[argv.index("--config") + 1] == str(node.home / "gptoss-sky" / "sglang-auth.yaml")  # ours: expanded
    argv, _ = _launched_argv(tmp_path / "vllm", "vllm", [args[1]])
    assert argv[argv.index("--allowed-origins") + 1] == "$SKYPILOT_NUM_GPUS_PER_NODE"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "1"
