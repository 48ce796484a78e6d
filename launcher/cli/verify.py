"""`gptoss-sky smoke | bench | eval | tune`: check, load, score and tune a running endpoint.

Each command takes a deployment NAME (resolved by `lifecycle.connection_for`) or `--endpoint URL`.
The API key comes from --api-key, --api-key-file, $GPTOSS_SKY_API_KEY or the deployment record, in
that order, and is never printed. Results go to stdout (a table, or one document with --json);
waiting notes go to stderr and are suppressed under --json. Exit 1 when a check fails.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from launcher.cli import redact
from launcher.cli._common import (
    at_most,
    endpoint_url,
    json_option,
    non_negative_int,
    non_negative_number,
    positive_int,
    positive_number,
    print_json,
    seconds_up_to,
    stderr,
    stdout,
)
from launcher.errors import EndpointError, UserError
from launcher.verify import bench as bench_lib
from launcher.verify import evals as evals_lib
from launcher.verify import smoke as smoke_lib
from launcher.verify import tune as tune_lib

API_KEY_ENV = "GPTOSS_SKY_API_KEY"
WEEK_S = 7 * 24 * 3600  # the longest wait any timeout here may ask for
LONGEST_CONTEXT = 131072  # a prompt or an output longer than gpt-oss's context cannot be served
MOST_REQUESTS = 100_000  # per level; concurrency no more than that either


@dataclass(frozen=True)
class Target:
    """Where to send requests, resolved from NAME or --endpoint plus the key options."""

    base_url: str
    api_key: str | None
    model: str | None
    price_per_hour: float | None


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """NAME | --endpoint URL, --api-key, --api-key-file, --model, resolved into `target: Target`."""

    @click.argument("name", required=False)
    @click.option("--endpoint", metavar="URL", callback=endpoint_url,
                  help="Endpoint base URL (http(s)://HOST[:PORT] or HOST:PORT) instead of a deployment NAME.")
    @click.option("--api-key", metavar="KEY", help=f"API key (default: ${API_KEY_ENV} or the deployment's).")
    @click.option(
        "--api-key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the API key from this file.",
    )
    @click.option("--model", metavar="M", help="Served model name (default: the first /v1/models lists).")
    @functools.wraps(func)
    def wrapper(
        name: str | None,
        endpoint: str | None,
        api_key: str | None,
        api_key_file: Path | None,
        model: str | None,
        **kwargs: Any,
    ) -> Any:
        kwargs["target"] = resolve_target(name, endpoint, api_key, api_key_file, model)
        return func(**kwargs)

    return wrapper


def resolve_target(
    name: str | None,
    endpoint: str | None,
    api_key: str | None,
    api_key_file: Path | None,
    model: str | None,
) -> Target:
    if bool(name) == bool(endpoint):
        raise click.UsageError("give either a deployment NAME or --endpoint URL (exactly one)")
    if api_key and api_key_file:
        raise click.UsageError("give --api-key or --api-key-file, not both")
    if api_key_file is not None:
        try:
            api_key = api_key_file.read_text().strip()
        except OSError as exc:
            raise UserError(f"cannot read --api-key-file {api_key_file}: {exc.strerror}") from exc
        if not api_key:
            raise UserError(f"--api-key-file {api_key_file} is empty")
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    redact.add(api_key)
    if name:
        from launcher.lifecycle import connection_for

        connection = connection_for(name)
        redact.add(connection.api_key)  # a record's key may live outside the state folder
        return Target(
            connection.base_url,
            api_key or connection.api_key,
            model or connection.model,
            connection.price_per_hour,
        )
    assert endpoint is not None
    if not endpoint.startswith(("http://", "https://")):
        endpoint = f"http://{endpoint}"
    return Target(endpoint.rstrip("/"), api_key, model, None)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


# -- smoke ----------------------------------------------------------------------------------------


@click.command(name="smoke")
@target_options
@click.option(
    "--timeout",
    type=float,
    default=smoke_lib.DEFAULT_WAIT_TIMEOUT_S,
    show_default=True,
    callback=seconds_up_to(WEEK_S),
    metavar="S",
    help="Seconds to wait for the model to finish loading (503 or connection refused).",
)
@click.option(
    "--request-timeout",
    type=float,
    default=smoke_lib.DEFAULT_REQUEST_TIMEOUT_S,
    show_default=True,
    callback=seconds_up_to(WEEK_S),
    metavar="S",
    help="Seconds one probe may take.",
)
@json_option
@click.pass_context
def smoke(ctx: click.Context, target: Target, timeout: float, request_timeout: float, json_: bool) -> None:
    """Check that an endpoint serves gpt-oss correctly: health, models, chat, streaming,
    reasoning effort, tool calls, the Responses API and auth. Exit 1 if any check fails."""
    on_wait = None if json_ else (lambda message: stderr.print(escape(message)))
    report = smoke_lib.smoke(
        target.base_url,
        target.api_key,
        target.model,
        timeout,
        request_timeout=request_timeout,
        on_wait=on_wait,
    )
    if json_:
        print_json(report.to_dict())
    else:
        print_smoke_report(report)
    if not report.ok:
        ctx.exit(1)


def print_smoke_report(report: smoke_lib.SmokeReport) -> None:
    """The table `smoke` prints; also used after `up`/`serve`."""
    table = Table(box=None)
    for header in ("CHECK", "RESULT", "LATENCY", "DETAIL"):
        table.add_column(header, overflow="fold")
    for check in report.checks:
        skipped = check.detail.startswith("not run:")
        result = "[green]pass[/]" if check.ok else ("[yellow]skip[/]" if skipped else "[red]FAIL[/]")
        table.add_row(check.name, result, _ms(check.latency_s), escape(check.detail))
    stdout.print(table)
    passed = sum(c.ok for c in report.checks)
    if report.ok:
        stdout.print(f"[green]OK[/]: {passed}/{len(report.checks)} checks passed for {escape(str(report.model))}")
    else:
        ran = [c.name for c in report.failed if not c.detail.startswith("not run:")]
        not_run = len(report.failed) - len(ran)
        note = f", {not_run} not run" if not_run else ""
        stdout.print(f"[red]FAILED[/]: {', '.join(ran)} ({passed}/{len(report.checks)} passed{note})")


# -- bench ----------------------------------------------------------------------------------------


def _concurrency_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,8,32, got {value!r}") from None
    if not levels or any(not 0 < level <= MOST_REQUESTS for level in levels):
        raise click.BadParameter(f"expected positive integers (at most {MOST_REQUESTS}) like 1,8,32, got {value!r}")
    return levels


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cv(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _price(value: float | None) -> str:
    """$ per 1M output tokens as `plan` prints it: three decimals, never trimmed."""
    return "-" if value is None else f"${value:,.3f}"


@click.command(name="bench")
@target_options
@click.option(
    "--concurrency",
    default=",".join(str(c) for c in bench_lib.DEFAULT_CONCURRENCY),
    show_default=True,
    callback=_concurrency_list,
    metavar="C1,C2,...",
    help="Concurrency levels to run, one after another.",
)
@click.option(
    "--requests",
    type=int,
    callback=at_most(MOST_REQUESTS),
    metavar="N",
    help="Requests per wave [default: max(concurrency, 4); with --waves 1, max(4 x concurrency, 16)].",
)
@click.option("--waves", type=int, default=bench_lib.DEFAULT_WAVES, show_default=True, callback=at_most(1000),
              metavar="W", help="Counted waves per level, each with fresh prompts; their spread is reported.")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="Run one wave per level first, reported but not counted.")
@click.option("--input-len", type=int, default=bench_lib.DEFAULT_INPUT_LEN, show_default=True,
              callback=at_most(LONGEST_CONTEXT), metavar="I", help="Prompt length in tokens (approximate).")
@click.option("--output-len", type=int, default=bench_lib.DEFAULT_OUTPUT_LEN, show_default=True,
              callback=at_most(LONGEST_CONTEXT), metavar="O", help="Output tokens per request (ignore_eos).")
@click.option("--price-per-hour", type=float, callback=non_negative_number, metavar="P",
              help="$/hour of the deployment [default: from the deployment record].")
@click.option("--ttft-target-ms", type=float, callback=positive_number, metavar="T",
              help="TTFT p90 target for the target_qps_per_replica recommendation.")
@click.option("--tpot-target-ms", type=float, callback=positive_number, metavar="T",
              help="TPOT p50 target for the target_qps_per_replica recommendation.")
@click.option("--request-timeout", type=float, default=bench_lib.DEFAULT_REQUEST_TIMEOUT_S, show_default=True,
              callback=seconds_up_to(WEEK_S), metavar="S", help="Seconds one request may take.")
@click.option(
    "--client",
    "client_kind",
    type=click.Choice(bench_lib.CLIENTS),
    default=bench_lib.DEFAULT_CLIENT,
    show_default=True,
    help="Load client: raw asyncio sockets (fast; https:// endpoints use httpx) or httpx (the baseline).",
)
@click.option("--seed", type=int, callback=non_negative_int, metavar="N",
              help="Prompt seed, to repeat a run exactly [default: a fresh one per run, so a second run is "
                   "not served from the server's prefix cache; the report says which].")
@json_option
@click.pass_context
def bench(
    ctx: click.Context,
    target: Target,
    concurrency: tuple[int, ...],
    requests: int | None,
    waves: int,
    warmup: bool,
    input_len: int,
    output_len: int,
    price_per_hour: float | None,
    ttft_target_ms: float | None,
    tpot_target_ms: float | None,
    request_timeout: float,
    client_kind: str,
    seed: int | None,
    json_: bool,
) -> None:
    """Load an endpoint with streaming completions at each concurrency level and report TTFT, TPOT,
    inter-token latency, throughput, $ per 1M output tokens and a SkyServe target_qps_per_replica.
    Exit 1 if any request failed."""
    model, context = target.model, None
    try:
        listed, context = asyncio.run(bench_lib.served_model(target.base_url, target.api_key))
    except EndpointError:
        if model is None:  # with --model the load itself says what is wrong with the endpoint
            raise
        listed = None
    model = model or listed
    if model is None:
        raise EndpointError(f"{target.base_url}/v1/models lists no model it serves; pass --model")
    if context is not None and input_len + output_len > context:
        raise UserError(f"--input-len {input_len} + --output-len {output_len} = {input_len + output_len} tokens is "
                        f"more than the served context of {context} (/v1/models' max_model_len): every request "
                        f"would be refused; allowed: a sum of at most {context}")
    price = price_per_hour if price_per_hour is not None else target.price_per_hour

    def progress(level: bench_lib.LevelResult) -> None:
        if not json_:
            spread = level.spread.output_tokens_per_s_cv if level.spread else None
            stderr.print(
                f"concurrency {level.concurrency}: {level.completed}/{level.requests} ok, "
                f"{level.output_tokens_per_s:,.0f} output tokens/s"
                + (f" (spread {spread:.1%} over {len(level.waves)} waves)" if spread is not None else "")
            )

    report = bench_lib.bench(
        target.base_url,
        target.api_key,
        model,
        concurrency=concurrency,
        requests=requests,
        input_len=input_len,
        output_len=output_len,
        price_per_hour=price,
        ttft_target_ms=ttft_target_ms,
        tpot_target_ms=tpot_target_ms,
        request_timeout=request_timeout,
        on_progress=progress,
        client=client_kind,
        seed=seed,
        waves=waves,
        warmup=warmup,
    )
    if json_:
        print_json(report.to_dict())
    else:
        print_bench_report(report)
    if report.errors:
        ctx.exit(1)


def print_bench_report(report: bench_lib.BenchReport) -> None:
    table = Table(box=None, pad_edge=False)
    headers = ("CONC", "ERR", "REQ/S", "TOK/S", "±", "TTFT 50/90/99", "TPOT 50/99", "ITL 50/99", "$/1M", "SLO")
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for lv in report.levels:
        met = {True: "[green]met[/]", False: "[red]miss[/]", None: "-"}[lv.met_targets]
        table.add_row(
            str(lv.concurrency),
            f"[red]{lv.errors}/{lv.requests}[/]" if lv.errors else "0",
            _num(lv.request_throughput, 2),
            _num(lv.output_tokens_per_s, 0),
            _cv(lv.spread.output_tokens_per_s_cv if lv.spread else None),
            "/".join(_num(v, 0) for v in (lv.ttft_ms_p50, lv.ttft_ms_p90, lv.ttft_ms_p99)),
            "/".join(_num(v, 1) for v in (lv.tpot_ms_p50, lv.tpot_ms_p99)),
            "/".join(_num(v, 1) for v in (lv.itl_ms_p50, lv.itl_ms_p99)),
            _price(lv.usd_per_million_output_tokens),
            met,
        )
    stdout.print(table)
    waves = (f"{report.waves} counted waves per level" + (" after a warm-up wave" if report.warmup else "")
             + "; ± the spread of TOK/S across waves (stdev / mean)")
    stdout.print(
        f"[dim]latencies in ms; TOK/S output tokens/s; {waves}; $/1M per 1M output tokens; SLO the targets; "
        f"{report.input_len} input / {report.output_len} output tokens per request; prompt seed "
        f"{report.seed} (--seed {report.seed} repeats this run)[/]"
    )
    for lv in report.levels:
        for sample in lv.error_samples:
            stdout.print(f"[red]error[/] at concurrency {lv.concurrency}: {escape(sample)}")
    if report.recommended_target_qps_per_replica is not None:
        stdout.print(
            f"Recommended SkyServe target_qps_per_replica: [bold]{report.recommended_target_qps_per_replica:g}[/]"
            f" ({escape(report.recommendation)})"
        )
    else:
        stdout.print(f"[dim]{escape(report.recommendation)}[/]")


# -- eval -----------------------------------------------------------------------------------------


class CatalogEval(click.ParamType):
    """An eval catalogs/evals.yaml has references for, read when the option is used, not at import (so a
    broken catalog is one line, and a new eval needs only its catalog entry)."""

    name = "eval"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(evals_lib.eval_names()) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        names = evals_lib.eval_names()
        if value not in names:
            self.fail(f"{value!r} is not one of {', '.join(names)} (catalogs/evals.yaml)", param, ctx)
        return str(value)


@click.command(name="eval")
@target_options
@click.option("--eval", "eval_name", type=CatalogEval(), default=None,
              help="Which eval to run  [default: the first in catalogs/evals.yaml].")
@click.option("--reasoning-effort", type=click.Choice(evals_lib.EFFORTS), default="low", show_default=True,
              help="Reasoning effort to evaluate.")
@click.option("--examples", type=int, callback=positive_int, metavar="N",
              help="Score N questions once each [default: the full eval, 8 repeats].")
@click.option("--python", "python", metavar="PATH",
              help=f"Interpreter that has gpt-oss installed [default: ${evals_lib.PYTHON_ENV} or this one].")
@click.option("--sampler", type=click.Choice(["responses", "chat_completions"]), default="responses",
              show_default=True, help="API gpt_oss.evals samples through.")
@json_option
@click.pass_context
def eval_(
    ctx: click.Context,
    target: Target,
    eval_name: str,
    reasoning_effort: str,
    examples: int | None,
    python: str | None,
    sampler: str,
    json_: bool,
) -> None:
    """Run OpenAI's gpt_oss.evals (one catalogs/evals.yaml lists, e.g. GPQA) against an endpoint and
    compare the score with the published reference for the model and effort. Exit 1 when clearly below it
    (more than two binomial standard errors at the number of questions, and at least 3 points)."""
    eval_name = eval_name or evals_lib.eval_names()[0]
    model = target.model or asyncio.run(bench_lib.first_model(target.base_url, target.api_key))
    if model is None:
        raise EndpointError(f"{target.base_url}/v1/models lists no model it serves; pass --model")
    if not json_:
        stderr.print(f"Running gpt_oss.evals {eval_name} at effort {reasoning_effort} against {escape(model)}...")
    verdict = evals_lib.run_eval(
        target.base_url,
        target.api_key,
        model,
        eval_name,
        reasoning_effort,
        examples,
        python=python,
        sampler=sampler,
        show_progress=not json_,
    )
    if json_:
        print_json(verdict.to_dict())
    else:
        table = Table(box=None)
        for header in ("EVAL", "MODEL", "EFFORT", "N", "SCORE", "REFERENCE", "THRESHOLD", "RESULT"):
            table.add_column(header)
        table.add_row(
            verdict.eval, escape(verdict.model), verdict.reasoning_effort, str(verdict.examples),
            f"{verdict.score:.1f}%", f"{verdict.reference:.1f}%", f"{verdict.threshold:.1f}%",
            "[green]pass[/]" if verdict.ok else "[red]FAIL[/]",
        )
        stdout.print(table)
        stdout.print(escape(verdict.detail))
    if not verdict.ok:
        ctx.exit(1)


def _slo(ctx: click.Context, param: click.Parameter, value: str) -> tune_lib.Slo:
    try:
        return tune_lib.parse_slo(value)
    except UserError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"--slo {value!r}: ")) from None


@click.command(name="tune")
@target_options
@click.option("--slo", required=True, callback=_slo, metavar="ttft-p90=MS,tpot-p50=MS",
              help="The latency to meet: TTFT p90 and TPOT p50 in milliseconds.")
@click.option("--input-len", type=int, default=bench_lib.DEFAULT_INPUT_LEN, show_default=True,
              callback=at_most(LONGEST_CONTEXT), metavar="I", help="Prompt length in tokens (approximate).")
@click.option("--output-len", type=int, default=bench_lib.DEFAULT_OUTPUT_LEN, show_default=True,
              callback=at_most(LONGEST_CONTEXT), metavar="O", help="Output tokens per request (ignore_eos).")
@click.option("--max-minutes", type=float, callback=positive_number, metavar="M",
              help="Stop the search after this many minutes (before the next level), with what it found.")
@click.option("--max-concurrency", type=int, default=tune_lib.MAX_CONCURRENCY, show_default=True,
              callback=at_most(MOST_REQUESTS), metavar="C", help="The highest concurrency to try.")
@click.option("--price-per-hour", type=float, callback=non_negative_number, metavar="P",
              help="$/hour of the deployment [default: from the deployment record].")
@json_option
@click.pass_context
def tune(ctx: click.Context, target: Target, slo: tune_lib.Slo, input_len: int, output_len: int,
         max_minutes: float | None, max_concurrency: int, price_per_hour: float | None, json_: bool) -> None:
    """Find the highest load a running endpoint serves within a latency SLO: bench's steady state at
    concurrency 1, 2, 4, ... then a bisection; reports tokens/s, QPS and $/1M output tokens there and the
    target_qps_per_replica to serve it with. Exit 1 when no load met the SLO."""
    model, context = target.model, None
    listed, context = asyncio.run(bench_lib.served_model(target.base_url, target.api_key))
    model = model or listed
    if model is None:
        raise EndpointError(f"{target.base_url}/v1/models lists no model it serves; pass --model")
    if context is not None and input_len + output_len > context:
        raise UserError(f"--input-len {input_len} + --output-len {output_len} = {input_len + output_len} tokens is "
                        f"more than the served context of {context} (/v1/models' max_model_len); allowed: a sum "
                        f"of at most {context}")
    price = price_per_hour if price_per_hour is not None else target.price_per_hour
    endpoint = tune_lib.Endpoint(target.base_url, target.api_key, model, price)
    config = tune_lib.Configuration("as-served", {}, "the endpoint's own flags")

    def progress(p: tune_lib.Progress) -> None:
        if json_ or p.concurrency is None:
            return
        left = "" if p.seconds_left is None else f", {max(p.seconds_left, 0) / 60:.1f} min left"
        if p.step is None:
            stderr.print(f"{p.configuration}: concurrency {p.concurrency}{left}...", markup=False)
        else:
            verdict = "meets the SLO" if p.step.met else "misses the SLO"
            stderr.print(f"{p.configuration}: concurrency {p.concurrency} {verdict} (TTFT p90 "
                         f"{_num(p.step.ttft_ms_p90)} ms, TPOT p50 {_num(p.step.tpot_ms_p50)} ms, "
                         f"{p.step.errors} errors){left}", markup=False)

    result = tune_lib.run([config], lambda _: tune_lib.fixed_endpoint(endpoint), slo, input_len=input_len,
                          output_len=output_len, max_seconds=max_minutes * 60 if max_minutes else None,
                          on_progress=progress, max_concurrency=max_concurrency)
    if json_:
        print_json({"base_url": target.base_url, "model": model, **result.to_dict()})
    else:
        print_tune_result(result)
    if result.winner is None:
        ctx.exit(1)


def print_tune_result(result: tune_lib.TuneResult) -> None:
    """One row per configuration at its best load, then the winner and its target_qps_per_replica."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("CONFIG", "CONC", "TOK/S", "QPS", "$/1M", "TTFT P90", "TPOT P50", "WHY NOT"):
        table.add_column(col, justify="left" if col in ("CONFIG", "WHY NOT") else "right", overflow="fold")
    for r in result.results:
        best = r.best
        table.add_row(escape(r.name), str(r.concurrency or "-"),
                      f"{best.output_tokens_per_s:,.0f}" if best else "-",
                      f"{best.request_throughput:.3g}" if best else "-",
                      _price(best.usd_per_million_output_tokens) if best else "-",
                      _num(best.ttft_ms_p90) if best else "-", _num(best.tpot_ms_p50) if best else "-",
                      escape(r.lost_because or ""))
    stdout.print(table)
    slo = result.slo
    stdout.print(f"SLO: TTFT p90 <= {slo.ttft_p90_ms:g} ms, TPOT p50 <= {slo.tpot_p50_ms:g} ms at "
                 f"{result.input_len}/{result.output_len} tokens", markup=False)
    if result.stopped:
        stdout.print(f"Stopped early: {result.stopped}", markup=False)
    if result.winner is None:
        stdout.print(result.recommendation, markup=False)
        return
    stdout.print(f"Best: {result.winner}; target_qps_per_replica: {result.target_qps_per_replica} "
                 f"({result.recommendation})", markup=False)


COMMANDS: list[click.Command] = [smoke, bench, eval_, tune]
