"""`gptoss-sky smoke | bench | eval`: check, load and score a running endpoint.

Each command takes a deployment NAME (resolved by `lifecycle.connection_for`) or `--endpoint URL`.
The API key comes from --api-key, --api-key-file, $GPTOSS_SKY_API_KEY or the deployment record, in
that order, and is never printed. Results go to stdout (a table, or one document with --json);
waiting notes go to stderr and are suppressed under --json. Exit 1 when a check fails.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click
from rich.markup import escape
from rich.table import Table

from launcher import smoke as smoke_lib
from launcher.cli._common import json_option, positive_int, print_json, stderr, stdout
from launcher.errors import UserError

API_KEY_ENV = "GPTOSS_SKY_API_KEY"


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
    @click.option("--endpoint", metavar="URL", help="Endpoint base URL instead of a deployment NAME.")
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
    if name:
        from launcher.lifecycle import connection_for

        connection = connection_for(name)
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
    metavar="S",
    help="Seconds to wait for the model to finish loading (503 or connection refused).",
)
@click.option(
    "--request-timeout",
    type=float,
    default=smoke_lib.DEFAULT_REQUEST_TIMEOUT_S,
    show_default=True,
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
        skipped = len(report.failed) - len(ran)
        note = f", {skipped} not run" if skipped else ""
        stdout.print(f"[red]FAILED[/]: {', '.join(ran)} ({passed}/{len(report.checks)} passed{note})")


COMMANDS: list[click.Command] = [smoke]
