"""gptoss_guard: the key on every route of the engine's public port, /health excepted.

vLLM's --api-key guards only /v1, /v2, /inference and /cohere (/invocations, /tokenize, /metrics... answer
without it); SGLang's leaves /health*, /ready* and /metrics open. This ASGI middleware sits in front of the
whole app: every HTTP request and WebSocket handshake without `Authorization: Bearer <key>` gets 401,
except `GET|HEAD /health` (an empty 200 from the engine, revealing nothing).

Setup writes this file to ~/gptoss-sky/guard/gptoss_guard.py on the node (the text travels inside the
YAML); the run script puts that folder on PYTHONPATH and names the key's environment variable in
GPTOSS_KEY_ENV. vLLM loads it with `--middleware gptoss_guard.Guard`; SGLang (no such flag) is started as
`python -m gptoss_guard sglang.launch_server ...`, which adds it to SGLang's app and then runs SGLang's own
entry point. Standard library only: it runs inside the engine's Python.
"""

from __future__ import annotations

import hmac
import os
import runpy
import sys

OPEN = frozenset({("GET", "/health"), ("HEAD", "/health")})
_BODY = b'{"error": "Unauthorized: send Authorization: Bearer <key>"}'


def _key_from_env() -> str:
    name = os.environ.get("GPTOSS_KEY_ENV", "VLLM_API_KEY")
    key = os.environ.get(name, "")
    if not key:
        raise RuntimeError(f"gptoss_guard: ${name} is empty; refusing to serve without a key")
    return key


class Guard:
    """ASGI middleware: pass a request on only with the key (or to the one open health path)."""

    def __init__(self, app, key: str | None = None):
        self.app = app
        self._key = (key or _key_from_env()).encode()

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
        return False

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        if (kind == "http" and (scope.get("method"), scope.get("path")) in OPEN) or self._authorized(scope):
            return await self.app(scope, receive, send)
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                   (b"content-length", str(len(_BODY)).encode())]
        if kind == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": _BODY})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": _BODY})
        else:  # the server answers a close before accept with 403
            await send({"type": "websocket.close", "code": 1008})


def run_sglang(argv: list[str]) -> None:
    """`python -m gptoss_guard sglang.launch_server ARGS`: SGLang's launcher with the guard on its app."""
    _key_from_env()  # fail before loading a model when the key is missing
    from sglang.srt.entrypoints.http_server import app  # the module-level FastAPI app SGLang serves

    app.add_middleware(Guard)
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_sglang(sys.argv[1:])
