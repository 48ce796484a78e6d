"""Running the CLI in tests with stdout and stderr kept apart, with its wait for a deployment short, and an
endpoint for it on 127.0.0.1 that fails every request."""

from __future__ import annotations

import functools

from click.testing import CliRunner, Result
from loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launcher.cli import cli


def invoke(*args: str) -> Result:
    """stdout and stderr kept apart (click 8.1 needs mix_stderr=False; 8.2 always separates)."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))


def missed_failures_time_out(monkeypatch, seconds=120):
    """`up`/`serve` wait `seconds` for the deployment instead of an hour: a failure the watch misses ends as
    a timeout, whose cause the tests' cause asserts refuse (so no test times the command itself)."""
    from launcher import lifecycle

    monkeypatch.setattr(lifecycle, "launch", functools.partial(lifecycle.launch, ready_timeout=seconds))


class FailingEndpoint(LoopbackServer):
    """Answers every request with 500 and a JSON error. echo_auth: the error repeats the Authorization header
    it got, as a careless proxy or debug page does (what the CLI prints of it must be masked)."""

    def __init__(self, echo_auth: bool = False) -> None:
        self.echo_auth = echo_auth
        super().__init__(Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST"])]))

    async def _answer(self, request: Request) -> JSONResponse:
        said = f"bad request with {request.headers.get('authorization')}" if self.echo_auth else "internal"
        return JSONResponse({"error": said}, status_code=500)
