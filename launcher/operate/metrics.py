"""The engine's own numbers for `status`: scrape /metrics (Prometheus text) twice a short window apart,
with the deployment's key, and reduce it to tokens/s, queue, KV-cache use, TTFT/TPOT p50 and prefix-cache
hit rate.

Which families to read is data (catalogs/engines/*.yaml `metrics`); the engine is recognised from the
text itself, so a record needs no engine field. Parsing is prometheus_client's. Reading never raises:
an unreachable or unreadable endpoint gives numbers of None and a reason. Imports no click/rich/sky.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from launcher.errors import GptossSkyError
from launcher.plan.catalog import Engine
from launcher.sky import skyapi

QUANTITIES = ("running", "waiting", "kv_cache_usage", "generation_tokens", "ttft_seconds", "tpot_seconds",
              "prefix_cache_queries", "prefix_cache_hits", "prefix_cache_hit_rate")
HISTOGRAMS = ("ttft_seconds", "tpot_seconds")
DEFAULT_WINDOW_S = 2.0


@dataclass(frozen=True)
class Scrape:
    """One /metrics reading, reduced to the quantities we use (summed over engines/ranks/labels)."""

    engine: str
    at: float  # monotonic seconds when the response arrived
    values: Mapping[str, float]  # gauges and counters present
    # histogram quantity -> every catalog family present, in catalog order: (family, ((bound, cumulative), ...))
    histograms: Mapping[str, tuple[tuple[str, tuple[tuple[float, float], ...]], ...]]

    @property
    def buckets(self) -> dict[str, tuple[tuple[float, float], ...]]:
        """Per histogram quantity, the first family with observations (else the first present)."""
        out = {}
        for quantity, found in self.histograms.items():
            observed = [b for _, b in found if b and b[-1][1] > 0]
            out[quantity] = (observed or [found[0][1]])[0]
        return out


@dataclass(frozen=True)
class EngineNumbers:
    """What `status` shows for one endpoint; None where the engine does not report it (yet)."""

    engine: str | None = None
    tokens_per_s: float | None = None  # generation tokens/s between the two scrapes
    running: int | None = None
    waiting: int | None = None
    kv_cache_pct: float | None = None
    ttft_p50_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_from: str | None = None  # the family it came from: per-request TPOT, else inter-token latency
    prefix_cache_hit_pct: float | None = None
    window_s: float | None = None
    latency_over: str | None = None  # "window" (requests finished between scrapes) or "lifetime"
    error: str | None = None  # why there are no numbers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _family_name(name: str) -> str:
    """Catalog spellings may carry a counter's _total; prometheus_client's family names do not."""
    return name[: -len("_total")] if name.endswith("_total") else name


def parse(text: str, engines: Iterable[Engine], at: float = 0.0) -> Scrape:
    """Reduce Prometheus text to a Scrape, recognising the engine by which catalog families are present.

    Raises ValueError when the text is not Prometheus exposition or names no known engine's families."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    best: tuple[int, Engine] | None = None
    for engine in engines:
        names = {_family_name(n) for q in QUANTITIES for n in engine.metrics.get(q, ())}
        found = len(names & families.keys())
        if found and (best is None or found > best[0]):
            best = (found, engine)
    if best is None:
        raise ValueError("no engine metrics in the response (is this vLLM's or SGLang's /metrics?)")
    engine = best[1]
    values: dict[str, float] = {}
    histograms: dict[str, tuple[tuple[str, tuple[tuple[float, float], ...]], ...]] = {}
    for quantity in QUANTITIES:
        present = [families[_family_name(n)] for n in engine.metrics.get(quantity, ())
                   if _family_name(n) in families]
        if not present:
            continue
        if quantity in HISTOGRAMS:  # all of them: a per-request family is empty until requests finish
            histograms[quantity] = tuple((f.name, _buckets(f)) for f in present)
            continue
        family = present[0]
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        if not samples:
            continue
        total = sum(s.value for s in samples)
        # Usage and rates are fractions per engine/rank: their mean, not their sum.
        values[quantity] = total / len(samples) if quantity in ("kv_cache_usage", "prefix_cache_hit_rate") \
            else total
    return Scrape(engine.engine, at, values, histograms)


def _buckets(family: Any) -> tuple[tuple[float, float], ...]:
    by_bound: dict[float, float] = {}
    for s in family.samples:
        if s.name.endswith("_bucket"):
            bound = float(s.labels["le"])
            by_bound[bound] = by_bound.get(bound, 0.0) + s.value
    return tuple(sorted(by_bound.items()))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear within the bucket that holds q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # in the +Inf bucket: the highest finite bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def _delta(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    before = dict(a)
    return [(bound, count - before.get(bound, 0.0)) for bound, count in b]


def summarize(a: Scrape, b: Scrape) -> EngineNumbers:
    """Numbers from two scrapes of one endpoint: rates over the window, gauges as of the second."""
    seconds = max(b.at - a.at, 1e-9)
    va, vb = a.values, b.values
    rate = None
    if "generation_tokens" in va and "generation_tokens" in vb:
        rate = max(0.0, vb["generation_tokens"] - va["generation_tokens"]) / seconds  # a restart resets it
    latency_over = None
    p50: dict[str, float | None] = {}
    source: dict[str, str | None] = {}
    for quantity in HISTOGRAMS:
        before = dict(a.histograms.get(quantity, ()))
        found = b.histograms.get(quantity, ())
        # The first family (catalog order) with observations in the window, else over its lifetime.
        windows = [(name, _delta(before.get(name, ()), bb)) for name, bb in found]
        picked = next(((n, w) for n, w in windows if w and w[-1][1] > 0), None)
        if picked:
            (source[quantity], window), latency_over = picked, "window"
            p50[quantity] = quantile(0.5, window)
            continue
        lifetime = next(((n, bb) for n, bb in found if bb and bb[-1][1] > 0), None)
        source[quantity] = lifetime[0] if lifetime else None
        p50[quantity] = quantile(0.5, lifetime[1]) if lifetime else None
        latency_over = latency_over or ("lifetime" if lifetime else None)
    hit = None
    if "prefix_cache_hit_rate" in vb:
        hit = 100 * vb["prefix_cache_hit_rate"]
    elif "prefix_cache_queries" in vb and "prefix_cache_hits" in vb:
        queries = vb["prefix_cache_queries"] - va.get("prefix_cache_queries", 0.0)
        hits = vb["prefix_cache_hits"] - va.get("prefix_cache_hits", 0.0)
        if queries <= 0:  # nothing queried in the window: the lifetime ratio
            queries, hits = vb["prefix_cache_queries"], vb["prefix_cache_hits"]
        hit = 100 * hits / queries if queries > 0 else None
    kv = vb.get("kv_cache_usage")
    return EngineNumbers(
        engine=b.engine, tokens_per_s=None if rate is None else round(rate, 1),
        running=_int(vb.get("running")), waiting=_int(vb.get("waiting")),
        kv_cache_pct=None if kv is None else round(100 * kv, 1),
        ttft_p50_s=_round(p50["ttft_seconds"]), tpot_p50_s=_round(p50["tpot_seconds"]),
        tpot_from=source["tpot_seconds"],
        prefix_cache_hit_pct=None if hit is None else round(hit, 1),
        window_s=round(seconds, 3), latency_over=latency_over)


def _int(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def fetch(http: httpx.Client, base_url: str, key: str, engines: Sequence[Engine]) -> Scrape:
    """GET {base_url}/metrics with the key. Raises httpx.HTTPError or ValueError with the reason."""
    response = http.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {key}"})
    if response.status_code != 200:
        raise ValueError(f"/metrics answered HTTP {response.status_code}")
    return parse(response.text, engines, time.monotonic())


def read_many(targets: Sequence[tuple[str, str]], engines: Sequence[Engine], *,
              window_s: float = DEFAULT_WINDOW_S, timeout_s: float = 5.0,
              sleep: Callable[[float], None] = time.sleep,
              memory: dict[str, Scrape] | None = None) -> list[EngineNumbers]:
    """EngineNumbers for each (base_url, key): every endpoint scraped, one wait, every endpoint again.

    The scrapes run in parallel, so the whole call takes about window_s plus the slowest answer.
    `memory` (url -> last scrape, updated here) lets `status --watch` measure from the previous refresh:
    an endpoint it holds is scraped once, over the whole time since (a short window under bursty load
    reads the instantaneous rate, 0 one second and the peak the next)."""
    if not targets:
        return []
    memory = {} if memory is None else memory

    def one(target: tuple[str, str]) -> Scrape | str:
        url, key = target
        try:
            return fetch(http, url, key, engines)
        except httpx.HTTPError as exc:
            return f"{url}/metrics unreachable: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}"
        except ValueError as exc:
            return f"{url}/metrics: {exc}"

    with httpx.Client(timeout=timeout_s) as http, ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        fresh = [t for t in targets if t[0] not in memory]
        scraped = dict(zip([t[0] for t in fresh], pool.map(one, fresh), strict=True))
        first = [memory[t[0]] if t[0] in memory else scraped[t[0]] for t in targets]
        if any(isinstance(scraped.get(t[0]), Scrape) for t in fresh):
            sleep(window_s)
        second = list(pool.map(lambda ts: one(ts[0]) if isinstance(ts[1], Scrape) else ts[1],
                               list(zip(targets, first, strict=True))))
    for (url, _), b in zip(targets, second, strict=True):
        if isinstance(b, Scrape):
            memory[url] = b
        else:
            memory.pop(url, None)
    out = []
    for a, b in zip(first, second, strict=True):
        if isinstance(a, str) or isinstance(b, str):
            out.append(EngineNumbers(error=a if isinstance(a, str) else b))  # type: ignore[arg-type]
        else:
            out.append(summarize(a, b))
    return out


def _aggregate(parts: Sequence[EngineNumbers]) -> EngineNumbers:
    """A service's numbers from its replicas': tokens/s and queues add up, percentages and p50s average."""
    good = [p for p in parts if p.error is None]
    if not good:
        return parts[0] if parts else EngineNumbers(error="no replica endpoint")

    def total(attr: str) -> Any:
        values = [getattr(p, attr) for p in good if getattr(p, attr) is not None]
        return round(sum(values), 1) if values else None

    def mean(attr: str) -> Any:
        values = [getattr(p, attr) for p in good if getattr(p, attr) is not None]
        return round(sum(values) / len(values), 4) if values else None

    running, waiting = total("running"), total("waiting")
    return EngineNumbers(engine=good[0].engine, tokens_per_s=total("tokens_per_s"),
                         running=_int(running), waiting=_int(waiting), kv_cache_pct=mean("kv_cache_pct"),
                         ttft_p50_s=mean("ttft_p50_s"), tpot_p50_s=mean("tpot_p50_s"),
                         prefix_cache_hit_pct=mean("prefix_cache_hit_pct"), window_s=good[0].window_s,
                         latency_over=good[0].latency_over)


def attach(rows: list[dict[str, Any]], engines: Sequence[Engine], *, window_s: float = DEFAULT_WINDOW_S,
           endpoint_of: Callable[[str], str] | None = None,
           read: Callable[..., list[EngineNumbers]] = read_many,
           memory: dict[str, Scrape] | None = None) -> list[dict[str, Any]]:
    """Add `engine` numbers to `status` rows (and to each replica of a service that exposes its address).

    Uses each deployment's own key; rows without a record, endpoint or key get an `engine.error`.
    endpoint_of(name) fills the endpoint of a cluster row (SkyPilot's status does not carry it)."""
    from launcher.sky import state

    targets: list[tuple[str, str]] = []
    where: list[tuple[dict[str, Any], dict[str, Any] | None]] = []  # (row, replica or None) per target
    for row in rows:
        try:
            key = state.read_key(state.load(row["name"]).key_path)
        except (GptossSkyError, OSError) as exc:  # a record without a key is a reason to show, not a crash
            row["engine"] = EngineNumbers(error=f"no key: {exc}").to_dict()
            continue
        if not row.get("endpoint") and row.get("kind") == "cluster" and endpoint_of \
                and row.get("state") == skyapi.status_names().cluster_up:
            try:
                row["endpoint"] = endpoint_of(row["name"])
            except GptossSkyError as exc:
                row["engine"] = EngineNumbers(error=f"no endpoint: {exc}").to_dict()
                continue
        replicas = [r for r in row.get("replicas") or [] if r.get("endpoint")]
        if replicas:
            for replica in replicas:
                targets.append((_normal(replica["endpoint"]), key))
                where.append((row, replica))
        elif row.get("endpoint"):
            targets.append((row["endpoint"], key))
            where.append((row, None))
        else:
            row["engine"] = EngineNumbers(error=f"no endpoint (state {row.get('state')})").to_dict()
    numbers = read(targets, engines, window_s=window_s, memory=memory) if targets else []
    per_row: dict[int, list[EngineNumbers]] = {}
    for (row, replica), found in zip(where, numbers, strict=True):  # one number per target
        if replica is not None:
            replica["engine"] = found.to_dict()
        per_row.setdefault(id(row), []).append(found)
    for row in rows:
        if id(row) in per_row:
            row["engine"] = _aggregate(per_row[id(row)]).to_dict()
    return rows


def _normal(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"
