"""smoke and bench tell causes apart (issue 11 item 5), against real sockets and servers on 127.0.0.1:
a closed port, a TLS-speaking socket, a socket that never answers, servers answering 401/404/503, an
unresolvable name and a bad scheme. Only 503 and a refused connection are "still loading" (waited for);
every other cause ends the wait at once with its own message."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from clitools import invoke
from openai_server import API_KEY, MODEL, FakeServer, unused_url

from launcher.errors import EndpointError
from launcher.verify import bench as bench_lib
from launcher.verify import smoke as smoke_lib

DNS_FAILS = "http://nonexistent.invalid:8000"  # RFC 6761: .invalid never resolves
LONG_WAIT = 600.0  # what `smoke` waits for a loading model: a cause that is not loading must not use it


class _StatusHandler(BaseHTTPRequestHandler):
    status = 200

    def _answer(self) -> None:
        body = b'{"error": "Unauthorized"}' if self.status == 401 else b'{"detail": "Not Found"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def status_server() -> Iterator[callable]:
    """Start a real HTTP server on 127.0.0.1 answering every request with one status."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> str:
        handler = type("Handler", (_StatusHandler,), {"status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_url() -> Iterator[str]:
    """A socket that speaks TLS with a certificate from a private CA (not trusted by the client)."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client rejects the certificate: that is the point
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    listener.close()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _health(url: str, timeout: float = LONG_WAIT, **kwargs: object) -> tuple[smoke_lib.CheckResult, float, list[str]]:
    notes: list[str] = []
    start = time.perf_counter()
    report = smoke_lib.smoke(url, API_KEY, timeout=timeout, poll_interval=0.05, on_wait=notes.append, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert [c.name for c in report.checks if c.detail.startswith("not run")] == list(smoke_lib.CHECK_NAMES[1:])
    return report.check("health"), elapsed, notes


# -- smoke: causes that are not "loading" end the wait at once ------------------------------------


def test_unresolvable_name_fails_at_once_naming_dns() -> None:
    health, _, notes = _health(DNS_FAILS)
    assert not health.ok and notes == []  # no "waiting" note: not retried
    assert "cannot resolve host 'nonexistent.invalid'" in health.detail


@pytest.mark.parametrize("url", ["ftp://x", "ftp://127.0.0.1:8000", "notaurl"])
def test_bad_scheme_fails_at_once(url: str) -> None:
    health, _, notes = _health(url)
    assert not health.ok and notes == []
    assert "unsupported URL scheme" in health.detail and "use http:// or https://" in health.detail


def test_tls_failure_fails_at_once_naming_tls(tls_url: str) -> None:
    health, _, notes = _health(tls_url)
    assert not health.ok and notes == []
    assert health.detail.startswith(f"TLS handshake with {tls_url.removeprefix('https://')} failed")
    assert "certificate" in health.detail.lower()


def test_https_to_a_plain_http_server_says_tls_and_suggests_http(server: FakeServer) -> None:
    health, _, notes = _health(server.url.replace("http://", "https://"))
    assert not health.ok and notes == []
    assert "TLS handshake" in health.detail and "try http://" in health.detail


def test_silent_server_times_out_once_not_for_the_whole_wait(silent_url: str) -> None:
    health, _, notes = _health(silent_url, request_timeout=0.5)
    assert not health.ok and notes == []  # one request timed out, and was not retried
    assert "timed out within 0.5 s" in health.detail


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, "needs the API key: the key was refused"), (404, "/health not found: wrong port or path")],
)
def test_401_and_404_fail_at_once_with_their_own_reason(status_server, status: int, expected: str) -> None:
    health, _, notes = _health(status_server(status))
    assert not health.ok and notes == []
    assert f"HTTP {status}" in health.detail and expected in health.detail


def test_503_is_still_loading_and_retried_until_the_timeout(status_server) -> None:
    health, elapsed, notes = _health(status_server(503), timeout=0.5)
    assert not health.ok and elapsed >= 0.5
    assert health.detail.startswith("still loading: not ready within 0.5 s")
    assert len(notes) == 1 and "still loading the model" in notes[0]


def test_refused_connection_is_retried_as_launching() -> None:
    health, elapsed, notes = _health(unused_url(), timeout=0.5)
    assert not health.ok and elapsed >= 0.5
    assert "nothing answered within 0.5 s" in health.detail and "connection refused" in health.detail
    assert len(notes) == 1 and "connection refused" in notes[0]


def test_cli_smoke_of_an_unresolvable_name_fails_at_once_and_says_dns() -> None:
    result = invoke("smoke", "--endpoint", DNS_FAILS, "--api-key", API_KEY, "--json")
    assert result.exit_code == 1
    assert "cannot resolve host" in result.stdout
    assert "within" not in result.stdout  # ended by the cause, not by the wait running out


# -- bench: the same causes, and --model only when the model list is the problem ------------------


def _first_model_error(url: str, api_key: str | None = API_KEY) -> str:
    with pytest.raises(EndpointError) as caught:
        asyncio.run(bench_lib.first_model(url, api_key, timeout=2.0))
    return str(caught.value)


def test_bench_model_lookup_names_each_cause(status_server, tls_url: str, silent_url: str) -> None:
    dead = unused_url()
    assert "connection refused by 127.0.0.1" in _first_model_error(dead)
    assert "cannot resolve host 'nonexistent.invalid'" in _first_model_error(DNS_FAILS)
    assert "unsupported URL scheme (ftp://)" in _first_model_error("ftp://x")
    assert "TLS handshake" in _first_model_error(tls_url)
    assert "timed out within 2 s" in _first_model_error(silent_url)
    assert "no key was sent" in _first_model_error(status_server(401), api_key=None)
    assert "the key was refused" in _first_model_error(status_server(401))
    assert "/v1/models not found" in _first_model_error(status_server(404))
    assert "still loading the model" in _first_model_error(status_server(503))


def test_cli_bench_on_a_dead_port_names_the_cause_and_does_not_advise_model() -> None:
    result = invoke("bench", "--endpoint", unused_url(), "--api-key", API_KEY)
    assert result.exit_code == 1
    assert "connection refused" in result.stderr
    assert "--model" not in result.stderr + result.stdout


def test_cli_bench_advises_model_only_when_the_list_is_empty(server: FakeServer) -> None:
    server.config.faults = {"no_models"}  # /v1/models answers, with an empty list
    result = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY)
    assert result.exit_code == 1 and "lists no model it serves; pass --model" in result.stderr
    assert server.config.completions_seen == 0


@pytest.mark.parametrize("client", bench_lib.CLIENTS)
def test_bench_requests_on_a_dead_port_say_connection_refused(client: str) -> None:
    report = bench_lib.bench(
        unused_url(), API_KEY, MODEL, concurrency=[1], requests=2, input_len=5, output_len=3, client=client
    )
    assert report.levels[0].errors == 2
    assert "connection refused by 127.0.0.1" in report.levels[0].error_samples[0]


def test_bench_requests_to_an_unresolvable_name_say_dns() -> None:
    report = bench_lib.bench(DNS_FAILS, API_KEY, MODEL, concurrency=[1], requests=1, input_len=5, output_len=3)
    assert "cannot resolve host 'nonexistent.invalid'" in report.levels[0].error_samples[0]
