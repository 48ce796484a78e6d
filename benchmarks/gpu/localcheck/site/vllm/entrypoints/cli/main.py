"""A fake `vllm` CLI for checking node_proof.py on a machine without a GPU (not vLLM; see localcheck.sh).

`serve`: prints vLLM-like start-up lines (a second start finds its compile cache under the vLLM cache root
and says so), then serves /health, /v1/models, streaming /v1/completions and /metrics on --port; like
vLLM 0.26, only /v1 needs the key. `bench serve`: writes a result JSON with the fields node_proof reads.
"""

import json
import os
import sys
import time
from pathlib import Path


def _opt(argv, name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


def say(message):
    print(time.strftime("INFO %m-%d %H:%M:%S [fake.py:1] ") + message, flush=True)


def serve(argv):
    port = int(_opt(argv, "--port", "8000"))
    host = _opt(argv, "--host", "127.0.0.1")
    names = []
    if "--served-model-name" in argv:
        for tok in argv[argv.index("--served-model-name") + 1:]:
            if tok.startswith("-"):
                break
            names.append(tok)
    names = names or [argv[0]]
    cache = Path(os.environ.get("VLLM_CACHE_ROOT") or Path.home() / ".cache" / "vllm") / "torch_compile_cache"
    say("vLLM API server version 0.26.0+fake")
    say(f"non-default args: {argv}")
    time.sleep(0.3)
    say("Starting to load model " + argv[0])
    time.sleep(0.3)
    say("Model loading took 13.03 GiB memory and 0.30 seconds")
    if (cache / "done").exists():
        say("Directly load the compiled graph(s) for dynamic shape from the cache, took 0.2 s")
    else:
        say("Dynamo bytecode transform time: 0.5 s")
        time.sleep(1.0)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "done").write_text("x")
        say("torch.compile takes 1.5 s in total")
    # KV lines as vLLM prints them, one per tensor-parallel worker. The numbers are the fake's own (fixed), not
    # vLLM's: they exercise the driver's parsing and the capacity comparison, and prove nothing about vLLM.
    tp = int(_opt(argv, "--tensor-parallel-size", "1"))
    max_len = int(_opt(argv, "--max-model-len", "131072"))
    backend = os.environ.get("VLLM_FLASHINFER_ALLREDUCE_BACKEND")
    if tp > 1:
        say(f"fake: tensor parallel {tp}, all-reduce backend {backend or 'auto'}")
    for rank in range(tp):
        prefix = f"(Worker_TP{rank} pid={1000 + rank}) " if tp > 1 else ""
        say(prefix + "Available KV cache memory: 93.55 GiB")
    say("GPU KV cache size: 4,328,544 tokens")
    say(f"Maximum concurrency for {max_len:,} tokens per request: 33.02x")
    say("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%")
    time.sleep(0.5)
    say("Graph capturing finished in 1 secs, took 1.35 GiB")
    say("init engine (profile, create kv cache, warmup model) took 2.0 seconds")

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    key = os.environ.get("VLLM_API_KEY")
    state = {"gen": 0, "running": 0}

    def denied(request):
        if key and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def health(request):
        return PlainTextResponse("")

    async def models(request):
        return denied(request) or JSONResponse({"object": "list", "data": [{"id": n, "object": "model"} for n in names]})

    async def completions(request):
        if (d := denied(request)) is not None:
            return d
        body = await request.json()
        n = int(body.get("max_tokens", 16))

        async def gen():
            import asyncio
            state["running"] += 1
            try:
                for i in range(0, n, 64):
                    k = min(64, n - i)
                    state["gen"] += k
                    chunk = {"choices": [{"index": 0, "text": " x" * k, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    await asyncio.sleep(float(os.environ.get("FAKE_VLLM_CHUNK_DELAY", "0.005")))
                usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}}
                yield f"data: {json.dumps(usage)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            finally:
                state["running"] -= 1

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def metrics(request):
        text = ("# HELP vllm:generation_tokens_total x\n# TYPE vllm:generation_tokens_total counter\n"
                f'vllm:generation_tokens_total{{model_name="{names[0]}"}} {state["gen"]}.0\n'
                f'vllm:num_requests_running{{model_name="{names[0]}"}} {state["running"]}.0\n'
                f'vllm:num_requests_waiting{{model_name="{names[0]}"}} 0.0\n'
                f'vllm:kv_cache_usage_perc{{model_name="{names[0]}"}} {state["running"] / 100}\n')
        return PlainTextResponse(text)

    async def openapi(request):
        return JSONResponse({"paths": {"/v1/models": {"get": {}}, "/tokenize": {"post": {}},
                                       "/invocations": {"post": {}}, "/metrics": {"get": {}}}})

    async def tokenize(request):
        return JSONResponse({"tokens": [1, 2]})

    app = Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                            Route("/v1/completions", completions, methods=["POST"]), Route("/metrics", metrics),
                            Route("/openapi.json", openapi), Route("/tokenize", tokenize, methods=["POST"]),
                            Route("/invocations", tokenize, methods=["POST"])])
    say("Application startup complete.")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def bench(argv):
    out = Path(_opt(argv, "--result-dir", ".")) / _opt(argv, "--result-filename", "bench.json")
    n = int(_opt(argv, "--num-prompts", "4"))
    out.write_text(json.dumps({"completed": n, "duration": 1.0, "output_throughput": 123.0,
                               "median_ttft_ms": 5.0, "median_tpot_ms": 1.0}))
    print("fake bench done")


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        serve(argv[1:])
    elif argv[:2] == ["bench", "serve"]:
        bench(argv[2:])
    elif argv[:1] == ["--version"]:
        print("0.26.0+fake")
    else:
        sys.exit(f"fake vllm: unsupported {argv}")


if __name__ == "__main__":
    main()
