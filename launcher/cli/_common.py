"""Shared CLI pieces: the --json option, consoles (results on stdout, chatter on stderr), JSON output."""

from __future__ import annotations

import json
from typing import Any, Callable

import click
from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)


def table_console() -> Console:
    """A stdout console for result tables: terminal width on a TTY, else wide enough never to truncate."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--json`: one JSON document on stdout and nothing else (dest `json_`, as in simonw/llm)."""
    return click.option("json_", "--json", is_flag=True, help="Print one JSON document on stdout.")(func)


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def positive_int(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


def parse_gpu_spec(catalog: Any, spec: str) -> tuple[Any, int | None]:
    """'H100', 'h100:2' -> (Gpu, count or None). Raises UserError naming what is allowed."""
    from launcher.errors import UserError

    name, _, count_text = spec.partition(":")
    gpu = catalog.gpu(name)
    if not count_text:
        return gpu, None
    try:
        count = int(count_text)
    except ValueError:
        raise UserError(f"GPU count in {spec!r} must be an integer (1, 2, 4 or 8)") from None
    if count <= 0:
        raise UserError(f"GPU count in {spec!r} must be positive (1, 2, 4 or 8)")
    return gpu, count
