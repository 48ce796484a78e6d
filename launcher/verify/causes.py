"""Why an endpoint did not answer as hoped: one message per cause, shared by smoke and bench.

A refused connection, a name that does not resolve, a URL with the wrong scheme, a TLS failure, a
timeout, 401, 404 and 503 need different fixes, so each gets its own sentence. Only `loading` (503)
and `refused` (nothing listens yet while the engine starts) are worth waiting for; every other cause
ends a wait at once. Uses httpx types and the standard library only; never prints.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

SCHEMES = ("http", "https")
KEY_HELP = "--api-key, --api-key-file or $GPTOSS_SKY_API_KEY"


@dataclass(frozen=True)
class Cause:
    """kind: scheme | dns | refused | tls | timeout | closed | network | unauthorized | forbidden |
    not_found | loading | http. `message` is one line for a person."""

    kind: str
    message: str

    @property
    def still_loading(self) -> bool:
        """A server that is starting refuses connections, then answers 503 until the model is loaded."""
        return self.kind in ("loading", "refused")


def _where(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or url
    return f"{host}:{port}" if port else host


def url_problem(url: str) -> Cause | None:
    """A URL no request should be tried with: a scheme other than http(s), or no host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return Cause("scheme", f"unsupported URL scheme ({shown}) in {url!r}: use http:// or https://")
    if not parts.hostname:
        return Cause("scheme", f"no host in {url!r}: use http(s)://HOST:PORT")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def from_os_error(exc: BaseException, url: str) -> Cause | None:
    """The cause behind a failed connect: DNS, TLS or refused; None when it is none of those."""
    where = _where(url)
    for link in _chain(exc):
        if isinstance(link, socket.gaierror):
            host = urlsplit(url).hostname or url
            return Cause("dns", f"cannot resolve host {host!r} (DNS lookup failed: {link.strerror or link})")
        if isinstance(link, ssl.SSLError):
            hint = ""
            if "WRONG_VERSION_NUMBER" in str(link) or "wrong version number" in str(link):
                hint = "; the server does not speak TLS there: try http://"
            elif isinstance(link, ssl.SSLCertVerificationError):
                hint = "; the certificate is not trusted here"
            return Cause("tls", f"TLS handshake with {where} failed: {link.reason or link}{hint}")
        if isinstance(link, ConnectionRefusedError):
            return Cause("refused", f"connection refused by {where}: nothing is listening on that port (yet)")
    return None


def from_exception(exc: BaseException, url: str, timeout_s: float | None = None) -> Cause:
    """One line for a request that raised instead of answering."""
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return url_problem(url) or Cause("scheme", f"bad URL {url!r}: {exc}")
    limit = f" within {timeout_s:g} s" if timeout_s else ""
    where = _where(url)
    if isinstance(exc, httpx.ConnectTimeout):
        return Cause(
            "timeout",
            f"no connection to {where}{limit} (ConnectTimeout): the host is down or a firewall drops the port",
        )
    if isinstance(exc, httpx.TimeoutException):
        return Cause("timeout",
                     f"timed out{limit}: {where} accepted the request but did not answer ({type(exc).__name__})")
    known = from_os_error(exc, url)
    if known is not None:
        return known
    if isinstance(exc, httpx.RemoteProtocolError):
        return Cause("closed", f"connection closed by the server mid-response: {exc}")
    if isinstance(exc, (httpx.ConnectError, OSError)):
        return Cause("network", f"could not connect to {where}: {exc or type(exc).__name__}")
    return Cause("network", f"{type(exc).__name__}: {exc}")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_status(status: int, path: str, body: str = "", *, has_key: bool = True) -> Cause:
    """One line for a non-2xx answer; keeps "HTTP <code>" and the start of the body."""
    shown = f"HTTP {status}: {_short(body) or '(empty body)'}"
    if status == 401:
        fix = "the key was refused; pass the deployment's key" if has_key else "no key was sent; pass one"
        return Cause("unauthorized", f"{shown} ({path} needs the API key: {fix} with {KEY_HELP})")
    if status == 403:
        return Cause("forbidden", f"{shown} ({path} is forbidden with this key)")
    if status == 404:
        return Cause("not_found", f"{shown} ({path} not found: wrong port or path, or not a gpt-oss server)")
    if status == 503:
        return Cause("loading", f"{shown} ({path}: the server is up but still loading the model)")
    return Cause("http", shown)
