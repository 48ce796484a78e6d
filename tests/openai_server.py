"""A fake vLLM OpenAI server for tests, with switchable faults, served by uvicorn on 127.0.0.1:0.

It speaks like `vllm serve` for gpt-oss behind the node's key guard: SSE framing `data: {...}\\n\\n`
ending in `data: [DONE]`, `usage`, the chain of thought in `reasoning` (longer at higher
`reasoning_effort`), chat streams whose chunks are spaced in time like a decoding GPU, parsed
`tool_calls`, `/v1/responses`, `/invocations`, `/tokenize`, `/metrics`, and streaming
`/v1/completions` with a known time to first token and inter-token interval. Like the guard gptoss-sky
puts on the public port, every path except `/health` answers 401 `{"error": "Unauthorized"}` without
the key, whether a route exists there or not. `FakeConfig.faults` names misbehaviours (see FAULTS);
`auth_open:/PATH` lets one path through without the key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-test-SECRET-4f9a2c"
MODEL = "openai/gpt-oss-20b"

FAULTS = {
    "no_auth",  # no guard: every path answers without the key
    "vllm_api_key_only",  # only vLLM's own --api-key: /v1, /v2, /inference, /cohere guarded
    "sglang_api_key_only",  # only SGLang's own --api-key: /health*, /ready*, /metrics* open
    # "auth_open:/PATH": that one path answers without the key
    "effort_ignored",  # reasoning_effort makes no difference to the reasoning
    "no_reasoning_for_high",  # reasoning_effort=high answers with no reasoning at all
    "stream_all_at_once",  # the chat stream is generated, then written in one piece at the end
    "stream_burst_at_end",  # the chat stream's chunks are held back, then sent back to back
    "stream_one_chunk",  # the whole answer in one SSE event
    "raw_tool_json",  # the tool call is left as JSON text in `content`
    "no_reasoning",  # no `reasoning` field anywhere
    "old_reasoning_field",  # `reasoning_content` instead of `reasoning` (vLLM < 0.17)
    "truncated_stream",  # chat and completions streams stop before `data: [DONE]`
    "abort_stream",  # the connection is dropped mid-stream
    "wrong_model",  # /v1/models lists another model
    "loading",  # /health answers 503 forever
    "non_json_models",  # /v1/models answers an HTML page
    "no_models",  # /v1/models answers an empty list
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
    max_model_len: int | None = None  # listed by /v1/models when set (vLLM lists it; None: not listed)
    ttft_s: float = 0.0  # /v1/completions: delay before the first token
    itl_s: float = 0.0  # /v1/completions: delay between tokens
    completions_seen: int = 0
    prompts_seen: list[str] = field(default_factory=list)  # /v1/completions prompts, in arrival order
    flavor: str = "vllm"  # "sglang": SGLang's OpenAI server (reasoning_content, owned_by sglang)
    chat_itl_s: float = 0.01  # chat streams: delay between chunks (one chunk = CHAT_CHUNK_TOKENS tokens)
    unauthenticated: list[str] = field(default_factory=list)  # "METHOD /path" that got past the guard

    def reset(self) -> None:
        self.flavor = "vllm"
        self.chat_itl_s = 0.01
        self.unauthenticated = []
        self.faults = set()
        self.loading_503s = 0
        self.ttft_s = 0.0
        self.itl_s = 0.0
        self.completions_seen = 0
        self.prompts_seen = []
        self.max_model_len = None


CHAT_CHUNK_TOKENS = 5  # like vLLM's --stream-interval 5: each streamed chunk stands for 5 tokens
HEALTH_PATH = "/health"
VLLM_GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")  # vllm/entrypoints/serve/middleware/authenticate.py
SGLANG_OPEN_PREFIX = ("/health", "/ready", "/metrics")  # sglang/srt/utils/auth.py decide_request_auth


def _missing(body: Any, field_name: str) -> Response | None:
    """vLLM's answer to a body without a required field (its validation handler answers 400)."""
    if isinstance(body, dict) and field_name in body:
        return None
    return JSONResponse({"error": {"message": f"Field required: {field_name}", "code": 400}}, 400)


def _sse(document: Any) -> bytes:
    return f"data: {json.dumps(document)}\n\n".encode()


def _open_without_key(config: FakeConfig, path: str) -> bool:
    """Whether the guard lets `path` through without the key under the current faults."""
    if path == HEALTH_PATH or "no_auth" in config.faults or f"auth_open:{path}" in config.faults:
        return True
    if "vllm_api_key_only" in config.faults:
        return not path.startswith(VLLM_GUARDED_PREFIX)
    if "sglang_api_key_only" in config.faults:
        return path.startswith(SGLANG_OPEN_PREFIX)
    return False


def guard(app: Starlette, config: FakeConfig) -> Any:
    """The key guard in front of every route (pure ASGI, before routing, any method)."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            if request.headers.get("authorization") != f"Bearer {API_KEY}":
                if not _open_without_key(config, scope["path"]):
                    await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                    return
                if scope["path"] != HEALTH_PATH:
                    config.unauthenticated.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    return guarded


def build_app(config: FakeConfig) -> Any:
    async def health(request: Request) -> Response:
        if "loading" in config.faults:
            return PlainTextResponse("", status_code=503)
        if config.loading_503s > 0:
            config.loading_503s -= 1
            return PlainTextResponse("", status_code=503)
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        if "non_json_models" in config.faults:
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        model_id = "some/other-model" if "wrong_model" in config.faults else MODEL
        card: dict[str, Any] = {"id": model_id, "object": "model", "owned_by": config.flavor}
        if config.max_model_len is not None:
            card["max_model_len"] = config.max_model_len  # as vLLM lists it
        return JSONResponse({"object": "list", "data": [] if "no_models" in config.faults else [card]})

    def reasoning_fields(text: str) -> dict[str, str]:
        if "no_reasoning" in config.faults:
            return {}
        if "old_reasoning_field" in config.faults or config.flavor == "sglang":
            return {"reasoning_content": text}
        return {"reasoning": text}

    async def chat(request: Request) -> Response:
        body = await request.json()
        if (invalid := _missing(body, "messages")) is not None:
            return invalid
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
        if "effort_ignored" in config.faults:
            effort = "medium"
        # Longer questions get longer thoughts; higher effort several times more (as gpt-oss does).
        repeats = {"low": 2, "medium": 4, "high": 12}.get(effort, 4) + len(_last_user_text(body)) // 40
        reasoning = "The user asks a question. " * repeats
        if effort == "high" and "no_reasoning_for_high" in config.faults:
            reasoning = ""
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

    async def chat_events(body: dict[str, Any], reasoning: str) -> AsyncIterator[bytes]:
        """The stream as generated: one chunk per `chat_itl_s`, each standing for CHAT_CHUNK_TOKENS."""
        base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "model": MODEL}
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        chunks = 0
        for word in reasoning.split()[:4]:
            delta = reasoning_fields(word + " ")
            if delta:
                await asyncio.sleep(config.chat_itl_s)
                chunks += 1
                yield _sse({**base, "choices": [{"index": 0, "delta": delta}]})
        pieces = [f"{i} " for i in range(1, 21)]
        if "stream_one_chunk" in config.faults:
            pieces = ["".join(pieces)]
        for i, piece in enumerate(pieces, start=1):
            if i == 5 and "truncated_stream" in config.faults:
                return
            if i == 5 and "abort_stream" in config.faults:
                raise RuntimeError("fake server drops the connection")
            await asyncio.sleep(config.chat_itl_s)
            chunks += 1
            yield _sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            tokens = chunks * CHAT_CHUNK_TOKENS
            usage = {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": 20 + tokens}
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    async def chat_stream(body: dict[str, Any], reasoning: str) -> AsyncIterator[bytes]:
        events = chat_events(body, reasoning)
        if "stream_all_at_once" in config.faults:  # a buffering proxy: one write when it is all done
            yield b"".join([event async for event in events])
        elif "stream_burst_at_end" in config.faults:  # held back, then flushed event by event
            for event in [event async for event in events]:
                yield event
        else:
            async for event in events:
                yield event

    async def invocations(request: Request) -> Response:
        """vLLM's SageMaker route: the same handlers, chosen by the body's shape."""
        body = await request.json()
        if isinstance(body, dict) and "messages" in body:
            return await chat(request)
        if isinstance(body, dict) and "prompt" in body:
            return await completions(request)
        return JSONResponse({"error": {"message": "Cannot find suitable handler for request", "code": 400}}, 400)

    async def tokenize(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not ("prompt" in body or "messages" in body):
            return JSONResponse({"error": {"message": "Field required: prompt", "code": 400}}, 400)
        return JSONResponse({"count": 3, "max_model_len": 131072, "tokens": [1, 2, 3]})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse('vllm:num_requests_running{model_name="openai/gpt-oss-20b"} 0.0\n')

    async def responses(request: Request) -> Response:
        if "no_responses" in config.faults:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if (invalid := _missing(await request.json(), "input")) is not None:
            return invalid
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
        body = await request.json()
        if (invalid := _missing(body, "prompt")) is not None:
            return invalid
        config.completions_seen += 1
        config.prompts_seen.append(str(body["prompt"]))
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

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/metrics", metrics),
        ]
    )
    return guard(app, config)


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    return content if isinstance(content, str) else ""


class FakeServer(LoopbackServer):
    """The fake engine on 127.0.0.1 (port 0), with its faults in `config`."""

    def __init__(self) -> None:
        self.config = FakeConfig()
        super().__init__(build_app(self.config), backlog=2048)


def serve() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def unused_url() -> str:
    """A loopback URL where nothing listens: bind port 0, read the port, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
