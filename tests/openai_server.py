"""A fake vLLM OpenAI server for tests, with switchable faults, served by uvicorn on 127.0.0.1:0.

It speaks like `vllm serve` for gpt-oss: SSE framing `data: {...}\\n\\n` ending in `data: [DONE]`,
`usage`, the chain of thought in `reasoning`, parsed `tool_calls`, 401 with `{"error": "Unauthorized"}`
on /v1 paths without the key, `/v1/responses`, and streaming `/v1/completions` with a known time to
first token and inter-token interval. `FakeConfig.faults` names misbehaviours (see FAULTS).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-test-SECRET-4f9a2c"
MODEL = "openai/gpt-oss-20b"

FAULTS = {
    "no_auth",  # /v1 paths answer without the key
    "raw_tool_json",  # the tool call is left as JSON text in `content`
    "no_reasoning",  # no `reasoning` field anywhere
    "old_reasoning_field",  # `reasoning_content` instead of `reasoning` (vLLM < 0.17)
    "truncated_stream",  # chat and completions streams stop before `data: [DONE]`
    "abort_stream",  # the connection is dropped mid-stream
    "wrong_model",  # /v1/models lists another model
    "loading",  # /health answers 503 forever
    "non_json_models",  # /v1/models answers an HTML page
    "hang_chat",  # chat completions never answer in time
    "reject_high_effort",  # reasoning_effort=high answered 400
    "bad_tool_args",  # tool call arguments miss the required key
    "completions_500_half",  # every second /v1/completions request answers 500
    "no_responses",  # /v1/responses is 404
}


@dataclass
class FakeConfig:
    faults: set[str] = field(default_factory=set)
    loading_503s: int = 0  # /health answers 503 this many times, then 200
    ttft_s: float = 0.0  # /v1/completions: delay before the first token
    itl_s: float = 0.0  # /v1/completions: delay between tokens
    completions_seen: int = 0
    flavor: str = "vllm"  # "sglang": SGLang's OpenAI server (reasoning_content, owned_by sglang)

    def reset(self) -> None:
        self.flavor = "vllm"
        self.faults = set()
        self.loading_503s = 0
        self.ttft_s = 0.0
        self.itl_s = 0.0
        self.completions_seen = 0


def _sse(document: Any) -> bytes:
    return f"data: {json.dumps(document)}\n\n".encode()


def build_app(config: FakeConfig) -> Starlette:
    def unauthorized(request: Request) -> Response | None:
        if "no_auth" in config.faults:
            return None
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def health(request: Request) -> Response:
        if "loading" in config.faults:
            return PlainTextResponse("", status_code=503)
        if config.loading_503s > 0:
            config.loading_503s -= 1
            return PlainTextResponse("", status_code=503)
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        if "non_json_models" in config.faults:
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        model_id = "some/other-model" if "wrong_model" in config.faults else MODEL
        return JSONResponse({"object": "list", "data": [{"id": model_id, "object": "model",
                                                          "owned_by": config.flavor}]})

    def reasoning_fields(text: str) -> dict[str, str]:
        if "no_reasoning" in config.faults:
            return {}
        if "old_reasoning_field" in config.faults or config.flavor == "sglang":
            return {"reasoning_content": text}
        return {"reasoning": text}

    async def chat(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        body = await request.json()
        if "hang_chat" in config.faults:
            await asyncio.sleep(3)
        if body.get("model") != MODEL:
            return JSONResponse(
                {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": 404}},
                status_code=404,
            )
        effort = body.get("reasoning_effort", "medium")
        if effort == "high" and "reject_high_effort" in config.faults:
            return JSONResponse({"error": {"message": "bad reasoning_effort", "code": 400}}, 400)
        reasoning = "The user asks a question. " * (8 if effort == "high" else 2)
        usage = {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}
        if body.get("stream"):
            return StreamingResponse(chat_stream(body, reasoning), media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": "12", **reasoning_fields(reasoning)}
        finish = "stop"
        if body.get("tools"):
            arguments = {} if "bad_tool_args" in config.faults else {"city": "Paris"}
            call = {"name": "get_weather", "arguments": json.dumps(arguments)}
            if "raw_tool_json" in config.faults:
                message["content"] = json.dumps(call)
            else:
                message["content"] = None
                message["tool_calls"] = [{"id": "call_1", "type": "function", "function": call}]
                finish = "tool_calls"
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
        )

    async def chat_stream(body: dict[str, Any], reasoning: str) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "model": MODEL}
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for word in reasoning.split()[:4]:
            delta = reasoning_fields(word + " ")
            if delta:
                yield _sse({**base, "choices": [{"index": 0, "delta": delta}]})
        for i in range(1, 21):
            if i == 5 and "truncated_stream" in config.faults:
                return
            if i == 5 and "abort_stream" in config.faults:
                raise RuntimeError("fake server drops the connection")
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": f"{i} "}}]})
            await asyncio.sleep(0.001)
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 20, "completion_tokens": 24, "total_tokens": 44}
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    async def responses(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        if "no_responses" in config.faults:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        await request.json()
        output = [
            {"type": "reasoning", "id": "rs_1", "content": [{"type": "reasoning_text", "text": "Greet."}]},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello there!", "annotations": []}],
            },
        ]
        return JSONResponse(
            {"id": "resp_1", "object": "response", "model": MODEL, "status": "completed", "output": output}
        )

    async def completions(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        body = await request.json()
        config.completions_seen += 1
        if "completions_500_half" in config.faults and config.completions_seen % 2 == 0:
            return JSONResponse({"error": {"message": "internal error", "code": 500}}, 500)
        max_tokens = int(body.get("max_tokens") or 16)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def tokens() -> AsyncIterator[bytes]:
            start = time.perf_counter()
            base = {"id": "cmpl-1", "object": "text_completion", "model": MODEL}
            for i in range(max_tokens):
                # Sleep to absolute deadlines so the schedule does not drift with load.
                due = start + config.ttft_s + i * config.itl_s
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                if i == max_tokens // 2 and "truncated_stream" in config.faults:
                    return
                if i == max_tokens // 2 and "abort_stream" in config.faults:
                    raise RuntimeError("fake server drops the connection")
                yield _sse({**base, "choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]})
            yield _sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
            if include_usage:
                usage = {"prompt_tokens": 10, "completion_tokens": max_tokens, "total_tokens": 10 + max_tokens}
                yield _sse({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ]
    )


class FakeServer:
    """uvicorn on a thread, bound to a socket on 127.0.0.1 port 0 (the OS picks a free port)."""

    def __init__(self) -> None:
        self.config = FakeConfig()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        uv_config = uvicorn.Config(
            build_app(self.config),
            lifespan="off",
            log_level="critical",
            timeout_graceful_shutdown=1,
            ws="none",
            backlog=2048,
        )
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def serve() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def unused_url() -> str:
    """A loopback URL where nothing listens: bind port 0, read the port, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
