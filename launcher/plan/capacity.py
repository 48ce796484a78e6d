"""vLLM's memory arithmetic for gpt-oss: weights per GPU, KV-cache blocks, and the "Maximum concurrency
for M tokens per request" vLLM prints at startup (../shared/reference/gpt-oss-on-vllm.md, section 2).

    page  P = 2 * block * (kv_heads / TP) * head_dim * kv_bytes          bytes per layer per block
    KV      = total * util - weights - residual(mbt) - cudagraph          bytes per GPU
    N       = floor(KV / (P * layers / 2))                                blocks (2 groups: sliding, full)
    R       = cdiv(M, block) + cdiv(min(127 + f * mbt, M), block) + 1     blocks one max-length request holds
    printed = N / R

Pure functions over catalog data; no I/O. The arithmetic is vLLM's; for other engines (SGLang) it is an
estimate of the same memory budget, and callers say so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from launcher.errors import UserError
from launcher.plan.catalog import Catalog, Engine, Gpu, Model

GIB = 1024**3
VALID_TP = (1, 2, 4, 8)  # must divide the 8 KV heads and the 64 query heads


def parse_version(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:3])
    except ValueError:
        raise UserError(f"invalid vLLM version {version!r}; expected a release like 0.32.0") from None


def version_rules(engine: Engine, version: str) -> dict[str, Any]:
    """The capacity rules in force for one engine version (later rules override earlier keys)."""
    wanted = parse_version(version)
    rules = engine.capacity["version_rules"]
    if wanted < parse_version(rules[0]["since"]):
        raise UserError(f"vLLM {version} is older than the oldest modelled release ({rules[0]['since']})")
    merged: dict[str, Any] = {}
    for rule in rules:
        if parse_version(rule["since"]) <= wanted:
            merged.update({k: v for k, v in rule.items() if k != "since"})
    return merged


def weight_split_gib(model: Model) -> tuple[float, float]:
    """(dense bf16 GiB, MXFP4 expert GiB) of the checkpoint, counted from the architecture."""
    a = model.architecture
    q, kv = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim
    attention = a.hidden_size * q + q + 2 * (a.hidden_size * kv + kv) + q * a.hidden_size + a.hidden_size
    attention += a.num_attention_heads  # attention sinks
    experts = a.num_local_experts
    router = a.hidden_size * experts + experts
    expert_bias = experts * (2 * a.intermediate_size + a.hidden_size)
    dense = a.num_hidden_layers * (attention + router + expert_bias + 2 * a.hidden_size)
    dense += 2 * a.vocab_size * a.hidden_size + a.hidden_size  # embedding, lm_head, final norm
    expert_values = a.num_hidden_layers * experts * 3 * a.hidden_size * a.intermediate_size
    mxfp4_bytes = expert_values * (0.5 + 1 / 32)  # 4-bit values plus one uint8 scale per 32
    return 2 * dense / GIB, mxfp4_bytes / GIB


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def weights_gib_per_gpu(model: Model, engine: Engine, kernel: str, tp: int) -> tuple[float, str]:
    """GiB vLLM reports as "Model loading took" per GPU, and where the number comes from."""
    observed = model.observed_weights_gib.get(kernel, {}).get(tp)
    if observed is not None:
        return observed, "observed"
    dense, experts = weight_split_gib(model)
    a = model.architecture
    pad = engine.moe_kernels[kernel]
    hidden = _round_up(a.hidden_size, pad["hidden_multiple"])
    inter = _round_up(a.intermediate_size // tp, pad["intermediate_multiple"])
    padding = hidden * inter * tp / (a.hidden_size * a.intermediate_size)
    return dense / tp + experts * padding / tp, "computed"


def scheduler_defaults(engine: Engine, gpu: Gpu) -> tuple[int, int]:
    """vllm serve's default (max_num_batched_tokens, max_num_seqs) on this GPU."""
    rules = engine.capacity["scheduler_defaults"]
    large = rules["large_gpu"]
    if gpu.total_gib >= large["min_total_gib"] and not any(x in gpu.name for x in large["name_excludes"]):
        return large["max_num_batched_tokens"], large["max_num_seqs"]
    return rules["other"]["max_num_batched_tokens"], rules["other"]["max_num_seqs"]


def _interpolate(table: Mapping[Any, float], x: float) -> float:
    """Piecewise-linear through the table's points, extended linearly past both ends."""
    points = sorted((float(k), float(v)) for k, v in table.items())
    if len(points) == 1:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1 or (x1, y1) == points[-1]:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Capacity:
    """One planner answer: the memory budget of one GPU of the deployment and what it holds."""

    model: str
    gpu: str
    count: int
    tensor_parallel_size: int
    max_model_len: int
    vllm_version: str
    kv_cache_dtype: str
    gpu_memory_utilization: float
    max_num_batched_tokens: int
    max_num_seqs: int
    total_gib_per_gpu: float
    weights_gib_per_gpu: float
    weights_source: str
    moe_kernel: str
    residual_gib_per_gpu: float
    cudagraph_gib_per_gpu: float
    kv_cache_gib_per_gpu: float
    kv_cache_blocks: int
    blocks_per_request: int
    kv_cache_tokens: int
    max_concurrency: float
    max_model_len_that_fits: int
    fits: bool
    reason: str

    @property
    def concurrency_text(self) -> str:
        """Exactly as vLLM prints it."""
        return f"{self.max_concurrency:.2f}x"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(
    catalog: Catalog,
    model: Model,
    gpu: Gpu,
    count: int,
    *,
    context: int | None = None,
    kv_cache_dtype: str | None = None,
    gpu_memory_utilization: float | None = None,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    vllm_version: str | None = None,
    options: Mapping[str, Any] | None = None,
    activations_outside_budget: bool = False,
) -> Capacity:
    """Compute what vLLM would allocate for `model` on `count` x `gpu` with tensor parallelism = count.

    `options` are the engine flags a recipe would pass (snake_case); explicit keyword arguments win over
    them, and vLLM's own defaults fill the rest. `activations_outside_budget` models engines whose memory
    fraction covers only weights and KV cache (SGLang's --mem-fraction-static): no residual is subtracted.
    """
    engine = catalog.engine("vllm")
    options = dict(options or {})
    version = vllm_version or engine.version
    rules = version_rules(engine, version)
    arch = model.architecture
    if count not in VALID_TP:
        raise UserError(f"GPU count {count} cannot be a tensor-parallel size; use one of {VALID_TP}")
    max_len = context if context is not None else arch.max_position_embeddings
    if not 0 < max_len <= arch.max_position_embeddings:
        raise UserError(f"--context {max_len} is out of range; allowed 1..{arch.max_position_embeddings}")
    if gpu.generation not in engine.supported_generations:
        raise UserError(f"{gpu.name} ({gpu.generation}) is not supported by vLLM for gpt-oss")

    default_mbt, default_seqs = scheduler_defaults(engine, gpu)
    mbt = max_num_batched_tokens or options.get("max_num_batched_tokens") or default_mbt
    seqs = max_num_seqs or options.get("max_num_seqs") or default_seqs
    util = gpu_memory_utilization or options.get("gpu_memory_utilization") or rules["gpu_memory_utilization"]
    capture = options.get("max_cudagraph_capture_size") or rules.get("default_cudagraph_capture_size", 1024)
    kv_dtype = kv_cache_dtype or options.get("kv_cache_dtype") or "auto"
    for label, value in (("max-num-batched-tokens", mbt), ("max-num-seqs", seqs)):
        if value <= 0:
            raise UserError(f"{label} must be positive, got {value}")
    if not 0 < util <= 1:
        raise UserError(f"gpu-memory-utilization must be in (0, 1], got {util}")
    # vLLM's SchedulerConfig.verify_max_model_len (vllm/config/scheduler.py) refuses to start otherwise.
    if mbt < seqs:
        raise UserError(f"--max-num-batched-tokens {mbt} is below --max-num-seqs {seqs}: vLLM {version} refuses to "
                        f"start; allowed: at least {seqs} (or a lower --max-num-seqs)")
    if options.get("enable_chunked_prefill") is False and mbt < max_len:
        raise UserError(f"--max-num-batched-tokens {mbt} is below --context {max_len} with chunked prefill off: "
                        f"vLLM {version} refuses to start; allowed: at least {max_len}")
    if kv_dtype not in ("auto", "fp8"):
        raise UserError(f"kv-cache-dtype {kv_dtype!r} is not modelled; use auto or fp8")

    tp = count
    kernel = engine.generations[gpu.generation]["moe_kernel"]
    weights, weights_source = weights_gib_per_gpu(model, engine, kernel, tp)
    if rules.get("residual_gib"):
        residual = _interpolate(rules["residual_gib"], mbt)
    else:
        residual = rules["residual_base_gib"] + rules["residual_per_seq_gib"] * seqs
    cudagraph = _interpolate(rules["cudagraph_gib"], capture)
    if activations_outside_budget:
        residual = cudagraph = 0.0
    kv_gib = gpu.total_gib * util - weights - residual - cudagraph

    block = engine.capacity["block_size"]
    kv_bytes_per_value = 1 if kv_dtype == "fp8" else 2
    page = 2 * block * (arch.num_key_value_heads // tp) * arch.head_dim * kv_bytes_per_value
    layers_per_group = arch.num_hidden_layers // 2
    blocks = max(0, math.floor(kv_gib * GIB / (page * layers_per_group)))
    window_tokens = arch.sliding_window - 1 + rules["window_factor"] * mbt

    def blocks_for(length: int) -> int:
        return -(-length // block) + -(-min(window_tokens, length) // block) + 1

    per_request = blocks_for(max_len)
    concurrency = blocks / per_request
    longest = _longest_fitting(blocks, blocks_for, arch.max_position_embeddings, block)
    if kv_gib <= 0:
        fits, reason = False, (
            f"weights {weights:.2f} GiB + activations {residual + cudagraph:.2f} GiB exceed "
            f"{util:.2f} x {gpu.total_gib:.2f} GiB per GPU"
        )
    elif blocks < per_request:
        fits, reason = False, (
            f"one {max_len}-token request needs {per_request} KV blocks but only {blocks} fit "
            f"({kv_gib:.2f} GiB); the longest context that fits is {longest}"
        )
    else:
        fits, reason = True, ""
    return Capacity(
        model=model.name, gpu=gpu.name, count=count, tensor_parallel_size=tp, max_model_len=max_len,
        vllm_version=version, kv_cache_dtype=kv_dtype, gpu_memory_utilization=util,
        max_num_batched_tokens=mbt, max_num_seqs=seqs, total_gib_per_gpu=gpu.total_gib,
        weights_gib_per_gpu=round(weights, 3), weights_source=weights_source, moe_kernel=kernel,
        residual_gib_per_gpu=round(residual, 3), cudagraph_gib_per_gpu=round(cudagraph, 3),
        kv_cache_gib_per_gpu=round(max(kv_gib, 0.0), 3), kv_cache_blocks=blocks,
        blocks_per_request=per_request, kv_cache_tokens=blocks * block, max_concurrency=concurrency,
        max_model_len_that_fits=longest, fits=fits, reason=reason,
    )


def _longest_fitting(blocks: int, blocks_for: Any, ceiling: int, block: int) -> int:
    """The largest max_model_len (a multiple of the block size) whose one request fits in `blocks`."""
    lo, hi = 0, ceiling // block
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if blocks_for(mid * block) <= blocks:
            lo = mid
        else:
            hi = mid - 1
    return lo * block
