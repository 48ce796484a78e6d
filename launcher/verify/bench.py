"""Streaming load against `/v1/completions`: latency percentiles, throughput, $/1M tokens, and a
SkyServe `target_qps_per_replica` recommendation.

Owns: the load loop (N workers per concurrency level, closed loop: each worker sends its next
request when the previous one ends), per-request timing, the statistics and the recommendation rule.
Uses httpx, asyncio, launcher.verify.rawstream and launcher.verify.causes only; must not import click, rich or
sky, and never prints (progress goes through `on_progress`).

Two clients (`client=`):
  "raw"   (default) launcher.verify.rawstream: raw asyncio sockets, one keep-alive connection per worker,
          prebuilt request bytes, kernel receive timestamps, SSE scanned without per-event JSON.
          http:// only; an https:// endpoint falls back to "httpx".
  "httpx" one shared `httpx.AsyncClient` over sharded 1-connection pools: the named baseline of
          benchmarks/BENCH_CLIENT.md (client overhead grows to hundreds of ms at 512 streams on
          2 cores there).

Per request, with t0 = just before the request is sent (before connecting on a fresh connection):
  TTFT  = arrival of the first chunk carrying text - t0
  ITL   = gaps between successive chunks carrying text (with vLLM's --stream-interval > 1 one chunk
          holds several tokens, so this is the inter-chunk latency)
  TPOT  = (last text chunk - first text chunk) / (output tokens - 1)
Output tokens come from the final usage chunk (`stream_options.include_usage`) when present, else
from the number of chunks carrying text. A request is an error when the status is not 200, the
transport fails, the stream has no text, or it ends before `data: [DONE]`.

Steady state (`waves`, `warmup`): each level runs an optional warm-up wave, reported but not counted
(the server's first batches at a new load pay for scheduling ramp-up, graph and allocator warm-up), then
`waves` waves of `requests` requests each, every wave with prompts of its own (none served from the
prefix cache). The level's numbers are over the counted waves pooled (throughput = their tokens over
their time); `spread` is the coefficient of variation across waves (sample standard deviation over
mean) of output tokens/s, TTFT p50 and TPOT p50: a difference between two runs smaller than it is noise.

Recommendation rule (SkyServe autoscales on requests/s per replica):
  target_qps_per_replica = SAFETY_FACTOR * max(request_throughput of levels that had no errors and
  met every given target: TTFT p90 <= --ttft-target-ms, TPOT p50 <= --tpot-target-ms)
It holds for this request shape (input/output lengths) only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import ssl
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import httpx

from launcher.errors import EndpointError
from launcher.verify import causes, rawstream

CLIENTS = ("raw", "httpx")
DEFAULT_CLIENT = "raw"
SAFETY_FACTOR = 0.8
DEFAULT_CONCURRENCY = (1, 8, 32)
DEFAULT_WAVES = 3  # counted waves per level: the fewest that give a spread that is not one difference
DEFAULT_INPUT_LEN = 1024
DEFAULT_OUTPUT_LEN = 256
DEFAULT_REQUEST_TIMEOUT_S = 600.0

# Short common English words: each is about one o200k token with its leading space.
_WORDS = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government "
    "number night point home water room mother area money story fact month lot right study book eye "
    "job word business issue side kind head house service friend father power hour game line end "
    "member law car city name team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research girl guy "
    "moment air teacher force education"
).split()


@dataclass(frozen=True)
class RequestRecord:
    """Timing of one streamed request; `error` is None on success."""

    ttft_s: float | None
    itl_s: tuple[float, ...]
    output_tokens: int
    latency_s: float
    error: str | None = None

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2 or not self.itl_s:
            return None
        return sum(self.itl_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class WaveResult:
    """One wave of a level: what the spread is computed from (times in ms, rates per second)."""

    requests: int
    completed: int
    errors: int
    duration_s: float
    request_throughput: float
    output_tokens_per_s: float
    ttft_ms_p50: float | None
    ttft_ms_p90: float | None
    tpot_ms_p50: float | None


@dataclass(frozen=True)
class Spread:
    """Coefficient of variation across a level's counted waves (sample stdev / mean); None below 2 waves."""

    output_tokens_per_s_cv: float | None
    ttft_ms_p50_cv: float | None
    tpot_ms_p50_cv: float | None


@dataclass(frozen=True)
class LevelResult:
    """Statistics of one concurrency level over its counted waves pooled (times in ms, rates per second)."""

    concurrency: int
    requests: int
    completed: int
    errors: int
    duration_s: float
    request_throughput: float
    output_tokens: int
    output_tokens_per_s: float
    ttft_ms_p50: float | None
    ttft_ms_p90: float | None
    ttft_ms_p99: float | None
    tpot_ms_p50: float | None
    tpot_ms_p99: float | None
    itl_ms_p50: float | None
    itl_ms_p99: float | None
    usd_per_million_output_tokens: float | None
    met_targets: bool | None = None
    error_samples: tuple[str, ...] = ()
    waves: tuple[WaveResult, ...] = ()
    warmup: WaveResult | None = None  # run first, reported, not counted
    spread: Spread | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchReport:
    base_url: str
    model: str
    input_len: int
    output_len: int
    price_per_hour: float | None
    ttft_target_ms: float | None
    tpot_target_ms: float | None
    levels: tuple[LevelResult, ...]
    recommended_target_qps_per_replica: float | None
    recommendation: str
    safety_factor: float = SAFETY_FACTOR
    seed: int = 0  # the prompts' seed (fresh per run unless --seed): repeat a run with --seed

    waves: int = 1
    warmup: bool = False

    @property
    def errors(self) -> int:
        """Failed requests, warm-up waves included: a request that failed is a failure wherever it fell."""
        return sum(level.errors + (level.warmup.errors if level.warmup else 0) for level in self.levels)

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["levels"] = [level.to_dict() for level in self.levels]
        return document


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def usd_per_million_tokens(price_per_hour: float | None, tokens_per_s: float) -> float | None:
    """$/hour over tokens/hour, per million tokens; None without a price or without throughput."""
    if price_per_hour is None or tokens_per_s <= 0:
        return None
    return price_per_hour / (tokens_per_s * 3600.0) * 1_000_000


def make_prompt(input_len: int, rng: random.Random, request_id: int) -> str:
    """About `input_len` tokens of random words; the unique head defeats prefix caching."""
    head = f"Request {request_id} {rng.randrange(10**9)}:"
    return head + " " + " ".join(rng.choice(_WORDS) for _ in range(max(1, input_len - 6)))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def summarize(
    concurrency: int,
    records: Sequence[RequestRecord],
    duration_s: float,
    price_per_hour: float | None,
) -> LevelResult:
    """Turn one level's request records into throughput and latency percentiles."""
    ok = [r for r in records if r.error is None]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    tpots = [t for r in ok if (t := r.tpot_s) is not None]
    itls = [gap for r in ok for gap in r.itl_s]
    tokens = sum(r.output_tokens for r in ok)
    duration_s = max(duration_s, 1e-9)
    tokens_per_s = tokens / duration_s
    samples: list[str] = []
    for r in records:
        if r.error is not None and r.error not in samples and len(samples) < 3:
            samples.append(r.error)
    return LevelResult(
        concurrency=concurrency,
        requests=len(records),
        completed=len(ok),
        errors=len(records) - len(ok),
        duration_s=round(duration_s, 4),
        request_throughput=round(len(ok) / duration_s, 4),
        output_tokens=tokens,
        output_tokens_per_s=round(tokens_per_s, 2),
        ttft_ms_p50=_ms(percentile(ttfts, 50)),
        ttft_ms_p90=_ms(percentile(ttfts, 90)),
        ttft_ms_p99=_ms(percentile(ttfts, 99)),
        tpot_ms_p50=_ms(percentile(tpots, 50)),
        tpot_ms_p99=_ms(percentile(tpots, 99)),
        itl_ms_p50=_ms(percentile(itls, 50)),
        itl_ms_p99=_ms(percentile(itls, 99)),
        usd_per_million_output_tokens=(
            None if (usd := usd_per_million_tokens(price_per_hour, tokens_per_s)) is None else round(usd, 4)
        ),
        error_samples=tuple(samples),
    )


def wave_result(level: LevelResult) -> WaveResult:
    return WaveResult(
        requests=level.requests,
        completed=level.completed,
        errors=level.errors,
        duration_s=level.duration_s,
        request_throughput=level.request_throughput,
        output_tokens_per_s=level.output_tokens_per_s,
        ttft_ms_p50=level.ttft_ms_p50,
        ttft_ms_p90=level.ttft_ms_p90,
        tpot_ms_p50=level.tpot_ms_p50,
    )


def coefficient_of_variation(values: Sequence[float | None]) -> float | None:
    """Sample standard deviation over mean, 4 decimals; None with under two values or a missing one."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    present = [float(v) for v in values if v is not None]
    mean = statistics.fmean(present)
    return None if mean == 0 else round(statistics.stdev(present) / mean, 4)


def spread_of(waves: Sequence[WaveResult]) -> Spread | None:
    if len(waves) < 2:
        return None
    return Spread(
        output_tokens_per_s_cv=coefficient_of_variation([w.output_tokens_per_s for w in waves]),
        ttft_ms_p50_cv=coefficient_of_variation([w.ttft_ms_p50 for w in waves]),
        tpot_ms_p50_cv=coefficient_of_variation([w.tpot_ms_p50 for w in waves]),
    )


def meets_targets(level: LevelResult, ttft_target_ms: float | None, tpot_target_ms: float | None) -> bool:
    """No errors, TTFT p90 within its target and TPOT p50 within its target (targets given only)."""
    if level.errors or not level.completed:
        return False
    if ttft_target_ms is not None and (level.ttft_ms_p90 is None or level.ttft_ms_p90 > ttft_target_ms):
        return False
    if tpot_target_ms is not None and (level.tpot_ms_p50 is None or level.tpot_ms_p50 > tpot_target_ms):
        return False
    return True


def recommend_qps(
    levels: Sequence[LevelResult],
    ttft_target_ms: float | None,
    tpot_target_ms: float | None,
    safety_factor: float = SAFETY_FACTOR,
) -> tuple[float | None, str, tuple[LevelResult, ...]]:
    """(target_qps_per_replica or None, one-line explanation, levels with `met_targets` filled)."""
    if ttft_target_ms is None and tpot_target_ms is None:
        marked = tuple(levels)
        return None, "no recommendation: give --ttft-target-ms and/or --tpot-target-ms", marked
    marked = tuple(
        replace(lv, met_targets=meets_targets(lv, ttft_target_ms, tpot_target_ms))
        for lv in levels
    )
    good = [lv for lv in marked if lv.met_targets]
    if not good:
        return None, "no concurrency level met the targets without errors; lower the load or add GPUs", marked
    best = max(good, key=lambda lv: lv.request_throughput)
    qps = round(best.request_throughput * safety_factor, 3)
    why = (
        f"{safety_factor:g} x {best.request_throughput:.3g} req/s measured at concurrency "
        f"{best.concurrency}, the busiest level that met the targets without errors"
    )
    return qps, why, marked


async def stream_one(
    client: httpx.AsyncClient,
    payload: dict[str, Any],
    headers: dict[str, str],
) -> RequestRecord:
    """Send one streaming completion and time its chunks. Failures come back as `error`."""
    text_times: list[float] = []
    usage_tokens: int | None = None
    done = False
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/completions", json=payload, headers=headers) as response:
            if response.status_code != 200:
                body = (await response.aread())[:200].decode(errors="replace")
                return RequestRecord(None, (), 0, time.perf_counter() - start, f"HTTP {response.status_code}: {body}")
            buffer = b""
            # Raw bytes and a hand split: cheaper per chunk than aiter_lines at hundreds of streams.
            async for raw in response.aiter_raw():
                now = time.perf_counter()
                buffer += raw
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        continue
                    chunk = json.loads(data)
                    if chunk.get("error") is not None:
                        return RequestRecord(
                            None, (), 0, time.perf_counter() - start,
                            f"error event in stream: {json.dumps(chunk['error'])[:200]}",
                        )
                    usage = chunk.get("usage")
                    if usage and isinstance(usage.get("completion_tokens"), int):
                        usage_tokens = usage["completion_tokens"]
                    choices = chunk.get("choices") or ()
                    if choices and choices[0].get("text"):
                        text_times.append(now)
    except httpx.HTTPError as exc:
        why = causes.from_exception(exc, str(client.base_url)).message
        return RequestRecord(None, (), 0, time.perf_counter() - start, f"{type(exc).__name__}: {why}")
    except (ValueError, AttributeError) as exc:  # non-JSON or oddly shaped chunks
        return RequestRecord(None, (), 0, time.perf_counter() - start, f"malformed stream: {exc}")
    latency = time.perf_counter() - start
    if not text_times:
        return RequestRecord(None, (), 0, latency, "stream carried no text")
    if not done:
        return RequestRecord(None, (), 0, latency, "stream ended before data: [DONE]")
    itl = tuple(b - a for a, b in itertools.pairwise(text_times))
    tokens = usage_tokens if usage_tokens is not None else len(text_times)
    return RequestRecord(text_times[0] - start, itl, tokens, latency)


def record_from(outcome: rawstream.Outcome) -> RequestRecord:
    """The raw client's outcome under the same rules as `stream_one`."""
    latency = outcome.end - outcome.start
    if outcome.error is not None:
        return RequestRecord(None, (), 0, latency, outcome.error)
    times = outcome.text_times
    if not times:
        return RequestRecord(None, (), 0, latency, "stream carried no text")
    if not outcome.done:
        return RequestRecord(None, (), 0, latency, "stream ended before data: [DONE]")
    itl = tuple(b - a for a, b in itertools.pairwise(times))
    tokens = outcome.usage_tokens if outcome.usage_tokens is not None else len(times)
    return RequestRecord(times[0] - outcome.start, itl, tokens, latency)


def make_payloads(model: str, requests: int, input_len: int, output_len: int, *, seed: int,
                  concurrency: int, wave: int = 0) -> list[dict[str, Any]]:
    """One wave's request bodies. The prompts follow from `seed`, the level and the wave (the warm-up is
    wave -1): a second run on the same server with the same seed is partly served from its prefix cache,
    so `run_bench` draws a fresh seed unless given one."""
    rng = random.Random(f"{seed}/{concurrency}/{wave}")
    return [
        {
            "model": model,
            "prompt": make_prompt(input_len, rng, i),
            "max_tokens": output_len,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for i in range(requests)
    ]


async def run_level(
    client: httpx.AsyncClient | rawstream.RawClient,
    *,
    model: str,
    concurrency: int,
    requests: int,
    input_len: int,
    output_len: int,
    headers: dict[str, str],
    seed: int = 0,
    wave: int = 0,
    ramp_s: float = 0.0,
) -> tuple[list[RequestRecord], float]:
    """`requests` requests through `concurrency` workers; returns records (in completion order)
    and wall time. Worker i starts at i * ramp_s / concurrency (0: all at once)."""
    payloads = make_payloads(model, requests, input_len, output_len, seed=seed, concurrency=concurrency,
                             wave=wave)
    records: list[RequestRecord] = []
    workers = min(concurrency, requests)

    if isinstance(client, rawstream.RawClient):
        raw_client = client
        prebuilt = [raw_client.build("/v1/completions", p, headers) for p in payloads]
        raw_queue = iter(prebuilt)

        async def worker(index: int) -> None:
            if ramp_s > 0 and index:
                await asyncio.sleep(index * ramp_s / workers)
            connection = raw_client.acquire()
            try:
                for data in raw_queue:  # a shared iterator: each request is taken exactly once
                    records.append(record_from(await connection.request(data)))
            finally:
                raw_client.release(connection)

    else:
        httpx_client = client
        queue = iter(payloads)

        async def worker(index: int) -> None:
            if ramp_s > 0 and index:
                await asyncio.sleep(index * ramp_s / workers)
            for payload in queue:  # a shared iterator: each payload is taken exactly once
                records.append(await stream_one(httpx_client, payload, headers))

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return records, time.perf_counter() - start


POOL_SHARD_SIZE = 1  # measured best on 2 cores at 64-512 streams (benchmarks/BENCH_CLIENT.md)


class _CountedStream(httpx.AsyncByteStream):
    """Wraps a response body so the shard's in-flight count drops when the stream is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self):
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._done is not None:
                self._done()
                self._done = None


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several small connection pools behind one transport, each request to the least busy one.

    httpcore's pool reassigns queued requests by scanning every connection on each request and
    each response close, which is quadratic in the pool size: one 512-connection pool spends
    seconds of CPU there and inflates TTFT by seconds (see benchmarks/BENCH_CLIENT.md). Pools of
    POOL_SHARD_SIZE connections keep that scan short. They share one SSL context, which is costly
    to build.
    """

    def __init__(self, max_connections: int, shard_size: int = POOL_SHARD_SIZE) -> None:
        count = max(1, math.ceil(max_connections / shard_size))
        per_shard = math.ceil(max_connections / count)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        context = ssl.create_default_context()
        self._shards = [httpx.AsyncHTTPTransport(limits=limits, verify=context) for _ in range(count)]
        self._in_flight = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1

        def done() -> None:
            self._in_flight[index] -= 1

        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            done()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(response.stream, done)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


def make_raw_client(base_url: str, request_timeout: float) -> rawstream.RawClient:
    """The default load client: raw asyncio sockets (http:// only, see launcher.verify.rawstream)."""
    return rawstream.RawClient(base_url, request_timeout)


def make_client(
    base_url: str, max_concurrency: int, request_timeout: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One client for the whole run, with room for `max_concurrency` connections (sharded pools)."""
    timeout = httpx.Timeout(request_timeout, connect=min(request_timeout, 30.0), pool=None)
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout, transport=transport or ShardedTransport(max_concurrency)
    )


async def run_bench(
    base_url: str,
    api_key: str | None,
    model: str,
    *,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    requests: int | None = None,
    input_len: int = DEFAULT_INPUT_LEN,
    output_len: int = DEFAULT_OUTPUT_LEN,
    price_per_hour: float | None = None,
    ttft_target_ms: float | None = None,
    tpot_target_ms: float | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    on_progress: Callable[[LevelResult], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    client: str = DEFAULT_CLIENT,
    seed: int | None = None,
    waves: int = 1,
    warmup: bool = False,
) -> BenchReport:
    """Run each concurrency level in turn: an optional warm-up wave, then `waves` counted waves.
    `requests` per wave defaults to max(4 x level, 16) for one wave, max(level, 4) for several.
    `client` is "raw" (default; https:// or a given `transport` use "httpx") or "httpx"."""
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {', '.join(CLIENTS)}, got {client!r}")
    if waves < 1:
        raise ValueError(f"waves must be at least 1, got {waves}")
    if seed is None:  # fresh prompts per run: never partly served from the last run's prefix cache
        seed = random.SystemRandom().randrange(2**31)
    base_url = base_url.rstrip("/")
    if base_url.endswith("/v1"):
        base_url = base_url[:-3]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    levels: list[LevelResult] = []
    use_raw = client == "raw" and transport is None and rawstream.supports(base_url)
    load_client: httpx.AsyncClient | rawstream.RawClient = (
        make_raw_client(base_url, request_timeout)
        if use_raw
        else make_client(base_url, max(concurrency), request_timeout, transport)
    )
    async with load_client:
        for level in concurrency:
            if requests is not None:
                count = requests
            else:
                count = max(4 * level, 16) if waves == 1 else max(level, 4)

            async def one_wave(wave: int, level: int = level, count: int = count) -> tuple[list[RequestRecord], float]:
                return await run_level(
                    load_client,
                    model=model,
                    concurrency=level,
                    requests=count,
                    input_len=input_len,
                    output_len=output_len,
                    headers=headers,
                    seed=seed,
                    wave=wave,
                )

            warm: WaveResult | None = None
            warm_samples: tuple[str, ...] = ()
            if warmup:
                warm_level = summarize(level, *await one_wave(-1), price_per_hour)
                warm, warm_samples = wave_result(warm_level), warm_level.error_samples
            pooled: list[RequestRecord] = []
            counted: list[WaveResult] = []
            elapsed = 0.0
            for wave in range(waves):
                records, duration = await one_wave(wave)
                pooled += records
                elapsed += duration
                counted.append(wave_result(summarize(level, records, duration, price_per_hour)))
            result = summarize(level, pooled, elapsed, price_per_hour)
            samples = tuple(dict.fromkeys(warm_samples + result.error_samples))[:3]
            if api_key:
                samples = tuple(s.replace(api_key, "***") for s in samples)
            result = replace(result, error_samples=samples)
            if waves > 1 or warm is not None:
                result = replace(result, waves=tuple(counted), warmup=warm, spread=spread_of(counted))
            levels.append(result)
            if on_progress is not None:
                on_progress(result)
    qps, why, marked = recommend_qps(levels, ttft_target_ms, tpot_target_ms)
    return BenchReport(
        base_url=base_url,
        model=model,
        input_len=input_len,
        output_len=output_len,
        price_per_hour=price_per_hour,
        ttft_target_ms=ttft_target_ms,
        tpot_target_ms=tpot_target_ms,
        levels=marked,
        recommended_target_qps_per_replica=qps,
        recommendation=why,
        seed=seed,
        waves=waves,
        warmup=warmup,
    )


def bench(base_url: str, api_key: str | None, model: str, **kwargs: Any) -> BenchReport:
    """Blocking wrapper of `run_bench`."""
    return asyncio.run(run_bench(base_url, api_key, model, **kwargs))


async def first_model(base_url: str, api_key: str | None, timeout: float = 30.0) -> str | None:
    """The first model /v1/models lists; None when it answers but lists none. Raises EndpointError
    naming the cause when it cannot be read: bad scheme, DNS, refused, TLS, timeout, 401, 404, 503."""
    return (await served_model(base_url, api_key, timeout))[0]


async def served_model(base_url: str, api_key: str | None, timeout: float = 30.0) -> tuple[str | None, int | None]:
    """(the first model /v1/models lists, its context in tokens): vLLM lists `max_model_len` per model
    (vllm/entrypoints/openai/models/serving.py), so a request longer than the server's context is caught
    before a load is sent; None for what the server does not say. Raises EndpointError as first_model."""
    base_url = base_url.rstrip("/")
    problem = causes.url_problem(base_url)
    if problem is not None:
        raise EndpointError(problem.message)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            response = await client.get("/v1/models", headers=headers)
    except httpx.HTTPError as exc:
        raise EndpointError(f"{base_url}: {causes.from_exception(exc, base_url, timeout).message}") from None
    if response.status_code != 200:
        cause = causes.from_status(response.status_code, "/v1/models", response.text, has_key=bool(api_key))
        raise EndpointError(f"{base_url}: {cause.message}")
    try:
        data = response.json().get("data") or []
        if not data or not isinstance(data[0], dict):
            return None, None
        context = data[0].get("max_model_len")
        return data[0]["id"], context if isinstance(context, int) and not isinstance(context, bool) else None
    except (ValueError, KeyError, AttributeError, TypeError):
        return None, None
