"""Shared CLI pieces: the --json option, consoles (results on stdout, chatter on stderr), JSON output."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)


def table_console(piped_width: int = 200) -> Console:
    """A stdout console for result tables: terminal width on a TTY, else `piped_width` columns."""
    import sys

    return Console(highlight=False, width=None if sys.stdout.isatty() else piped_width)


stderr = Console(stderr=True, highlight=False)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--json`: one JSON document on stdout and nothing else (dest `json_`, as in simonw/llm)."""
    return click.option("json_", "--json", is_flag=True, is_eager=True, callback=_note_json,
                        help="Print one JSON document on stdout.")(func)


def _note_json(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Read before the other parameters (eager), so a bad value after it still gets the error document."""
    if value:
        _json["wanted"] = True
    return value


_json = {"printed": False, "wanted": False}


def print_json(document: Any) -> None:
    """The command's one document; NaN and infinities become null (JSON has neither)."""
    _json["printed"] = True
    click.echo(json.dumps(_finite(document), indent=2, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_printed() -> bool:
    """Whether this command already printed its document (the CLI's error path then prints none)."""
    return _json["printed"]


def json_wanted() -> bool:
    """Whether click read --json (False too when parsing stopped before it got there)."""
    return _json["wanted"]


def reset_json() -> None:
    _json["printed"] = _json["wanted"] = False


def positive_int(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


def positive_number(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Seconds, rates, targets: a finite number above zero."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise click.BadParameter(f"must be a number above 0, got {value}")
    return value


def seconds_up_to(limit: float) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback for seconds: a finite number above 0 and at most `limit` (beyond it a sleep or a socket
    timeout overflows, and no wait that long is meant)."""
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and not (0 < value <= limit):
            raise click.BadParameter(f"must be seconds above 0 and at most {limit:g}, got {value}")
        return value
    return check


def at_most(limit: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback for a positive count with a ceiling (a request longer than any context, say)."""
    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and not (0 < value <= limit):
            raise click.BadParameter(f"must be a positive integer of at most {limit}, got {value}")
        return value
    return check


def guard_every_parameter(command: click.Command) -> None:
    """The checks every command's parameters get, whoever declared them: a text value is not empty (an
    empty --name, --api-key or --model used to fall back to a default silently), a number is finite."""
    for param in command.params:
        if isinstance(param, click.Option) and param.is_flag:
            continue
        if isinstance(param.type, click.types.StringParamType):
            param.callback = _chained(_not_empty, param.callback)
        elif isinstance(param.type, click.types.FloatParamType):
            param.callback = _chained(_finite_number, param.callback)


def _chained(first: Callable[..., Any], then: Callable[..., Any] | None) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        value = first(ctx, param, value)
        return then(ctx, param, value) if then else value
    return callback


def _not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    for item in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(item, str) and not item.strip():
            raise click.BadParameter("must not be empty")
    return value


def _finite_number(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def non_negative_number(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Prices: a finite number, zero allowed (hardware you already own)."""
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise click.BadParameter(f"must be a number of at least 0, got {value}")
    return value


def non_negative_int(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value < 0:
        raise click.BadParameter(f"must be 0 or more, got {value}")
    return value


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one DNS label
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def check_host_port(text: str, *, port_required: bool = True) -> tuple[str, int | None]:
    """'host:port' -> (host, port), or ValueError saying what is allowed (hostname or IPv4, port 1-65535)."""
    host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep and port_required:
        raise ValueError(f"{text!r} has no port: use HOST:PORT")
    if not _HOST.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IPv4 address")
    if not sep:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} must be a number from 1 to 65535")
    return host, int(port_text)


def endpoint_url(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--endpoint: http(s)://HOST[:PORT][/PATH] or HOST:PORT, checked before any request is sent."""
    if value is None:
        return value
    from urllib.parse import urlsplit

    allowed = "use http://HOST:PORT, https://HOST[:PORT] or HOST:PORT"
    text = value.strip()
    if "://" not in text:
        try:
            check_host_port(text.rstrip("/"))
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: {exc}; {allowed}") from None
        return f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise click.BadParameter(f"{value!r}: scheme {parts.scheme!r} is not supported; {allowed}")
    try:
        port = parts.port
    except ValueError:
        raise click.BadParameter(f"{value!r}: the port must be a number from 1 to 65535; {allowed}") from None
    host = parts.hostname or ""
    if not host or (not _HOST.fullmatch(host) and not _is_ipv6(host)) or port == 0:
        raise click.BadParameter(f"{value!r}: no valid host; {allowed}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise click.BadParameter(f"{value!r}: no credentials, query or fragment in the URL; {allowed}")
    return text


def _is_ipv6(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def check_context(model: Any, context: int | None) -> None:
    """--context within the model's range: below min_context not even the smoke test's request (its prompt
    plus 1024 output tokens) fits; above max_position_embeddings the model has no positions."""
    from launcher.errors import UserError

    top = model.architecture.max_position_embeddings
    if context is not None and not model.min_context <= context <= top:
        raise UserError(f"--context {context} is out of range for {model.name}: allowed {model.min_context}..{top} "
                        f"tokens (shorter holds no request)")


def parse_gpu_spec(catalog: Any, spec: str) -> tuple[Any, int | None]:
    """'H100', 'h100:2' -> (Gpu, count or None). Raises UserError naming what is allowed."""
    from launcher.errors import CatalogError, UserError

    name, colon, count_text = spec.partition(":")
    try:
        gpu = catalog.gpu(name)
    except CatalogError as exc:
        raise CatalogError(f"--gpu {spec!r}: {exc}") from None
    if not colon:
        return gpu, None
    if not count_text.isdigit() or int(count_text) not in (1, 2, 4, 8):
        raise UserError(f"GPU count in --gpu {spec!r} must be 1, 2, 4 or 8 (a tensor-parallel size)")
    return gpu, int(count_text)


def money(value, decimals=2):
    """Dollars with a fixed number of decimals (cents for $/hour and costs, 3 for $ per 1M tokens)."""
    return "-" if value is None else f"${value:,.{decimals}f}"
