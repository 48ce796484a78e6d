"""Which (model, GPU, count) combinations gptoss-sky ships, with their flags and default context.

The rule (README "Recipes"): a GPU count is a recipe when, with the flags we pass, vLLM holds at least
MIN_CONCURRENCY full-length requests at a context of at least MIN_CONTEXT. Its default max_model_len is
the longest of CONTEXT_STEPS that still holds MIN_CONCURRENCY. For each GPU we ship the smallest such
count (profiles `balanced`, `throughput`) and twice it (profile `latency`), when that is a valid TP size.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from launcher import capacity
from launcher.catalog import Catalog, Engine, Gpu, Model
from launcher.errors import NoFitError, UserError

MIN_CONCURRENCY = 4
MIN_CONTEXT = 16384
CONTEXT_STEPS = (131072, 65536, 32768, 16384)
TP_PLACEHOLDER = "$SKYPILOT_NUM_GPUS_PER_NODE"


@dataclass(frozen=True)
class Recipe:
    """One deployable configuration: what to run on `count` x `gpu`, and what it holds."""

    model: Model
    gpu: Gpu
    count: int
    profile: str
    max_model_len: int
    options: Mapping[str, Any]  # engine flags, snake_case, in emission order
    env: Mapping[str, str]
    capacity: capacity.Capacity
    dummy_weights: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        """File stem: 20b-l4, 120b-h100-x2."""
        suffix = f"-x{self.count}" if self.count > 1 else ""
        return f"{self.model.short}-{self.gpu.slug}{suffix}"

    @property
    def accelerator(self) -> str:
        return f"{self.gpu.name}:{self.count}"

    def engine_argv(self, tp: str | int = TP_PLACEHOLDER) -> list[str]:
        """`vllm serve ...` as a list of words; `tp` defaults to the SkyPilot variable."""
        m = self.model
        argv = ["vllm", "serve", m.hf_repo]
        if not self.dummy_weights:
            argv += ["--revision", m.revision]
        argv += ["--served-model-name", *m.served_names]
        argv += ["--host", "0.0.0.0", "--port", "8000", "--tensor-parallel-size", str(tp)]
        argv += ["--max-model-len", str(self.max_model_len)]
        if self.dummy_weights:
            argv += ["--load-format", "dummy"]
        argv += options_to_argv(self.options)
        return argv

    def engine_command(self, tp: str | int = TP_PLACEHOLDER) -> str:
        """The command line, shell-quoted, with `$SKYPILOT_NUM_GPUS_PER_NODE` left for the shell."""
        words = self.engine_argv(tp)
        return " ".join(w if w == TP_PLACEHOLDER else shlex.quote(w) for w in words)


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
        else:
            argv += [flag, str(value)]
    return argv


def engine_options(engine: Engine, model: Model, gpu: Gpu, count: int, profile: str) -> tuple[dict, dict]:
    """(flags, env) for one deployment: common, then generation, then overrides, then profile."""
    if profile not in engine.profiles:
        raise UserError(f"unknown profile {profile!r}; choose one of: {', '.join(engine.profiles)}")
    generation = engine.generations[gpu.generation]
    options: dict[str, Any] = {**engine.common_options, **generation["options"]}
    for override in engine.overrides:
        if (override.model, override.gpu, override.tensor_parallel_size) == (model.name, gpu.name, count):
            options.update(override.options)
    options.update(engine.profiles[profile].options)
    return options, dict(generation["env"])


def build(
    catalog: Catalog,
    model: Model,
    gpu: Gpu,
    count: int,
    *,
    profile: str | None = None,
    context: int | None = None,
    dummy_weights: bool = False,
    extra_options: Mapping[str, Any] | None = None,
) -> Recipe:
    """The recipe for exactly this GPU and count. Raises NoFitError when vLLM would refuse to start."""
    engine = catalog.engine("vllm")
    profile = profile or engine.default_profile
    options, env = engine_options(engine, model, gpu, count, profile)
    options.update(extra_options or {})
    if context is not None:
        cap = capacity.estimate(catalog, model, gpu, count, context=context, options=options)
        if not cap.fits:
            raise NoFitError(f"{model.name} on {gpu.name}:{count} at context {context} does not fit: {cap.reason}")
    else:
        cap = _default_context(catalog, model, gpu, count, options)
    return Recipe(model, gpu, count, profile, cap.max_model_len, options, env, cap, dummy_weights)


def _default_context(catalog: Catalog, model: Model, gpu: Gpu, count: int, options: Mapping[str, Any]):
    last = None
    for context in CONTEXT_STEPS:
        last = capacity.estimate(catalog, model, gpu, count, context=context, options=options)
        if last.fits and last.max_concurrency >= MIN_CONCURRENCY:
            return last
    assert last is not None
    why = last.reason or f"only {last.concurrency_text} concurrent {MIN_CONTEXT}-token requests fit"
    raise NoFitError(
        f"{model.name} on {gpu.name}:{count} holds fewer than {MIN_CONCURRENCY} requests of "
        f"{MIN_CONTEXT} tokens: {why}"
    )


def smallest_fit(catalog: Catalog, model: Model, gpu: Gpu, profile: str | None = None) -> int | None:
    """The fewest GPUs of this kind that make a recipe, or None."""
    for count in capacity.VALID_TP:
        try:
            build(catalog, model, gpu, count, profile=profile)
            return count
        except NoFitError:
            continue
    return None


def shipped(catalog: Catalog, model: Model, profile: str | None = None) -> list[Recipe]:
    """Every recipe with a committed file: per supported GPU, the smallest fit and twice it."""
    engine = catalog.engine("vllm")
    out = []
    for gpu in catalog.gpus.values():
        if gpu.generation not in engine.supported_generations:
            continue
        smallest = smallest_fit(catalog, model, gpu, profile)
        if smallest is None:
            continue
        for count in (smallest, smallest * 2):
            if count in capacity.VALID_TP:
                try:
                    out.append(build(catalog, model, gpu, count, profile=profile))
                except NoFitError:
                    pass
    return out


def candidates(catalog: Catalog, model: Model, profile: str | None = None) -> list[Recipe]:
    """One recipe per GPU kind at the profile's GPU count: what `up` offers the optimizer."""
    engine = catalog.engine("vllm")
    profile = profile or engine.default_profile
    multiplier = engine.profiles[profile].gpu_multiplier
    out = []
    for gpu in catalog.gpus.values():
        if gpu.generation not in engine.supported_generations:
            continue
        smallest = smallest_fit(catalog, model, gpu, profile)
        if smallest is None or smallest * multiplier not in capacity.VALID_TP:
            continue
        try:
            out.append(build(catalog, model, gpu, smallest * multiplier, profile=profile))
        except NoFitError:
            pass
    return out
