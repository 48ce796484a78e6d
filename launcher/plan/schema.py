"""The type of every value in catalogs/, as pydantic models: a catalog file is checked before any code reads it.

Catalogs are the project's extension point (a new GPU or engine is a file), so a wrongly typed value must
say where it is instead of ending in a TypeError far away. Models are strict (a quoted number is a string,
not a number) and forbid unknown keys; `check` turns the first problem into one line naming the file, the
key's path, the value and the type expected. Which keys must be present beside each other, and facts that
span files, stay with the loaders. What catalog.py loads is these types or extends them (Architecture,
GpuEntry -> Gpu, EngineHead -> Engine), so each key is declared once. Imports nothing from launcher but errors.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, RootModel, Strict

from launcher.errors import CatalogError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Scalar = str | int | float | bool
Names = Annotated[tuple[str, ...], Strict(False)]  # a YAML list of strings, kept as a tuple (frozen, hashable)
Seconds = float  # strict floats take integers too
ByCount = dict[int, float]  # GiB or a factor, by a count of tokens, sequences or GPUs


# --- gpus.yaml -----------------------------------------------------------------------------------

class GpuEntry(_Strict):
    """One GPU of gpus.yaml; the loaded catalog.Gpu is this with its name and every spelling of it."""

    catalog_names: Names | None = None  # absent: only the GPU's own name
    memory_gb: int
    total_gib: float
    total_gib_source: str
    compute_capability: str
    generation: str
    nvidia_smi: str
    bandwidth_gbps: int


class GpusFile(_Strict):
    gpus: dict[str, GpuEntry]
    unsupported: dict[str, str] = {}


# --- models.yaml (a fine-tune gives only the keys that differ from its base; the loader merges) ---

class Architecture(_Strict):
    """A model's shapes (its config.json), as the capacity planner reads them; catalog.Model holds one."""

    num_hidden_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    sliding_window: int
    max_position_embeddings: int
    num_local_experts: int
    experts_per_token: int
    vocab_size: int
    layer_types: str = "alternating"


class ModelEntry(_Strict):
    base: str | None = None
    hf_repo: str | None = None
    revision: str | None = None
    aliases: list[str] | None = None
    served_names: list[str] | None = None
    download_exclude: list[str] | None = None
    params_total_b: float | None = None
    params_active_b: float | None = None
    checkpoint_gib: float | None = None
    architecture: Architecture | None = None
    observed_weights_gib: dict[str, ByCount] | None = None  # MoE kernel -> TP size -> GiB
    min_context: int | None = None


class ModelsFile(_Strict):
    models: dict[str, ModelEntry]


# --- engines/*.yaml ------------------------------------------------------------------------------

class EngineOptions(BaseModel):
    """Engine flags (snake_case): any flag the engine takes, the ones the capacity planner reads typed."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    __pydantic_extra__: dict[str, Scalar | list[Scalar] | dict[str, Any] | None] = Field(init=False)

    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    max_cudagraph_capture_size: int | None = None
    kv_cache_dtype: str | None = None
    enable_chunked_prefill: bool | None = None
    mem_fraction_static: float | None = None
    max_running_requests: int | None = None
    stream_interval: int | None = None


class Install(_Strict):
    module: str
    packages: list[str]
    uv_args: list[str] = []


class Command(_Strict):
    program: list[str]
    model_flag: str | None
    revision_flag: str
    served_name_flag: str
    served_names_multiple: bool
    host_flag: str
    port_flag: str
    tensor_parallel_flag: str
    context_flag: str
    dummy_weights: list[str]
    tool_server_flag: str | None
    guard_flags: list[str] = []


class Generation(_Strict):
    moe_kernel: str
    options: EngineOptions
    env: dict[str, str]


class OverrideEntry(_Strict):
    model: str
    gpu: str
    tensor_parallel_size: int
    options: EngineOptions
    why: str


class ProfileEntry(_Strict):
    gpu_multiplier: int
    options: EngineOptions


class MoeKernel(_Strict):
    hidden_multiple: int
    intermediate_multiple: int


class LargeGpuDefaults(_Strict):
    min_total_gib: float
    name_excludes: list[str]
    max_num_batched_tokens: int
    max_num_seqs: int


class OtherGpuDefaults(_Strict):
    max_num_batched_tokens: int
    max_num_seqs: int


class SchedulerDefaults(_Strict):
    large_gpu: LargeGpuDefaults
    other: OtherGpuDefaults


class VersionRule(_Strict):
    since: str
    gpu_memory_utilization: float | None = None
    window_factor: int | None = None
    residual_gib: ByCount | None = None
    residual_base_gib: float | None = None
    residual_per_seq_gib: float | None = None
    cudagraph_gib: ByCount | None = None
    default_cudagraph_capture_size: int | None = None


class Capacity(_Strict):
    """vLLM's KV sizing rules; an engine measured as vLLM names the vLLM flags its own stand for."""

    block_size: int | None = None
    scheduler_defaults: SchedulerDefaults | None = None
    version_rules: list[VersionRule] | None = None
    as_vllm: dict[str, str] | None = None
    value_map: dict[str, str] | None = None
    activations_outside_budget: bool | None = None


class NodeRequirements(_Strict):
    cuda: str | None = None
    min_driver: int | None = None
    why: str | None = None


class HarmonyVocab(_Strict):
    base_url: str
    files: list[str]


class ApiKeyConfig(_Strict):
    flag: str
    key: str
    path: str


class WithoutMulticast(_Strict):
    """What the run script exports on a node with several GPUs whose host turned NVLink multicast off."""

    detect: dict[str, str]  # env var -> the value that says multicast is off (any one of them suffices)
    env: dict[str, str]  # what the engine then gets
    why: str
    source: str  # where in the engine's source the choice is made


class EngineHead(_Strict):
    """The keys of an engine file that the loaded catalog.Engine keeps as they are; EngineFile types the rest."""

    engine: str
    version: str
    image: str
    python: str
    port: int
    api_key_env: str
    health_path: str
    idle_metrics: str
    supported_generations: Names
    default_profile: str
    log_phases: dict[str, str] = {}  # phase name -> ERE on the engine's log
    compile_caches: dict[str, str] = {}  # env var -> folder, for --cache
    own_env: dict[str, str] = {}  # gptoss-sky's own variable -> who reads it (not the engine)
    env_prefix: str | None = None  # the engine's own variables' prefix: --env names with it are checked
    fatal_log: Names = ()  # EREs: a log line matching one before /health means the engine is dead
    without_multicast: WithoutMulticast | None = None  # TP > 1 on a host with NVLink multicast off
    validated_versions: Names = ()  # releases run end to end; others are allowed with a warning
    reserved_flags: dict[str, str] = {}  # flag -> why --engine-arg may not set it
    notes: str = ""


class EngineFile(EngineHead):
    api_key_config: ApiKeyConfig | None
    install: Install
    command: Command
    common_options: EngineOptions
    harmony_vocab: HarmonyVocab
    generations: dict[str, Generation]
    overrides: list[OverrideEntry] | None = None
    moe_kernels: dict[str, MoeKernel] | None = None
    profiles: dict[str, ProfileEntry]
    capacity: Capacity = Capacity()
    metrics: dict[str, list[str]] = {}
    node_requirements: NodeRequirements = NodeRequirements()
    user_options: EngineOptions = EngineOptions()
    guarded_paths: dict[Literal["post", "get", "patch"], list[str]] | None = None


class FlagRule(_Strict):
    """engines/options/<engine>-<version>.values.json: what one flag takes, from the engine's own argparse."""

    value: bool
    choices: list[str] | None = None
    nargs: str | int | None = None
    type: Literal["int", "float"] | None = None


class FlagRules(RootModel[dict[str, FlagRule]]):
    """The flags of a .values.json (its keys that start with -)."""


# --- images.yaml, evals.yaml, startup.yaml, throughput.yaml ------------------------------------

class Image(_Strict):
    cloud: str
    image: str
    driver: int | None
    cuda: str
    default: bool
    note: str = ""


class ImagesFile(_Strict):
    images: list[Image]


class EffortScores(_Strict):
    low: float
    medium: float
    high: float


class EvalEntry(_Strict):
    questions: int
    reference: dict[str, EffortScores]  # model -> percent per reasoning effort


class EvalsFile(_Strict):
    source: str = ""
    evals: dict[str, EvalEntry]


class StartFigures(_Strict):
    cold: Seconds | None = None
    warm: Seconds | None = None


class ProbeMargin(_Strict):
    factor: float
    plus_seconds: Seconds


class StartupFile(_Strict):
    measured_engine: str
    engine_start_seconds: dict[str, dict[str, StartFigures]]  # model -> GPU -> figures
    weights_read_gb_per_s: float
    unmeasured_gpu_factor: float
    estimate_unmeasured_factor: float
    probe_margin: ProbeMargin
    provision_seconds: dict[str, Seconds]
    install_seconds: Seconds
    download_gb_per_s: float


class Autoscale(_Strict):
    output_tokens_per_request: float
    headroom: float


class Figure(_Strict):
    model: str
    gpu: str
    count: int
    output_tokens_per_s: float
    vllm: str
    workload: str
    source: str


class ThroughputFile(_Strict):
    count_scaling: ByCount
    autoscale: Autoscale
    figures: list[Figure]


class PriceSnapshotFile(_Strict):
    """prices/snapshot.yaml: the bundled SkyPilot price catalog's identity."""

    date: str
    version: str
    clouds: list[str]


class RecipePolicyFile(_Strict):
    """recipes.yaml: what makes a (model, GPU, count) a recipe."""

    min_concurrency: int
    min_context: int
    context_steps: list[int]


# --- reporting -----------------------------------------------------------------------------------

Doc = TypeVar("Doc", bound=BaseModel)

_EXPECTED = {
    "float_type": "a number", "int_type": "an integer", "int_from_float": "an integer",
    "string_type": "a string (quote it)", "bool_type": "true or false", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "none_required": "nothing (null)",
}


def _kind(value: Any) -> str:
    """The YAML type of a value, as a reader of the file would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc`'s parent allows (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str) \
                and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            current = _inner_model(current)
            if current is None:
                return []
            if isinstance(part, str) and part in current.model_fields:
                current = current.model_fields[part].annotation
    current = _inner_model(current) if not (isinstance(current, type) and issubclass(current, BaseModel)) \
        else current
    return sorted(current.model_fields) if current is not None else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The one BaseModel inside an annotation such as dict[str, X], list[X] or X | None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(getattr(annotation, "__args__", ())):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def describe(error: Any, model: type[BaseModel]) -> str:
    """One pydantic error as 'key.path: value is <kind>, expected <type>'."""
    loc, kind = tuple(error["loc"]), error["type"]
    path = _path(loc)
    if loc and loc[-1] == "[key]":  # a mapping's key, not its value
        return f"{_path(loc[:-2])}: key {error.get('input')!r} is {_kind(error.get('input'))}, expected " \
               f"{_expected(error)}"
    if kind == "missing":
        return f"{path} is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown key {path}{tip}"
    value = error.get("input")
    return f"{path}: {value!r} is {_kind(value)}, expected {_expected(error)}"


def _expected(error: Any) -> str:
    if error["type"] == "literal_error":
        return f"one of {error['ctx']['expected']}"
    return _EXPECTED.get(error["type"]) or error["msg"][0].lower() + error["msg"][1:]


def check(model: type[Doc], data: Any, where: str) -> Doc:
    """`data` (a parsed catalog file) as `model`, or CatalogError: '<where>: <the first problem>'."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        # A misspelt key also makes its right spelling missing: name the misspelling, which says both.
        errors = sorted(exc.errors(), key=lambda e: {"extra_forbidden": 0, "missing": 2}.get(e["type"], 1))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CatalogError(f"{where}: {describe(errors[0], model)}{more}") from None
