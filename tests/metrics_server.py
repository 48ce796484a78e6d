"""A fake engine /metrics endpoint on 127.0.0.1:0 that, like the node's auth guard, needs the key.

Each base path (`/r1`, `/r2`, ...) is one "replica": it answers its list of Prometheus texts in turn,
repeating the last one, so two reads a window apart see two different scrapes of the same engine.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what prometheus_client's exposition sends


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.txt").read_text()


class MetricsServer:
    def __init__(self, key: str) -> None:
        self.key = key
        self.scrapes: dict[str, list[str]] = {}
        self.seen: dict[str, int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        app = Starlette(routes=[Route("/{replica}/metrics", self._metrics)])
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="critical", ws="none",
                                                   timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

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

    def __enter__(self) -> "MetricsServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("metrics server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
