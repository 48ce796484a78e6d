"""A minimal HTTP/1.1 streaming client on raw asyncio sockets: the default load path of `bench`.

Why: one Python process on a small machine spends ~0.5 ms of CPU per request in httpx/httpcore/anyio,
which at hundreds of concurrent streams turns into tens to hundreds of ms of queueing that `bench`
would report as TTFT (benchmarks/BENCH_CLIENT.md). This client does only what the load loop needs:

- one keep-alive TCP connection per concurrent stream (TCP_NODELAY), opened once and reused; a
  connection the server closed while idle is reopened and the request resent once;
- request bytes built once per request, before the timed loop; one `send` per request;
- `loop.add_reader` + `recvmsg` with large reads; arrival time per read is the kernel's receive
  timestamp (SO_TIMESTAMPNS, Linux) converted to `time.perf_counter()`, else `perf_counter()` taken
  before the read, so parsing and event-loop queueing behind other sockets are not counted as TTFT;
- HTTP/1.1 framing: chunked transfer encoding (uvicorn and vLLM stream that way), Content-Length,
  or read-until-close; 1xx interim responses skipped;
- SSE: events split on a blank line; an event with a non-empty `"text":` field counts as a token
  chunk without JSON decoding; only events without a `"text":` field (the final usage chunk, error
  events) and events carrying a usage object are decoded; `data: [DONE]` ends the stream.

Plain `http://` only: `https://` endpoints use the httpx path (launcher.verify.bench picks it). Proxies from
the environment are not used (httpx's path honours them). Errors read like httpx's
(`ConnectError: ...`, `RemoteProtocolError: ...`, `ReadTimeout: ...`) so reports look the same
whichever client ran.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from launcher.verify import causes

READ_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_CMSG_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_TIMESPEC = struct.Struct("@qq")
_perf = time.perf_counter
_wall = time.time


@dataclass(frozen=True)
class Outcome:
    """What one exchange produced; launcher.verify.bench turns it into a RequestRecord."""

    start: float
    end: float
    status: int
    text_times: list[float]
    usage_tokens: int | None
    done: bool
    error: str | None


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path_prefix: str
    host_header: str

    @classmethod
    def parse(cls, base_url: str) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"raw client needs an http:// URL, got {base_url!r}")
        port = parts.port or 80
        host_header = parts.hostname if port == 80 else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # IPv6 literal
            host_header = f"[{parts.hostname}]" + ("" if port == 80 else f":{port}")
        return cls(parts.hostname, port, parts.path.rstrip("/"), host_header)


def supports(base_url: str) -> bool:
    return urlsplit(base_url).scheme == "http"


def build_request(target: Target, path: str, payload: dict[str, Any], headers: dict[str, str]) -> bytes:
    """The whole POST as bytes: built once per request, sent with one `send`."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    lines = [
        f"POST {target.path_prefix}{path} HTTP/1.1",
        f"Host: {target.host_header}",
        "User-Agent: gptoss-sky-bench",
        "Accept: text/event-stream",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Exchange:
    """Parser state of one request/response on one connection; fed bytes with arrival times."""

    __slots__ = (
        "future", "start", "end", "raw", "head_done", "status", "framing", "remaining", "keep_alive",
        "cstate", "cleft", "sse", "text_times", "usage_tokens", "done", "error", "err_body", "complete",
        "got_bytes",
    )

    def __init__(self, future: asyncio.Future[None], start: float) -> None:
        self.future = future
        self.start = start
        self.end = start
        self.raw = b""
        self.head_done = False
        self.status = 0
        self.framing = "eof"  # "chunked" | "length" | "eof"
        self.remaining = 0
        self.keep_alive = True
        self.cstate = 0  # chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.cleft = 0
        self.sse = b""
        self.text_times: list[float] = []
        self.usage_tokens: int | None = None
        self.done = False
        self.error: str | None = None
        self.err_body = b""
        self.complete = False
        self.got_bytes = False

    # -- feeding ------------------------------------------------------------------------------------

    def feed(self, data: bytes, t: float) -> None:
        self.got_bytes = True
        buf = self.raw + data if self.raw else data
        while not self.head_done:
            k = buf.find(b"\r\n\r\n")
            if k < 0:
                self.raw = buf
                if len(buf) > MAX_HEAD:
                    self._fail("RemoteProtocolError: response head too large")
                return
            head, buf = buf[:k], buf[k + 4 :]
            if not self._parse_head(head):
                return
        if self.framing == "chunked":
            body = self._dechunk(buf)
            if self.error is not None:
                return
        elif self.framing == "length":
            body, rest = buf[: self.remaining], buf[self.remaining :]
            self.remaining -= len(body)
            self.raw = b""
            if self.remaining == 0:
                self.complete = True
                if rest:
                    self.keep_alive = False  # bytes beyond the response: do not reuse
        else:
            body = buf
            self.raw = b""
        if body:
            if self.status == 200:
                self._sse(body, t)
            elif len(self.err_body) < 200:
                self.err_body += body[:200]
        if self.complete and self.error is None:
            self._finish(t)

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        try:
            if not status_line[0].startswith(b"HTTP/1."):
                raise ValueError
            status = int(status_line[1])
        except (ValueError, IndexError):
            self._fail(f"RemoteProtocolError: bad status line {lines[0][:80]!r}")
            return False
        if 100 <= status < 200:  # interim (100 Continue): the real head follows
            return True
        self.status = status
        self.head_done = True
        if lines[0].startswith(b"HTTP/1.0"):
            self.keep_alive = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self.framing = "chunked"
            elif name == b"content-length" and self.framing != "chunked":
                try:
                    self.remaining = int(value)
                except ValueError:
                    self._fail("RemoteProtocolError: bad content-length")
                    return False
                self.framing = "length"
            elif name == b"connection":
                if b"close" in value:
                    self.keep_alive = False
                elif b"keep-alive" in value:
                    self.keep_alive = True
        if self.framing == "length" and self.remaining == 0:
            self.complete = True
        if self.framing == "eof":
            self.keep_alive = False
        return True

    def _dechunk(self, buf: bytes) -> bytes:
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n:
            state = self.cstate
            if state == 1:
                take = min(self.cleft, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.cleft -= take
                if self.cleft == 0:
                    self.cstate = 2
            elif state == 0:
                k = buf.find(b"\r\n", pos)
                if k < 0:
                    if n - pos > 1024:
                        self._fail("RemoteProtocolError: bad chunk size line")
                        return b""
                    break
                try:
                    size = int(buf[pos:k].split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._fail(f"RemoteProtocolError: bad chunk size {buf[pos:k][:40]!r}")
                    return b""
                pos = k + 2
                if size == 0:
                    self.cstate = 3
                else:
                    self.cleft = size
                    self.cstate = 1
            elif state == 2:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    self._fail("RemoteProtocolError: chunk not followed by CRLF")
                    return b""
                pos += 2
                self.cstate = 0
            else:  # trailers, ended by an empty line
                k = buf.find(b"\r\n", pos)
                if k < 0:
                    break
                line = buf[pos:k]
                pos = k + 2
                if not line:
                    self.complete = True
                    if pos < n:
                        self.keep_alive = False
                    pos = n
                    break
        self.raw = buf[pos:] if pos < n else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _sse(self, body: bytes, t: float) -> None:
        if b"\r" in body:  # CRLF or CR line ends: normalise (a CR split from its LF waits)
            if self.sse.endswith(b"\r"):
                body = b"\r" + body
                self.sse = self.sse[:-1]
            held = b""
            if body.endswith(b"\r"):
                body, held = body[:-1], b"\r"
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        s = self.sse + body if self.sse else body
        start = 0
        while True:
            k = s.find(b"\n\n", start)
            if k < 0:
                break
            event = s[start:k]
            start = k + 2
            if event.startswith(b"data:") and b"\n" not in event:
                payload = event[5:].strip()
            else:
                data_lines = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(b"data:")]
                if not data_lines:
                    continue  # comment (keep-alive ping) or a field we do not use
                payload = b"\n".join(data_lines).strip()
            if payload == b"[DONE]":
                self.done = True
                continue
            i = payload.find(b'"text":')
            if i >= 0:
                j = i + 7
                while payload[j : j + 1] == b" ":
                    j += 1
                if payload[j : j + 1] == b'"' and payload[j + 1 : j + 2] != b'"':
                    self.text_times.append(t)
                if b'"usage":{' not in payload and b'"usage": {' not in payload:
                    continue
            self._decode(payload)
            if self.error is not None:
                return
        self.sse = s[start:] if start < len(s) else b""

    def _decode(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError as exc:
            self.error = f"malformed stream: {exc}"
            return
        if not isinstance(doc, dict):
            self.error = f"malformed stream: {payload[:80]!r}"
            return
        if doc.get("error") is not None:
            self.error = f"error event in stream: {json.dumps(doc['error'])[:200]}"
            return
        usage = doc.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage_tokens = usage["completion_tokens"]

    # -- ending -------------------------------------------------------------------------------------

    def _finish(self, t: float) -> None:
        self.end = t
        if not self.future.done():
            self.future.set_result(None)

    def _fail(self, error: str) -> None:
        if self.error is None:
            self.error = error
        self.keep_alive = False
        self._finish(_perf())

    def lost(self, exc: BaseException | None) -> None:
        """The connection closed (exc None) or broke before `complete`."""
        if self.complete or self.future.done():
            return
        self.keep_alive = False
        if self.head_done and self.framing == "eof" and exc is None:
            self.complete = True
            if self.status == 200 and self.sse:
                self._sse(b"\n\n", _perf())  # an unterminated last event
            self._finish(_perf())
            return
        if not self.head_done:
            self._fail(f"RemoteProtocolError: Server disconnected without sending a response ({exc or 'EOF'})")
        elif exc is not None:
            self._fail(f"ReadError: {exc}")
        else:
            self._fail("RemoteProtocolError: peer closed connection without sending complete message body")

    def outcome(self) -> Outcome:
        error = self.error
        if error is None and self.status != 200:
            error = f"HTTP {self.status}: {self.err_body[:200].decode(errors='replace')}"
        return Outcome(self.start, self.end, self.status, self.text_times, self.usage_tokens, self.done, error)


class Connection:
    """One keep-alive connection, used by one worker for one request at a time."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self.kernel_ts = False
        self.exchange: _Exchange | None = None

    async def _open(self) -> None:
        client = self.client
        family, addr = await client.address()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.kernel_ts = False
            if client.kernel_timestamps and _SO_TIMESTAMPNS is not None and _CMSG_SPACE:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    self.kernel_ts = True
                except OSError:
                    pass
            await asyncio.wait_for(self.loop.sock_connect(sock, addr), client.connect_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        now = _perf()
        try:
            if self.kernel_ts:
                wall = _wall()
                data, ancillary, _, _ = sock.recvmsg(READ_SIZE, _CMSG_SPACE)
                for _level, _kind, raw in ancillary:
                    if len(raw) >= 16:
                        sec, nsec = _TIMESPEC.unpack_from(raw)
                        arrival = now - (wall - (sec + nsec * 1e-9))
                        if now - 1.0 < arrival <= now:  # sane: not from a stepped clock
                            now = arrival
            else:
                data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        if not data:
            self._close(None)
            return
        exchange = self.exchange
        if exchange is None or exchange.complete:
            self._close(None)  # bytes while idle: the server misbehaves; do not reuse
            return
        exchange.feed(data, now)

    def _close(self, exc: BaseException | None) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        if self.exchange is not None:
            self.exchange.lost(exc)

    def _timeout(self) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.future.done():
            exchange._fail(f"ReadTimeout: no complete response within {self.client.request_timeout:g} s")
            self._close(None)

    async def request(self, data: bytes) -> Outcome:
        """Send prebuilt request bytes and read the streamed response."""
        for attempt in (0, 1):
            start = _perf()
            reused = self.sock is not None
            if not reused:
                try:
                    await self._open()
                except asyncio.TimeoutError:
                    return Outcome(start, _perf(), 0, [], None, False, "ConnectTimeout: connect timed out")
                except OSError as exc:
                    return Outcome(start, _perf(), 0, [], None, False, f"ConnectError: {self.client.describe(exc)}")
            future: asyncio.Future[None] = self.loop.create_future()
            exchange = self.exchange = _Exchange(future, start)
            timer = self.loop.call_later(self.client.request_timeout, self._timeout)
            try:
                sock = self.sock
                assert sock is not None
                try:
                    sent = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent < len(data):
                    await self.loop.sock_sendall(sock, data[sent:])
                await future
            except OSError as exc:
                self._close(exc)
            finally:
                timer.cancel()
                self.exchange = None
            if not exchange.keep_alive and self.sock is not None:
                self._close(None)
            if reused and attempt == 0 and not exchange.got_bytes and exchange.error is not None:
                continue  # the server had closed this idle keep-alive connection: reopen, resend
            return exchange.outcome()
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._close(None)


class RawClient:
    """Connections to one http:// endpoint, handed to workers and kept between levels."""

    def __init__(self, base_url: str, request_timeout: float, *, kernel_timestamps: bool = True) -> None:
        self.target = Target.parse(base_url)
        self.request_timeout = request_timeout
        self.connect_timeout = min(request_timeout, 30.0)
        self.kernel_timestamps = kernel_timestamps
        self._address: tuple[int, Any] | None = None
        self._idle: list[Connection] = []
        self._all: list[Connection] = []

    async def address(self) -> tuple[int, Any]:
        if self._address is None:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.target.host, self.target.port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
            self._address = (family, addr)
        return self._address

    def describe(self, exc: OSError) -> str:
        """Why a connect failed, in the words launcher.verify.causes uses (refused, DNS, ...)."""
        url = f"http://{self.target.host_header}"
        cause = causes.from_os_error(exc, url)
        return cause.message if cause is not None else str(exc)

    def build(self, path: str, payload: dict[str, Any], headers: dict[str, str]) -> bytes:
        return build_request(self.target, path, payload, headers)

    def acquire(self) -> Connection:
        if self._idle:
            return self._idle.pop()
        connection = Connection(self)
        self._all.append(connection)
        return connection

    def release(self, connection: Connection) -> None:
        self._idle.append(connection)

    async def aclose(self) -> None:
        for connection in self._all:
            connection.close()
        self._all.clear()
        self._idle.clear()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["Connection", "Outcome", "RawClient", "Target", "build_request", "supports"]
