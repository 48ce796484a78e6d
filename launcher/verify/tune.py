"""The search behind `gptoss-sky tune`: for each engine configuration, the highest load that meets a latency SLO.

Per configuration it asks `endpoint_for` for a server running it, then runs bench's steady state
(`run_bench(..., waves=2, warmup=True)`) at rising concurrency: 1, 2, 4, ... doubling until a level misses
the SLO (TTFT p90 and TPOT p50, no errors), then a bisection between the last level that met it and the first
that missed. The load found is the highest concurrency that met it (the search assumes latency grows with
load). A configuration whose server cannot be had, or whose first level errors or misses, loses, and says
why. The winner has the most output tokens/s at the SLO (on one GPU that is also the lowest $ per 1M output
tokens); its target_qps_per_replica follows bench's rule (SAFETY_FACTOR x the requests/s of that level).
A time bound stops the search before the next level and says where. Imports no click/rich/sky; never prints
(progress goes through `on_progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from launcher.errors import GptossSkyError, UserError
from launcher.verify import bench

MAX_CONCURRENCY = 1024  # the doubling stops here even if every level met the SLO


@dataclass(frozen=True)
class Slo:
    ttft_p90_ms: float
    tpot_p50_ms: float


_SLO_PART = re.compile(r"\s*(ttft-p90|tpot-p50)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*")


def parse_slo(text: str) -> Slo:
    """'ttft-p90=500,tpot-p50=20' (ms, both, each once, > 0) -> Slo; UserError naming what is allowed."""
    allowed = "give --slo ttft-p90=MS,tpot-p50=MS (milliseconds, both, each above 0)"
    values: dict[str, float] = {}
    for part in text.split(","):
        match = _SLO_PART.fullmatch(part)
        if not match or match.group(1) in values or float(match.group(2)) <= 0:
            raise UserError(f"--slo {text!r}: {allowed}")
        values[match.group(1)] = float(match.group(2))
    if set(values) != {"ttft-p90", "tpot-p50"}:
        raise UserError(f"--slo {text!r}: {allowed}")
    return Slo(values["ttft-p90"], values["tpot-p50"])


@dataclass(frozen=True)
class Configuration:
    """One set of engine flags to try (the catalog's option mapping), and why it is in the set."""

    name: str
    options: Mapping[str, Any]
    why: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A server running one configuration: where to send the load and what it costs per hour."""

    base_url: str
    api_key: str | None
    model: str
    price_per_hour: float | None = None


EndpointFor = Callable[[Configuration], contextlib.AbstractAsyncContextManager[Endpoint]]


@dataclass(frozen=True)
class Step:
    """One level the search measured."""

    concurrency: int
    met: bool
    ttft_ms_p90: float | None
    tpot_ms_p50: float | None
    output_tokens_per_s: float
    request_throughput: float
    errors: int
    error_samples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigResult:
    name: str
    options: Mapping[str, Any]
    why: str
    steps: tuple[Step, ...]
    best: bench.LevelResult | None  # the highest level that met the SLO
    lost_because: str | None  # None for a configuration that found a load (the winner or not)
    price_per_hour: float | None = None

    @property
    def concurrency(self) -> int | None:
        return self.best.concurrency if self.best else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"name": self.name, "options": dict(self.options), "why": self.why,
                "concurrency": self.concurrency,
                "output_tokens_per_s": best.output_tokens_per_s if best else None,
                "request_throughput": best.request_throughput if best else None,
                "usd_per_million_output_tokens": best.usd_per_million_output_tokens if best else None,
                "ttft_ms_p90": best.ttft_ms_p90 if best else None, "tpot_ms_p50": best.tpot_ms_p50 if best else None,
                "lost_because": self.lost_because, "price_per_hour": self.price_per_hour,
                "steps": [asdict(s) for s in self.steps]}


@dataclass(frozen=True)
class TuneResult:
    slo: Slo
    input_len: int
    output_len: int
    results: tuple[ConfigResult, ...]
    winner: str | None
    target_qps_per_replica: float | None
    recommendation: str
    stopped: str | None = None  # why the search ended early (the time bound), None when it finished
    safety_factor: float = bench.SAFETY_FACTOR

    def result(self, name: str) -> ConfigResult:
        return next(r for r in self.results if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"slo": asdict(self.slo), "input_len": self.input_len, "output_len": self.output_len,
                "winner": self.winner, "target_qps_per_replica": self.target_qps_per_replica,
                "recommendation": self.recommendation, "stopped": self.stopped,
                "safety_factor": self.safety_factor, "configurations": [r.to_dict() for r in self.results]}


@dataclass(frozen=True)
class Progress:
    """What the search is doing now (for stderr): the configuration, the load, the time left (None: unbounded)."""

    configuration: str
    concurrency: int | None
    seconds_left: float | None
    step: Step | None = None
    note: str = ""


class _OutOfTime(Exception):
    pass


@dataclass
class _Clock:
    clock: Callable[[], float]
    max_seconds: float | None
    start: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def left(self) -> float | None:
        return None if self.max_seconds is None else self.max_seconds - (self.clock() - self.start)

    def check(self) -> None:
        left = self.left()
        if left is not None and left <= 0:
            raise _OutOfTime


def _step(level: bench.LevelResult) -> Step:
    return Step(level.concurrency, bool(level.met_targets), level.ttft_ms_p90, level.tpot_ms_p50,
                level.output_tokens_per_s, level.request_throughput, level.errors, level.error_samples)


def _missed(step: Step, slo: Slo) -> str:
    """Why a level did not meet the SLO, in numbers."""
    if step.errors:
        sample = f": {step.error_samples[0]}" if step.error_samples else ""
        return f"{step.errors} errors at concurrency {step.concurrency}{sample}"
    over = []
    if step.ttft_ms_p90 is None or step.ttft_ms_p90 > slo.ttft_p90_ms:
        over.append(f"TTFT p90 {_ms(step.ttft_ms_p90)} > {slo.ttft_p90_ms:g} ms")
    if step.tpot_ms_p50 is None or step.tpot_ms_p50 > slo.tpot_p50_ms:
        over.append(f"TPOT p50 {_ms(step.tpot_ms_p50)} > {slo.tpot_p50_ms:g} ms")
    return f"at concurrency {step.concurrency}: " + ", ".join(over)


def _ms(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


async def _search_one(config: Configuration, endpoint: Endpoint, slo: Slo, input_len: int, output_len: int,
                      clock: _Clock, on_progress: Callable[[Progress], None], max_concurrency: int,
                      seed: int | None, levels: list[bench.LevelResult], steps: list[Step]) -> None:
    """Measure into `levels` and `steps` (kept when the time bound ends the search midway)."""

    async def measure(concurrency: int) -> bool:
        clock.check()
        on_progress(Progress(config.name, concurrency, clock.left()))
        report = await bench.run_bench(endpoint.base_url, endpoint.api_key, endpoint.model,
                                       concurrency=(concurrency,), input_len=input_len, output_len=output_len,
                                       price_per_hour=endpoint.price_per_hour, ttft_target_ms=slo.ttft_p90_ms,
                                       tpot_target_ms=slo.tpot_p50_ms, waves=2, warmup=True, seed=seed)
        (level,) = report.levels
        levels.append(level)
        steps.append(_step(level))
        on_progress(Progress(config.name, concurrency, clock.left(), steps[-1]))
        return bool(level.met_targets)

    good, bad = 0, None
    concurrency = 1
    while concurrency <= max_concurrency:
        if not await measure(concurrency):
            bad = concurrency
            break
        good, concurrency = concurrency, concurrency * 2
    if good and bad:
        while bad - good > 1:
            middle = (good + bad) // 2
            if await measure(middle):
                good = middle
            else:
                bad = middle


async def search(configurations: Sequence[Configuration], endpoint_for: EndpointFor, slo: Slo, *,
                 input_len: int, output_len: int, max_seconds: float | None = None,
                 on_progress: Callable[[Progress], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 max_concurrency: int = MAX_CONCURRENCY, seed: int | None = None) -> TuneResult:
    """Every configuration in turn (each on its own endpoint); the result says which won and why others lost."""
    progress = on_progress or (lambda _: None)
    timer = _Clock(clock, max_seconds)
    results: list[ConfigResult] = []
    stopped = None
    for config in configurations:
        if stopped:
            results.append(ConfigResult(config.name, config.options, config.why, (), None,
                                        f"not tried: {stopped}"))
            continue
        levels: list[bench.LevelResult] = []
        steps: list[Step] = []
        price = None
        lost = None
        try:
            timer.check()
            progress(Progress(config.name, None, timer.left(), note="starting its server"))
            async with endpoint_for(config) as endpoint:
                price = endpoint.price_per_hour
                await _search_one(config, endpoint, slo, input_len, output_len, timer, progress, max_concurrency,
                                  seed, levels, steps)
        except _OutOfTime:
            stopped = _bound_text(max_seconds, config.name, steps)
        except GptossSkyError as exc:
            lost = f"its server failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        met = [lv for lv in levels if lv.met_targets]
        best = max(met, key=lambda lv: lv.concurrency) if met else None
        if lost is None and best is None:
            lost = (f"not measured: {stopped}" if not steps
                    else f"missed the SLO from the first level ({_missed(steps[0], slo)})")
        results.append(ConfigResult(config.name, config.options, config.why, tuple(steps), best, lost, price))
    found = [r for r in results if r.best is not None]
    winner = max(found, key=lambda r: r.best.output_tokens_per_s if r.best else 0.0) if found else None
    if winner is None or winner.best is None:
        return TuneResult(slo, input_len, output_len, tuple(results), None, None,
                          "no configuration met the SLO at any load; relax the SLO or shorten the requests",
                          stopped)
    qps, why, _ = bench.recommend_qps([winner.best], slo.ttft_p90_ms, slo.tpot_p50_ms)
    final = []
    for r in results:
        if r is not winner and r.lost_because is None and r.best is not None and winner.best is not None:
            r = ConfigResult(r.name, r.options, r.why, r.steps, r.best,
                             f"{r.best.output_tokens_per_s:,.0f} output tok/s at the SLO (concurrency "
                             f"{r.best.concurrency}) < {winner.name}'s {winner.best.output_tokens_per_s:,.0f}",
                             r.price_per_hour)
        final.append(r)
    return TuneResult(slo, input_len, output_len, tuple(final), winner.name, qps, why, stopped)


def _bound_text(max_seconds: float | None, name: str, steps: Sequence[Step]) -> str:
    where = f"after concurrency {steps[-1].concurrency} of {name}" if steps else f"before {name}"
    return f"the {(max_seconds or 0) / 60:g}-minute bound (--max-minutes) was reached {where}"


@contextlib.asynccontextmanager
async def fixed_endpoint(endpoint: Endpoint) -> AsyncIterator[Endpoint]:
    """An endpoint that is already running (tune --endpoint): nothing to start or stop."""
    yield endpoint


def run(configurations: Sequence[Configuration], endpoint_for: EndpointFor, slo: Slo, **kwargs: Any) -> TuneResult:
    """Blocking wrapper of `search`."""
    return asyncio.run(search(configurations, endpoint_for, slo, **kwargs))
