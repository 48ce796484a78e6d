"""A documented throughput model: output tokens/s per deployment, $ per 1M output tokens, and the
SkyServe target_qps_per_replica derived from it. Figures and rules live in catalogs/throughput.yaml.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import yaml

from launcher.errors import CatalogError
from launcher.plan import schema
from launcher.plan.catalog import Catalog, catalog_dir


@dataclass(frozen=True)
class Estimate:
    output_tokens_per_s: float
    basis: str  # which figure, and how it was scaled


@functools.lru_cache(maxsize=2)
def _data(directory: str) -> dict[str, Any]:
    path = f"{directory}/throughput.yaml"
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    schema.check(schema.ThroughputFile, data, "throughput.yaml")
    return data


def estimate(catalog: Catalog, model: str, gpu: str, count: int) -> Estimate:
    data = _data(str(catalog_dir()))
    known = catalog.models.get(model)
    names = {model, known.base} if known is not None and known.base else {model}  # a fine-tune runs as its base
    figures = [f for f in data["figures"] if f["model"] in names]
    exact = [f for f in figures if f["gpu"] == gpu and f["count"] == count]
    if exact:
        f = exact[0]  # measured rows come first in the file
        return Estimate(f["output_tokens_per_s"], f"{f['source']}, vLLM {f['vllm']}")
    bandwidth = catalog.gpus[gpu].bandwidth_gbps
    same_count = [f for f in figures if f["count"] == count]
    pool, scale, how = same_count, 1.0, ""
    if not pool:
        pool = [f for f in figures if f["count"] == 1]
        scale = data["count_scaling"][count]
        how = f" x {scale} for {count} GPUs"
    if not pool:
        return Estimate(0.0, "no figure for this model")
    ref = min(pool, key=lambda f: abs(catalog.gpus[f["gpu"]].bandwidth_gbps - bandwidth))
    ratio = bandwidth / catalog.gpus[ref["gpu"]].bandwidth_gbps
    tokens = ref["output_tokens_per_s"] * ratio * scale
    return Estimate(round(tokens, 1), f"{ref['gpu']}:{ref['count']} figure x {ratio:.2f} bandwidth{how}")


def usd_per_million_output_tokens(price_per_hour: float, tokens_per_s: float) -> float | None:
    if tokens_per_s <= 0:
        return None
    return price_per_hour / (tokens_per_s * 3600) * 1e6


def target_qps_per_replica(catalog: Catalog, model: str, gpu: str, count: int) -> float:
    rule = _data(str(catalog_dir()))["autoscale"]
    tokens = estimate(catalog, model, gpu, count).output_tokens_per_s
    return max(0.1, round(tokens * rule["headroom"] / rule["output_tokens_per_request"], 1))
