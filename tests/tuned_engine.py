"""A fake engine whose latency follows its engine flags, for the tune tests (on 127.0.0.1, port 0).

Its latency model (all times in ms, `batch` = requests in flight now):
  TTFT = PREFILL_MS, plus QUEUE_MS when more requests are in flight than --max-num-seqs when the first token
         is due (vLLM makes them wait for a slot)
  TPOT = FAST_TPOT_MS while batch <= --max-cudagraph-capture-size (the decode batch runs as a captured CUDA
         graph), SLOW_TPOT_MS beyond it (eager)
  --stream-interval N sends N tokens per chunk.
The steps are wide (4x for TPOT, 11x for TTFT), so a level's side of an SLO between them does not depend
on how loaded the test machine is. `expected(c)` is the model's own answer for closed-loop concurrency c,
for tests to check the search against; `fail` makes every completion answer 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "openai/gpt-oss-20b"
PREFILL_MS = 40.0
QUEUE_MS = 400.0
FAST_TPOT_MS = 5.0
SLOW_TPOT_MS = 20.0


@dataclass(frozen=True)
class LatencyModel:
    max_num_seqs: int = 1024
    capture_size: int = 512
    stream_interval: int = 1

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LatencyModel:
        return cls(int(options.get("max_num_seqs", 1024)), int(options.get("max_cudagraph_capture_size", 512)),
                   int(options.get("stream_interval", 1)))

    def ttft_ms(self, batch: int) -> float:
        return PREFILL_MS + (QUEUE_MS if batch > self.max_num_seqs else 0.0)

    def tpot_ms(self, batch: int) -> float:
        return FAST_TPOT_MS if batch <= self.capture_size else SLOW_TPOT_MS

    def expected(self, concurrency: int) -> tuple[float, float]:
        """(TTFT p90, TPOT p50) at closed-loop concurrency c: every request sees c in flight."""
        return self.ttft_ms(concurrency), self.tpot_ms(concurrency)


class TunedEngine(LoopbackServer):
    """Streaming /v1/completions and /v1/models, latency from `model`; `in_flight` counts open requests."""

    def __init__(self, model: LatencyModel, fail: bool = False) -> None:
        self.model, self.fail, self.in_flight, self.requests = model, fail, 0, 0
        app = Starlette(routes=[Route("/v1/completions", self._completions, methods=["POST"]),
                                Route("/v1/models", self._models), Route("/health", self._health)])
        super().__init__(app, backlog=2048)

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": 131072}]})

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests += 1
        if self.fail:
            return JSONResponse({"error": {"message": "CUDA out of memory", "code": 500}}, 500)
        tokens = int(body.get("max_tokens") or 16)
        model = self.model

        async def stream():
            self.in_flight += 1
            try:
                await asyncio.sleep(PREFILL_MS / 1000)  # the wave's requests have all arrived by now
                if self.in_flight > model.max_num_seqs:
                    await asyncio.sleep(QUEUE_MS / 1000)
                sent = 0
                while sent < tokens:
                    n = min(model.stream_interval, tokens - sent)
                    if sent:
                        await asyncio.sleep(n * model.tpot_ms(self.in_flight) / 1000)
                    sent += n
                    yield _sse({"choices": [{"index": 0, "text": " tok" * n}]})
                yield _sse({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": tokens}})
                yield b"data: [DONE]\n\n"
            finally:
                self.in_flight -= 1

        return StreamingResponse(stream(), media_type="text/event-stream")


def _sse(document: Any) -> bytes:
    return f"data: {json.dumps(document)}\n\n".encode()
