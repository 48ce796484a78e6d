"""Prices and ranks every fitting recipe: one Offer per (GPU, count, cloud), or per region with --all-regions.

Prices come from SkyPilot's own catalog reader, on SkyPilot's cached catalog files for every cloud that
has one; clouds that have none (offline, never fetched) are read, in this process, from the snapshot
bundled in catalogs/prices/ (parsed once, then cached), and the plan says so with the snapshot's date.
Infra with no price list (Kubernetes, SSH node pools, clouds with no catalog) is offered unpriced, after
the priced offers. Nothing here launches anything.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import ApiServerUnreachableError, NoFitError, SkyError, UserError
from launcher.plan import recipes as recipes_mod
from launcher.plan import startup, throughput
from launcher.plan.catalog import Catalog, Gpu, Model, load_price_snapshot
from launcher.plan.recipes import Recipe
from launcher.sky import skyapi, state

OBJECTIVES = ("cost", "cost-per-token")


@dataclass(frozen=True)
class Offer:
    gpu: str
    count: int
    cloud: str
    region: str
    instance_type: str
    price_per_hour: float | None  # None: no price is known for this infra (price_note says why)
    spot: bool
    max_concurrency: float
    max_model_len: int
    est_output_tokens_per_s: float
    usd_per_million_output_tokens: float | None
    throughput_basis: str
    price_source: str
    recipe: Recipe = field(repr=False, compare=False)
    price_note: str = ""

    def time_to_ready(self) -> dict[str, Any]:
        """Estimated seconds from `up` to answering on a fresh node, by phase (catalogs/startup.yaml)."""
        return startup.time_to_ready(self.recipe, self.cloud)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("recipe")
        d["max_concurrency"] = round(self.max_concurrency, 2)
        if self.usd_per_million_output_tokens is not None:
            d["usd_per_million_output_tokens"] = round(self.usd_per_million_output_tokens, 4)
        d["time_to_ready"] = self.time_to_ready()
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
    all_regions: bool = False  # one offer per region and instance type, not per (GPU, count, cloud)


# Why an infra has no price, shown in `plan` (anything else: no catalog in SkyPilot's cache or the snapshot).
UNPRICED_WHY = {
    "kubernetes": "Kubernetes has no price list (SkyPilot counts it $0 unless kubernetes.pricing is set); "
                  "the cluster's GPUs are matched at launch",
    "ssh": "an SSH node pool is your own machines: no price list; its GPUs are matched at launch",
}
NO_SPOT = ("kubernetes", "ssh")  # infra SkyPilot never launches spot instances on


def snapshot_folder() -> Path:
    return load_price_snapshot().folder


def snapshot_clouds() -> list[str]:
    """Clouds the bundled snapshot prices (catalogs/prices/snapshot.yaml)."""
    return sorted(load_price_snapshot().clouds)


def check_infra(clouds: Sequence[str] | None, infra: str | None) -> tuple[list[str] | None, tuple | None]:
    """Validate --clouds / --infra with SkyPilot's own registry and infra parser (no pricing, no request).

    Returns (canonical cloud names or None, (cloud, region, zone) or None); UserError names what is allowed.
    """
    if clouds is not None and infra:
        raise UserError("give --clouds or --infra, not both (--infra pins one cloud, --clouds several)")
    pin = skyapi.parse_infra(infra) if infra else None
    if pin:
        check_region_zone(infra or "", pin)
    if clouds is None:
        return None, pin
    if not clouds:
        raise UserError("--clouds is empty; give cloud names separated by commas, e.g. --clouds aws,gcp")
    names, unknown = [], []
    for cloud in clouds:
        canonical = skyapi.canonical_infra(cloud)
        if canonical is None:
            unknown.append(cloud)
        elif canonical not in names:
            names.append(canonical)
    if unknown:
        raise UserError(f"--clouds: unknown cloud(s) {', '.join(unknown)}; SkyPilot knows: "
                        f"{', '.join(skyapi.known_infra())}")
    return names, pin


def check_region_zone(infra: str, pin: tuple) -> str | None:
    """A pinned region/zone must be in the cloud's catalog (UserError naming what is allowed, offline);
    returns which catalog was read, or None when none has this cloud (Kubernetes contexts, SSH pools and
    Slurm clusters are not in a catalog): not checked here."""
    cloud, region, zone = pin
    if not (region or zone) or cloud in ("kubernetes", "ssh", "slurm"):
        return None
    reason, where = skyapi.region_zone_problem(cloud, region, zone, str(snapshot_folder()))
    if reason:
        raise UserError(f"--infra {infra}: {reason} (from {where})")
    return where


def resolve_clouds(clouds: Sequence[str] | None, infra: str | None) -> tuple[list[str], list[str]]:
    """(infra to plan on, notes). --infra/--clouds win; else SkyPilot's enabled infra; else the snapshot's."""
    names, pin = check_infra(clouds, infra)
    if pin:
        return [pin[0]], []
    if names:
        return names, []
    try:
        enabled = list(dict.fromkeys(skyapi.enabled_clouds()))
    except ApiServerUnreachableError as exc:  # pricing needs no server: say so and price the catalog
        return snapshot_clouds(), [f"every cloud in the catalog is shown: could not ask the API server which "
                                   f"are enabled ({exc})"]
    if enabled:
        return enabled, [f"infra enabled in SkyPilot: {', '.join(enabled)}"]
    return snapshot_clouds(), [
        "no cloud is enabled in SkyPilot (run `sky check`); showing every cloud in the catalog"]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


_ROW_TYPES = {"cloud": str, "region": str, "instance_type": str, "accelerator_name": str,
              "accelerator_count": float, "price": float}


def _valid_rows(rows: Any) -> bool:
    """A cache entry is trusted only if every row has the shape the reader returns."""
    if not isinstance(rows, list):
        return False
    for row in rows:
        if not isinstance(row, dict):
            return False
        for key, kind in _ROW_TYPES.items():
            value = row.get(key)
            if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
                return False
        if not (row.get("spot_price") is None or isinstance(row.get("spot_price"), (int, float))):
            return False
    return True


def _snapshot_rows(names: Sequence[str], clouds: Sequence[str]) -> list[dict]:
    """Snapshot rows for these clouds, read by SkyPilot's reader once and then from a parsed cache.

    The cache ($GPTOSS_SKY_HOME/cache/price-snapshot.json) is keyed by the snapshot files' SHA-256, the
    accelerator names and SkyPilot's version; an entry that is missing, corrupt, half-written or stale is
    read again from the snapshot and the cache rewritten atomically. A cache that cannot be written is
    only slower, never an error.
    """
    import json

    folder = snapshot_folder()
    key = {"format": 1, "sky": skyapi.skypilot_version(), "names": sorted(names)}
    try:
        path: Path | None = state.home() / "cache" / "price-snapshot.json"
    except (OSError, UserError):  # an unusable GPTOSS_SKY_HOME: no cache, still a plan
        path = None
    try:
        cached = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):  # missing, unreadable, truncated or not JSON: rebuilt below
        cached = {}
    if not isinstance(cached, dict) or cached.get("key") != key or not isinstance(cached.get("clouds"), dict):
        cached = {}
    entries = dict(cached.get("clouds") or {}) if cached else {}
    rows: list[dict] = []
    changed = False
    for cloud in clouds:
        digest = _sha256(folder / cloud / "vms.csv")
        entry = entries.get(cloud)
        if not (isinstance(entry, dict) and entry.get("sha256") == digest and _valid_rows(entry.get("rows"))):
            entry = {"sha256": digest,
                     "rows": skyapi.list_gpu_offers_from_snapshot(names, cloud, str(folder))}
            entries[cloud] = entry
            changed = True
        rows += entry["rows"]
    if changed and path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "clouds": entries}))
            os.replace(tmp, path)
        except OSError:
            pass
    return rows


def _rows(names: Sequence[str], clouds: Sequence[str]) -> tuple[list[dict], list[str], list[str]]:
    """(priced rows, infra with no price anywhere, notes).

    A SkyPilot catalog cache that cannot be read (half-downloaded, edited by hand) costs that cloud its live
    prices, not the plan: it is priced from the snapshot, and the note says which file to delete.
    """
    live = [c for c in clouds if os.path.exists(skyapi.real_catalog_path(c))]
    rows, notes, broken = [], [], []
    for cloud in live:
        try:
            found = skyapi.list_gpu_offers(names, [cloud])
        except SkyError as exc:
            broken.append(cloud)
            notes.append(f"SkyPilot's cached {cloud} catalog {skyapi.real_catalog_path(cloud)} cannot be read "
                         f"({str(exc).split(': ', 1)[-1][:120]}); delete it and SkyPilot fetches it again")
            continue
        rows += [dict(row, source="skypilot catalog") for row in found]
    offline = [c for c in clouds if c not in live or c in broken]
    have = [c for c in offline if c in snapshot_clouds()]
    unpriced = [c for c in offline if c not in have]
    if have:
        date = load_price_snapshot().date
        for row in _snapshot_rows(names, have):
            rows.append(dict(row, source=f"bundled snapshot {date}"))
        notes.append(f"prices for {', '.join(have)} from the bundled catalog snapshot of {date} "
                     "(SkyPilot has no usable cached catalog for them; `sky check` and a launch refresh it)")
    for cloud in unpriced:
        notes.append(f"{cloud}: price unknown: {_why_unpriced(cloud)}")
    return rows, unpriced, notes


def _why_unpriced(cloud: str) -> str:
    return UNPRICED_WHY.get(cloud, f"no {cloud} price list in SkyPilot's cache or the bundled snapshot "
                                   "(a launch fetches it); SkyPilot's optimizer decides at launch")


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


def _offer(recipe: Recipe, estimate: throughput.Estimate, spot: bool, cloud: str, where: str, instance: str,
           price: float | None, source: str, note: str = "") -> Offer:
    return Offer(
        gpu=recipe.gpu.name, count=recipe.count, cloud=cloud, region=where, instance_type=instance,
        price_per_hour=price, spot=spot, max_concurrency=recipe.capacity.max_concurrency,
        max_model_len=recipe.max_model_len, est_output_tokens_per_s=estimate.output_tokens_per_s,
        usd_per_million_output_tokens=None if price is None else throughput.usd_per_million_output_tokens(
            price, estimate.output_tokens_per_s),
        throughput_basis=estimate.basis, price_source=source, recipe=recipe, price_note=note,
    )


def build(catalog: Catalog, model: Model, *, gpu_specs: Sequence[tuple[Gpu, int | None]] = (),
          clouds: Sequence[str] | None = None, infra: str | None = None, spot: bool = False,
          context: int | None = None, profile: str | None = None, optimize: str = "cost",
          dummy_weights: bool = False, engine: str = "vllm", tool_server: str | None = None,
          all_regions: bool = False) -> Plan:
    """Price every fitting recipe on the infra asked for (or enabled).

    One offer per GPU kind, count and cloud (its cheapest region), or every region with `all_regions`.
    Infra with no price (Kubernetes, SSH pools, clouds with no catalog) gets one unpriced offer per recipe,
    ranked after every priced one; SkyPilot's optimizer decides among them at launch.
    """
    if optimize not in OBJECTIVES:
        raise UserError(f"unknown objective {optimize!r}; choose one of: {', '.join(OBJECTIVES)}")
    recipes = candidate_recipes(catalog, model, gpu_specs, profile, context, dummy_weights, engine, tool_server)
    cloud_list, notes = resolve_clouds(clouds, infra)
    pin = skyapi.parse_infra(infra) if infra else None
    region = pin[1] if pin else None
    names = sorted({n for g in catalog.gpus.values() for n in g.catalog_names})  # one cache for every plan
    rows, unpriced, price_notes = _rows(names, cloud_list)
    # The engine's port must be opened (SkyPilot `ports:`): infra that cannot open one is never offered.
    clouds_seen = {*unpriced, *(r["cloud"] for r in rows)}
    portless = {c: why for c in clouds_seen if (why := skyapi.missing_feature(c, "open_ports"))}
    for cloud, why in sorted(portless.items()):
        price_notes.append(f"{cloud}: not offered: {why} (the engine's port must be reachable)")
    rows = [r for r in rows if r["cloud"] not in portless]
    unpriced = [c for c in unpriced if c not in portless]
    offers: list[Offer] = []
    for recipe in recipes:
        estimate = throughput.estimate(catalog, model.name, recipe.gpu.name, recipe.count)
        offer = functools.partial(_offer, recipe, estimate, spot)
        for row in rows:
            if catalog.gpu_for_catalog_name(row["accelerator_name"]) is not recipe.gpu:
                continue
            if row["accelerator_count"] != recipe.count or (region and row["region"] != region):
                continue
            price = row["spot_price"] if spot else row["price"]
            if price is not None:
                offers.append(offer(row["cloud"], row["region"], row["instance_type"], price, row["source"]))
        for cloud in unpriced:
            if not (spot and cloud in NO_SPOT):
                offers.append(offer(cloud, region or "-", "-", None, "none", _why_unpriced(cloud)))
    kinds = list(catalog.gpus)  # unpriced offers: in gpus.yaml order (smaller, cheaper parts first), fewest GPUs

    def unpriced_rank(o: Offer) -> tuple:
        return (o.count, kinds.index(o.gpu) if o.gpu in kinds else len(kinds))

    if optimize == "cost":
        def order(o: Offer) -> tuple:
            if o.price_per_hour is None:
                return (1, *unpriced_rank(o), o.cloud, o.region)
            return (0, o.price_per_hour, -o.max_concurrency, o.cloud, o.region, o.instance_type)
    else:
        def order(o: Offer) -> tuple:
            if o.price_per_hour is None:
                return (1, *unpriced_rank(o), o.cloud, o.region)
            per_token = o.usd_per_million_output_tokens
            return (0, per_token if per_token is not None else float("inf"), o.price_per_hour, o.cloud,
                    o.region, o.instance_type)
    best: dict[tuple, Offer] = {}
    for o in sorted(offers, key=order):
        key = (o.cloud, o.region, o.instance_type, o.gpu, o.count) if all_regions else (o.gpu, o.count, o.cloud)
        best.setdefault(key, o)
    no_cloud = any(n.startswith("no cloud is enabled") for n in notes)
    return Plan(model.name, tuple(sorted(best.values(), key=order)), tuple(recipes), tuple(cloud_list),
                tuple(notes + price_notes), optimize, no_cloud, all_regions)
