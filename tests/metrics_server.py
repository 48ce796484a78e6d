"""A fake engine /metrics endpoint on 127.0.0.1:0 that, like the node's auth guard, needs the key.

Each base path (`/r1`, `/r2`, ...) is one "replica": it answers its list of Prometheus texts in turn,
repeating the last one, so two reads a window apart see two different scrapes of the same engine.
"""

from __future__ import annotations

from pathlib import Path

from loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what prometheus_client's exposition sends


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


class MetricsServer(LoopbackServer):
    def __init__(self, key: str) -> None:
        self.key = key
        self.scrapes: dict[str, list[str]] = {}
        self.seen: dict[str, int] = {}
        super().__init__(Starlette(routes=[Route("/{replica}/metrics", self._metrics)]))

    def replica(self, name: str, *texts: str) -> str:
        """Serve these scrapes at /name/metrics; returns that replica's base URL."""
        self.scrapes[name] = list(texts)
        self.seen[name] = 0
        return f"{self.url}/{name}"

    async def _metrics(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return PlainTextResponse("Unauthorized", status_code=401)
        name = request.path_params["replica"]
        if name not in self.scrapes:
            return PlainTextResponse("Not Found", status_code=404)
        texts = self.scrapes[name]
        text = texts[min(self.seen[name], len(texts) - 1)]
        self.seen[name] += 1
        return Response(text, media_type=CONTENT_TYPE)
