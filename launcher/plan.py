"""Prices and ranks every fitting recipe: one Offer per (GPU, count, cloud, region, instance type).

Prices come from SkyPilot's own catalog reader, on SkyPilot's cached catalog files for every cloud that
has one; clouds that have none (offline, never fetched) are read from the snapshot bundled in
catalogs/prices/, and the plan says so with the snapshot's date. Nothing here launches anything.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from launcher import recipes as recipes_mod
from launcher import skyapi, state, throughput
from launcher.catalog import Catalog, Gpu, Model, catalog_dir
from launcher.errors import NoFitError, UserError
from launcher.recipes import Recipe

OBJECTIVES = ("cost", "cost-per-token")
SNAPSHOT_DATE = "2026-11"  # catalogs/prices/SNAPSHOT.md


@dataclass(frozen=True)
class Offer:
    gpu: str
    count: int
    cloud: str
    region: str
    instance_type: str
    price_per_hour: float
    spot: bool
    max_concurrency: float
    max_model_len: int
    est_output_tokens_per_s: float
    usd_per_million_output_tokens: float | None
    throughput_basis: str
    price_source: str
    recipe: Recipe = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("recipe")
        d["max_concurrency"] = round(self.max_concurrency, 2)
        if self.usd_per_million_output_tokens is not None:
            d["usd_per_million_output_tokens"] = round(self.usd_per_million_output_tokens, 4)
        return d


@dataclass(frozen=True)
class Plan:
    model: str
    offers: tuple[Offer, ...]
    recipes: tuple[Recipe, ...]
    clouds: tuple[str, ...]
    notes: tuple[str, ...]
    objective: str
    no_cloud_enabled: bool = False  # priced every catalog cloud because SkyPilot has none enabled


def resolve_clouds(clouds: Sequence[str] | None, infra: str | None) -> tuple[list[str], list[str]]:
    """(clouds to price, notes). --infra/--clouds win; else SkyPilot's enabled clouds; else all."""
    if infra:
        cloud = infra.split("/")[0].lower()
        clouds = [cloud]
    if clouds:
        unknown = [c for c in clouds if c.lower() not in skyapi.PRICED_CLOUDS]
        if unknown:
            raise UserError(f"cannot price cloud(s) {', '.join(unknown)}; priced clouds: "
                            f"{', '.join(skyapi.PRICED_CLOUDS)}")
        return [c.lower() for c in clouds], []
    enabled = [c for c in skyapi.enabled_clouds() if c in skyapi.PRICED_CLOUDS]
    if enabled:
        return enabled, [f"clouds enabled in SkyPilot: {', '.join(enabled)}"]
    return list(skyapi.PRICED_CLOUDS), [
        "no cloud is enabled in SkyPilot (run `sky check`); showing every cloud in the catalog"]


def _rows(gpus: Sequence[Gpu], clouds: Sequence[str]) -> tuple[list[dict], list[str]]:
    names = sorted({n for g in gpus for n in g.catalog_names})
    live = [c for c in clouds if os.path.exists(skyapi.real_catalog_path(c))]
    offline = [c for c in clouds if c not in live]
    rows, notes = [], []
    for row in skyapi.list_gpu_offers(names, live) if live else []:
        rows.append(dict(row, source="skypilot catalog"))
    if offline:
        snapshot = catalog_dir() / "prices" / "v8"
        have = [c for c in offline if (snapshot / c / "vms.csv").is_file()]
        if have:
            runtime = state.home() / "cache" / f"snapshot-{SNAPSHOT_DATE}"
            for row in skyapi.list_gpu_offers_from_snapshot(names, have, str(snapshot), str(runtime)):
                rows.append(dict(row, source=f"bundled snapshot {SNAPSHOT_DATE}"))
            notes.append(f"prices for {', '.join(have)} from the bundled catalog snapshot of {SNAPSHOT_DATE} "
                         "(SkyPilot has no cached catalog for them; `sky check` and a launch refresh it)")
    return rows, notes


def candidate_recipes(catalog: Catalog, model: Model, gpu_specs: Sequence[tuple[Gpu, int | None]],
                      profile: str | None, context: int | None, dummy_weights: bool = False,
                      engine_name: str = "vllm", tool_server: str | None = None) -> list[Recipe]:
    """The recipes a plan prices: the asked GPUs (or all), at the asked count or the profile's count."""
    engine = catalog.engine(engine_name)
    profile = profile or engine.default_profile
    out: list[Recipe] = []
    reasons: list[str] = []
    specs = gpu_specs or [(g, None) for g in catalog.gpus.values()
                          if g.generation in engine.supported_generations]
    for gpu, count in specs:
        try:
            counts = [count] if count else _profile_counts(catalog, model, gpu, profile, context, engine_name)
        except NoFitError as exc:
            reasons.append(str(exc))
            continue
        for n in counts:
            try:
                out.append(recipes_mod.build(catalog, model, gpu, n, engine=engine_name, profile=profile,
                                             context=context, dummy_weights=dummy_weights,
                                             tool_server=tool_server))
            except NoFitError as exc:
                reasons.append(str(exc))
    if not out:
        detail = reasons[0] if len(reasons) == 1 else f"{len(reasons)} GPU choices checked, e.g. {reasons[0]}"
        raise NoFitError(f"no GPU fits {model.name}" + (f" at context {context}" if context else "") + f": {detail}")
    return out


def _profile_counts(catalog: Catalog, model: Model, gpu: Gpu, profile: str, context: int | None,
                    engine_name: str) -> list[int]:
    """[the profile's GPU count] for the smallest fit; NoFitError (with the last reason) if none fits."""
    multiplier = catalog.engine(engine_name).profiles[profile].gpu_multiplier
    last: NoFitError | None = None
    for count in (1, 2, 4, 8):
        try:
            recipes_mod.build(catalog, model, gpu, count, engine=engine_name, profile=profile, context=context)
        except NoFitError as exc:
            last = exc
            continue
        wanted = count * multiplier
        if wanted > 8:
            raise NoFitError(f"{model.name} on {gpu.name}: the {profile} profile needs {wanted} GPUs (max 8)")
        return [wanted]
    raise last or NoFitError(f"{model.name} does not fit on {gpu.name}")


def build(catalog: Catalog, model: Model, *, gpu_specs: Sequence[tuple[Gpu, int | None]] = (),
          clouds: Sequence[str] | None = None, infra: str | None = None, spot: bool = False,
          context: int | None = None, profile: str | None = None, optimize: str = "cost",
          dummy_weights: bool = False, engine: str = "vllm", tool_server: str | None = None) -> Plan:
    if optimize not in OBJECTIVES:
        raise UserError(f"unknown objective {optimize!r}; choose one of: {', '.join(OBJECTIVES)}")
    recipes = candidate_recipes(catalog, model, gpu_specs, profile, context, dummy_weights, engine, tool_server)
    cloud_list, notes = resolve_clouds(clouds, infra)
    region = infra.split("/")[1] if infra and "/" in infra else None
    rows, price_notes = _rows([r.gpu for r in recipes], cloud_list)
    best: dict[tuple, Offer] = {}
    for recipe in recipes:
        estimate = throughput.estimate(catalog, model.name, recipe.gpu.name, recipe.count)
        for row in rows:
            if catalog.gpu_for_catalog_name(row["accelerator_name"]) is not recipe.gpu:
                continue
            if row["accelerator_count"] != recipe.count or (region and row["region"] != region):
                continue
            price = row["spot_price"] if spot else row["price"]
            if price is None:
                continue
            offer = Offer(
                gpu=recipe.gpu.name, count=recipe.count, cloud=row["cloud"], region=row["region"],
                instance_type=row["instance_type"], price_per_hour=price, spot=spot,
                max_concurrency=recipe.capacity.max_concurrency, max_model_len=recipe.max_model_len,
                est_output_tokens_per_s=estimate.output_tokens_per_s,
                usd_per_million_output_tokens=throughput.usd_per_million_output_tokens(
                    price, estimate.output_tokens_per_s),
                throughput_basis=estimate.basis, price_source=row["source"], recipe=recipe,
            )
            key = (offer.cloud, offer.region, offer.instance_type)
            if key not in best or offer.price_per_hour < best[key].price_per_hour:
                best[key] = offer
    if optimize == "cost":
        def order(o: Offer) -> tuple:
            return (o.price_per_hour, -o.max_concurrency, o.cloud, o.region, o.instance_type)
    else:
        def order(o: Offer) -> tuple:
            per_token = o.usd_per_million_output_tokens
            return (per_token if per_token is not None else float("inf"), o.price_per_hour, o.cloud,
                    o.region, o.instance_type)
    offers = tuple(sorted(best.values(), key=order))
    no_cloud = any(n.startswith("no cloud is enabled") for n in notes)
    return Plan(model.name, offers, tuple(recipes), tuple(cloud_list), tuple(notes + price_notes), optimize,
                no_cloud)
