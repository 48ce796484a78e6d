"""Which (model, GPU, count) combinations gptoss-sky ships, with their flags and default context.

The rule (README "How up picks the GPU", its numbers in catalogs/recipes.yaml): a GPU count is a recipe
when, with the flags we pass, vLLM holds at least min_concurrency full-length requests at a context of at
least min_context. Its default max_model_len is the longest of context_steps that still holds
min_concurrency. For each GPU we ship the smallest such count (profiles `balanced`, `throughput`) and
twice it (profile `latency`), when that is a valid TP size.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.errors import NoFitError, UserError
from launcher.plan import capacity
from launcher.plan.catalog import Catalog, Engine, Gpu, Model

TP_PLACEHOLDER = "$SKYPILOT_NUM_GPUS_PER_NODE"


@dataclass(frozen=True)
class Recipe:
    """One deployable configuration: what to run on `count` x `gpu`, and what it holds."""

    model: Model
    gpu: Gpu
    count: int
    engine: Engine
    profile: str
    max_model_len: int
    options: Mapping[str, Any]  # engine flags, snake_case, in emission order
    env: Mapping[str, str]
    capacity: capacity.Capacity
    dummy_weights: bool = False
    tool_server: str | None = None

    @property
    def slug(self) -> str:
        """File stem: 20b-l4, 120b-h100-x2, 120b-h100-sglang."""
        suffix = f"-x{self.count}" if self.count > 1 else ""
        engine = "" if self.engine.engine == "vllm" else f"-{self.engine.engine}"
        return f"{self.model.short}-{self.gpu.slug}{suffix}{engine}"

    @property
    def accelerator(self) -> str:
        return f"{self.gpu.name}:{self.count}"

    def engine_argv(self, tp: str | int = TP_PLACEHOLDER) -> list[str]:
        """The engine's command line as a list of words, spelled as catalogs/engines/<engine>.yaml says."""
        m, spec = self.model, self.engine.command
        argv = list(spec["program"])
        argv += [spec["model_flag"], m.hf_repo] if spec["model_flag"] else [m.hf_repo]
        # Always the pinned revision, dummy weights too: setup's `hf download --revision` writes no refs/main,
        # so under HF_HUB_OFFLINE=1 an unrevisioned lookup finds no snapshot.
        argv += [spec["revision_flag"], m.revision]
        names = list(m.served_names) if spec.get("served_names_multiple") else [m.served_names[0]]
        argv += [spec["served_name_flag"], *names]
        argv += [spec["host_flag"], "0.0.0.0", spec["port_flag"], str(self.engine.port)]
        argv += [spec["tensor_parallel_flag"], str(tp), spec["context_flag"], str(self.max_model_len)]
        if self.dummy_weights:
            argv += list(spec["dummy_weights"])
        if self.tool_server:
            argv += [spec["tool_server_flag"], self.tool_server]
        argv += options_to_argv(self.options)
        argv += list(spec.get("guard_flags") or ())  # the key on every route (launcher/node/guard.py)
        auth = self.engine.api_key_config
        if auth:  # engines that take the key only from argv or a config file read it from a 0600 file
            argv += [auth["flag"], auth["path"]]
        return argv

    def engine_command(self, tp: str | int = TP_PLACEHOLDER) -> str:
        """The command line, shell-quoted, with `$SKYPILOT_NUM_GPUS_PER_NODE` (and `$HOME` in the key file's
        path) left for the shell inside double quotes."""
        words = self.engine_argv(tp)
        spec, auth = self.engine.command, self.engine.api_key_config
        # by position, not by value: a user's --engine-arg that spells "$HOME/..." reaches the engine as written
        expanded = {words.index(spec["tensor_parallel_flag"]) + 1} if tp == TP_PLACEHOLDER else set()
        if auth:
            expanded.add(len(words) - 1)
        return " ".join(f'"{w}"' if i in expanded else shlex.quote(w) for i, w in enumerate(words))


def options_to_argv(options: Mapping[str, Any]) -> list[str]:
    """{max_num_seqs: 64, enable_auto_tool_choice: true} -> ['--max-num-seqs', '64', '--enable-auto-tool-choice']."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        elif isinstance(value, Mapping):  # a config object (--quantization-config): the JSON the engine parses
            argv += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            argv += [flag, str(value)]
    return argv


def engine_options(engine: Engine, model: Model, gpu: Gpu, count: int, profile: str) -> tuple[dict, dict]:
    """(flags, env) for one deployment: common, then generation, then overrides, then profile."""
    if profile not in engine.profiles:
        raise UserError(f"unknown profile {profile!r}; choose one of: {', '.join(engine.profiles)}")
    if gpu.generation not in engine.supported_generations:
        raise NoFitError(f"{engine.engine} does not serve gpt-oss on {gpu.name} ({gpu.generation}); it supports "
                         f"{', '.join(engine.supported_generations)} GPUs")
    generation = engine.generations[gpu.generation]
    options: dict[str, Any] = {**engine.common_options, **generation["options"]}
    for override in engine.overrides:
        if (override.model, override.gpu, override.tensor_parallel_size) == (model.name, gpu.name, count):
            options.update(override.options)
    options.update(engine.profiles[profile].options)
    options.update(engine.user_options)  # --engine-arg: the user's word is last
    return options, dict(generation["env"])


def build(
    catalog: Catalog,
    model: Model,
    gpu: Gpu,
    count: int,
    *,
    engine: str = "vllm",
    profile: str | None = None,
    context: int | None = None,
    dummy_weights: bool = False,
    tool_server: str | None = None,
    extra_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The recipe for exactly this GPU and count. Raises NoFitError when the engine would refuse to start."""
    eng = catalog.engine(engine)
    profile = profile or eng.default_profile
    options, env = engine_options(eng, model, gpu, count, profile)
    options.update(extra_options or {})
    sizing = vllm_equivalent_options(eng, options)
    outside = bool(eng.capacity.get("activations_outside_budget", False))
    if context is not None:
        cap = capacity.estimate(catalog, model, gpu, count, context=context, options=sizing,
                                activations_outside_budget=outside)
        if not cap.fits:
            raise NoFitError(f"{model.name} on {gpu.name}:{count} at context {context} does not fit: {cap.reason}")
    else:
        cap = _default_context(catalog, model, gpu, count, sizing, outside)
    return Recipe(model, gpu, count, eng, profile, cap.max_model_len, options, env, cap, dummy_weights,
                  tool_server)


def vllm_equivalent_options(engine: Engine, options: Mapping[str, Any]) -> dict[str, Any]:
    """The planner's arithmetic is vLLM's: translate another engine's memory flags into vLLM's terms
    (engines/<engine>.yaml `capacity.as_vllm`), so its fit is estimated on the same memory budget."""
    if engine.engine == "vllm":
        return dict(options)
    mapping = engine.capacity.get("as_vllm", {})
    values = engine.capacity.get("value_map", {})
    return {mapping[k]: values.get(v, v) for k, v in options.items() if k in mapping}


def _default_context(catalog: Catalog, model: Model, gpu: Gpu, count: int, options: Mapping[str, Any],
                     activations_outside_budget: bool = False):
    policy = catalog.policy
    last = None
    for context in policy.context_steps:
        last = capacity.estimate(catalog, model, gpu, count, context=context, options=options,
                                 activations_outside_budget=activations_outside_budget)
        if last.fits and last.max_concurrency >= policy.min_concurrency:
            return last
    assert last is not None
    why = last.reason or f"only {last.concurrency_text} concurrent {policy.min_context}-token requests fit"
    raise NoFitError(
        f"{model.name} on {gpu.name}:{count} holds fewer than {policy.min_concurrency} requests of "
        f"{policy.min_context} tokens: {why}"
    )


def smallest_fit(catalog: Catalog, model: Model, gpu: Gpu, profile: str | None = None,
                 engine: str = "vllm") -> int | None:
    """The fewest GPUs of this kind that make a recipe, or None."""
    for count in capacity.VALID_TP:
        try:
            build(catalog, model, gpu, count, engine=engine, profile=profile)
            return count
        except NoFitError:
            continue
    return None


def shipped(catalog: Catalog, model: Model, engine: str = "vllm") -> list[Recipe]:
    """Every recipe with a committed file: per supported GPU, the smallest fit and twice it."""
    eng = catalog.engine(engine)
    out = []
    for gpu in catalog.gpus.values():
        if gpu.generation not in eng.supported_generations:
            continue
        smallest = smallest_fit(catalog, model, gpu, engine=engine)
        if smallest is None:
            continue
        for count in (smallest, smallest * 2):
            if count in capacity.VALID_TP:
                try:
                    out.append(build(catalog, model, gpu, count, engine=engine))
                except NoFitError:
                    pass
    return out


def candidates(catalog: Catalog, model: Model, profile: str | None = None, engine: str = "vllm") -> list[Recipe]:
    """One recipe per GPU kind at the profile's GPU count: what `up` offers the optimizer."""
    eng = catalog.engine(engine)
    profile = profile or eng.default_profile
    multiplier = eng.profiles[profile].gpu_multiplier
    out = []
    for gpu in catalog.gpus.values():
        if gpu.generation not in eng.supported_generations:
            continue
        smallest = smallest_fit(catalog, model, gpu, profile, engine=engine)
        if smallest is None or smallest * multiplier not in capacity.VALID_TP:
            continue
        try:
            out.append(build(catalog, model, gpu, smallest * multiplier, engine=engine, profile=profile))
        except NoFitError:
            pass
    return out
