"""The engine command line a GPU and count must start, computed from the raw catalog YAML (engine flags,
generation, overrides, profile) and the capacity planner's context, not taken from the renderer.
Shared by tests/test_node_sim.py, tests/test_engine_args.py and tests/test_saved_profiles.py; vllm_parser is
vLLM 0.32.0's serve options as its own argparse dumped them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from launcher.plan import catalog, recipes

CATALOGS = Path(__file__).resolve().parent.parent / "catalogs"


def _raw(path: str) -> dict:
    return yaml.safe_load((CATALOGS / path).read_text())


def _flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, dict):  # a config object: vLLM's --quantization-config etc. parse JSON
            out += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            out += [flag, str(value)]
    return out


def expected_argv(engine: str, model: str, gpu: str, count: int, home: Path) -> list[str]:
    """The engine command for the default profile, from catalogs/engines/<engine>.yaml and models.yaml."""
    e = _raw(f"engines/{engine}.yaml")
    m = next(v for v in _raw("models.yaml")["models"].values() if v["hf_repo"] == f"openai/gpt-oss-{model}")
    generation = _raw("gpus.yaml")["gpus"][gpu]["generation"]
    c = e["command"]
    argv = list(c["program"])
    argv += [c["model_flag"], m["hf_repo"]] if c["model_flag"] else [m["hf_repo"]]
    argv += [c["revision_flag"], m["revision"]]
    argv += [c["served_name_flag"], *(m["served_names"] if c["served_names_multiple"] else m["served_names"][:1])]
    # the planner's context for this GPU and count (capacity is its own concern, tested in test_capacity)
    cat = catalog.load()
    context = recipes.build(cat, cat.model(model), cat.gpu(gpu), count, engine=engine).max_model_len
    argv += [c["host_flag"], "0.0.0.0", c["port_flag"], str(e["port"]), c["tensor_parallel_flag"], str(count),
             c["context_flag"], str(context)]
    options = {**e["common_options"], **e["generations"][generation]["options"]}
    for o in e["overrides"]:
        if (o["model"], o["gpu"], o["tensor_parallel_size"]) == (f"gpt-oss-{model}", gpu, count):
            options.update(o["options"])
    options.update(e["profiles"][e["default_profile"]]["options"])
    argv += _flags(options) + list(c.get("guard_flags") or [])
    if e["api_key_config"]:
        argv += [e["api_key_config"]["flag"], e["api_key_config"]["path"].replace("$HOME", str(home))]
    return argv


def vllm_parser() -> argparse.ArgumentParser:
    """vLLM 0.32.0's serve options with what each takes (value or switch, nargs), from its own argparse."""
    folder = catalog.load().engine("vllm").option_list_path().parent
    rules = json.loads((folder / "vllm-0.32.0.values.json").read_text())
    parser = argparse.ArgumentParser(prog="vllm serve", add_help=False, exit_on_error=False, allow_abbrev=False)
    parser.add_argument("model")
    for flag in sorted(line.strip() for line in (folder / "vllm-0.32.0.txt").read_text().splitlines()
                       if line.startswith("--")):
        rule = rules.get(flag) or {"value": True}
        if not rule.get("value"):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, nargs=rule.get("nargs"))
    return parser
