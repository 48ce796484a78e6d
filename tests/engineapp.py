"""An app with exactly an engine's real routes (tests/fixtures/*-routes.txt, made by make_routes.py from
vLLM 0.32.0's own app and SGLang 0.5.23's source), each answering 200 when reached, served on 127.0.0.1:
what the key guard (tests/test_guard.py) and smoke's auth check (tests/test_smoke.py) stand in front of."""

from __future__ import annotations

import re
from pathlib import Path

from loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "sk-guard-test-5f0c2a9e"
ENGINES = {"vllm": "vllm-0.32.0-routes.txt", "sglang": "sglang-0.5.23-routes.txt"}
METRICS = b"# HELP x\nvllm:num_requests_running 0.0\nvllm:request_success_total 7.0\n"


def routes(engine: str) -> list[tuple[str, str]]:
    lines = (FIXTURES / ENGINES[engine]).read_text().splitlines()
    return [tuple(line.split(" ", 1)) for line in lines if line.strip()]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def _answer(request):
    return PlainTextResponse(f"engine answered {request.method} {request.url.path}")


async def _health(request):
    return Response(status_code=200)  # vLLM's /health: an empty 200


async def _metrics_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": METRICS})


async def _ws(websocket):
    await websocket.accept()
    await websocket.send_text("engine answered")
    await websocket.close()


def engine_app(engine: str) -> Starlette:
    """A Starlette app with exactly the engine's routes; each answers 200 when reached."""
    by_path: dict[str, set[str]] = {}
    table: list = []
    for method, path in routes(engine):
        if method == "MOUNT":
            mount = Mount(path, app=_metrics_app)
            mount.path_regex = re.compile(f"^{path}(?P<path>.*)$")  # as vLLM does: /metrics without a 307
            table.append(mount)
        elif method == "WEBSOCKET":
            table.append(WebSocketRoute(path, _ws))
        else:
            by_path.setdefault(path, set()).add(method)
    for path, methods in by_path.items():
        table.append(Route(path, _health if path == "/health" else _answer, methods=sorted(methods)))
    return Starlette(routes=table)


class Served(LoopbackServer):
    """The guarded app on 127.0.0.1 (port 0), WebSockets on."""

    def __init__(self, app):
        super().__init__(app, ws="websockets")
