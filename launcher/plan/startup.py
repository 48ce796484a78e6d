"""Time to ready from measured phases (catalogs/startup.yaml): SkyServe's readiness window and plan's estimate.

SkyServe probes a replica only after its launch (provisioning, then setup's install and download) has
finished, so the readiness window (initial_delay_seconds) covers the run block alone: the engine's start as
measured on a GPU, plus reading real weights from disk, times a stated margin. `plan`'s estimate adds
provisioning, install and download from stated figures. Imports nothing from launcher but catalog, schema and errors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from launcher.errors import CatalogError
from launcher.plan import schema
from launcher.plan.catalog import Model, catalog_dir

GB_PER_GIB = 1.073741824


@dataclass(frozen=True)
class StartupTable:
    measured_engine: str
    engine_start_seconds: Mapping[str, Mapping[str, Mapping[str, float]]]  # model -> GPU -> {cold, warm}
    weights_read_gb_per_s: float
    unmeasured_gpu_factor: float
    estimate_unmeasured_factor: float
    margin_factor: float
    margin_plus_seconds: float
    provision_seconds: Mapping[str, float]
    install_seconds: float
    download_gb_per_s: float


@functools.lru_cache(maxsize=8)
def load(directory: str | None = None) -> StartupTable:
    path = Path(directory) if directory else catalog_dir()
    path = path / "startup.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    doc = schema.check(schema.StartupFile, raw, "startup.yaml")
    table = StartupTable(
        measured_engine=doc.measured_engine,
        engine_start_seconds={m: {g: {k: v for k, v in states.model_dump().items() if v is not None}
                                  for g, states in by_gpu.items()}
                              for m, by_gpu in doc.engine_start_seconds.items()},
        weights_read_gb_per_s=doc.weights_read_gb_per_s, unmeasured_gpu_factor=doc.unmeasured_gpu_factor,
        estimate_unmeasured_factor=doc.estimate_unmeasured_factor,
        margin_factor=doc.probe_margin.factor, margin_plus_seconds=doc.probe_margin.plus_seconds,
        provision_seconds=doc.provision_seconds, install_seconds=doc.install_seconds,
        download_gb_per_s=doc.download_gb_per_s,
    )
    if "default" not in table.provision_seconds:
        raise CatalogError(f"{path}: provision_seconds needs a default figure")
    for model, by_gpu in table.engine_start_seconds.items():
        for gpu, states in by_gpu.items():
            if "cold" not in states:
                raise CatalogError(f"{path}: engine_start_seconds.{model}.{gpu} needs a cold figure")
    return table


def engine_start(model: Model, gpu: str, *, engine: str = "vllm", cached: bool = False,
                 table: StartupTable | None = None, estimate: bool = False) -> tuple[float, str]:
    """Seconds from the run block's start to /health 200 (dummy weights) and where the figure comes from.
    Unmeasured GPUs and engines: the slowest measured start x the window's safe factor, or x the estimate's."""
    table = table or load()
    factor = table.estimate_unmeasured_factor if estimate else table.unmeasured_gpu_factor
    by_gpu = table.engine_start_seconds.get(model.base or model.name)
    if engine != table.measured_engine:
        slowest = max(s["cold"] for m in table.engine_start_seconds.values() for s in m.values())
        return slowest * factor, f"{engine} not measured: slowest measured start x factor"
    if not by_gpu:
        by_gpu = {g: s for m in table.engine_start_seconds.values() for g, s in m.items()}
        slowest = max(s["cold"] for s in by_gpu.values())
        return slowest * factor, f"{model.name} not measured: slowest measured start x factor"
    state = "warm" if cached and "warm" in by_gpu.get(gpu, {}) else "cold"
    if gpu in by_gpu:
        return by_gpu[gpu][state], f"measured on {gpu} ({state})"
    slowest = max(s["cold"] for s in by_gpu.values())
    return slowest * factor, f"{gpu} not measured: slowest measured {model.name} start x factor"


def weights_read_seconds(model: Model, dummy_weights: bool, table: StartupTable | None = None) -> float:
    table = table or load()
    return 0.0 if dummy_weights else model.checkpoint_gib * GB_PER_GIB / table.weights_read_gb_per_s


def initial_delay_seconds(recipes: Sequence, table: StartupTable | None = None) -> int:
    """SkyServe's readiness window for replicas that may land on any of `recipes`: the slowest cold start."""
    table = table or load()
    worst = max(engine_start(r.model, r.gpu.name, engine=r.engine.engine, table=table)[0]
                + weights_read_seconds(r.model, r.dummy_weights, table) for r in recipes)
    return int(math.ceil((worst * table.margin_factor + table.margin_plus_seconds) / 10.0) * 10)


def time_to_ready(recipe, infra: str, *, cached: bool = False, table: StartupTable | None = None) -> dict:
    """Estimated seconds from `up` to answering on a fresh node, phase by phase (plan prints the total)."""
    table = table or load()
    kind = infra.split("/", 1)[0].lower()
    provision = table.provision_seconds.get(kind, table.provision_seconds["default"])
    download = 0.0 if recipe.dummy_weights else recipe.model.checkpoint_gib * GB_PER_GIB / table.download_gb_per_s
    start, basis = engine_start(recipe.model, recipe.gpu.name, engine=recipe.engine.engine, cached=cached,
                                table=table, estimate=True)
    start += weights_read_seconds(recipe.model, recipe.dummy_weights, table)
    phases = {"provision": provision, "install": table.install_seconds, "download": download, "start": start}
    return {"seconds": round(sum(phases.values())), "phases": {k: round(v) for k, v in phases.items()},
            "start_basis": basis}
