"""Is the `gptoss-sky bench` client the bottleneck? Measure it against a server with known timing.

A raw asyncio HTTP/1.1 server runs in a separate process on 127.0.0.1 (port chosen by the OS). Every
/v1/completions request waits a known TTFT, then streams `max_tokens` SSE chunks at a known interval
(sleeping to absolute deadlines so the schedule does not drift), then usage and `data: [DONE]`. The
server also records when it really wrote each first token, so client overhead can be separated from
server lateness on this shared 2-core machine.

For each concurrency level the gptoss-sky client (launcher.bench.run_level, the code `bench` runs)
sends 2 x concurrency requests after a warm-up wave that opens the pooled connections. Reported:
  achieved concurrency = sum of request latencies / wall time (Little's law)
  TTFT p50 vs the server's true delay, and vs the delay the server actually achieved
  TPOT p50 vs the true interval
The same is measured for a named baseline: a plain `openai.AsyncOpenAI` streaming loop.

Usage (bounded: a few thousand requests, well under 2 minutes; it stops by itself):
    PYTHONPATH=. python benchmarks/bench_client_overhead.py [--levels 1,64,256,512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher import bench as bench_lib  # noqa: E402

# -- the server (child process) -------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.first_token_delay: list[float] = []
        self.active = 0
        self.max_active = 0


async def _serve(ttft_s: float, itl_s: float) -> None:
    stats = _Stats()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.perf_counter()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if path == "/stats":
                    delays = sorted(stats.first_token_delay)
                    doc = {
                        "first_token_delay_ms_p50": 1000 * statistics.median(delays) if delays else None,
                        "max_active": stats.max_active,
                    }
                    payload = json.dumps(doc).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
                    if method == "POST":  # POST /stats reads and resets
                        stats.first_token_delay.clear()
                        stats.max_active = 0
                    await writer.drain()
                    continue
                max_tokens = int(json.loads(body).get("max_tokens", 16))
                stats.active += 1
                stats.max_active = max(stats.max_active, stats.active)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                for i in range(max_tokens):
                    due = received + ttft_s + i * itl_s
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    event = b'data: {"choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n'
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    if i == 0:
                        stats.first_token_delay.append(time.perf_counter() - received)
                tail = (
                    b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d}}\n\ndata: [DONE]\n\n'
                    % max_tokens
                )
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
                stats.active -= 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# -- the clients ----------------------------------------------------------------------------------


async def run_gptoss_client(url: str, concurrency: int, requests: int, output_len: int) -> dict[str, float]:
    async with bench_lib.make_client(url, concurrency, 120.0) as client:
        # Warm-up wave: open the pooled connections so the measurement sees steady state.
        await bench_lib.run_level(client, model="m", concurrency=concurrency, requests=concurrency,
                                  input_len=8, output_len=1, headers={})
        records, wall = await bench_lib.run_level(client, model="m", concurrency=concurrency,
                                                  requests=requests, input_len=8, output_len=output_len, headers={})
    ok = [r for r in records if r.error is None]
    return {
        "errors": len(records) - len(ok),
        "achieved_concurrency": sum(r.latency_s for r in records) / wall,
        "ttft_ms_p50": 1000 * statistics.median(r.ttft_s for r in ok),
        "tpot_ms_p50": 1000 * statistics.median(r.tpot_s for r in ok if r.tpot_s is not None),
        "wall_s": wall,
    }


async def run_openai_client(url: str, concurrency: int, requests: int, output_len: int) -> dict[str, float]:
    """A naive but fair baseline: the openai SDK's AsyncOpenAI, default settings, no retries."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120.0)
    ttfts: list[float] = []
    tpots: list[float] = []
    latencies: list[float] = []
    errors = 0

    async def one(max_tokens: int, record: bool) -> None:
        nonlocal errors
        start = time.perf_counter()
        times: list[float] = []
        try:
            stream = await client.completions.create(
                model="m", prompt="hello " * 8, max_tokens=max_tokens, stream=True,
                extra_body={"ignore_eos": True},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    times.append(time.perf_counter())
        except Exception:  # noqa: BLE001 -- a benchmark script: count and go on
            errors += 1
            return
        if record and times:
            latencies.append(time.perf_counter() - start)
            ttfts.append(times[0] - start)
            if len(times) > 1:
                tpots.append((times[-1] - times[0]) / (len(times) - 1))

    async def wave(count: int, max_tokens: int, record: bool) -> float:
        pending = iter(range(count))

        async def worker() -> None:
            for _ in pending:
                await one(max_tokens, record)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
        return time.perf_counter() - start

    await wave(concurrency, 1, False)
    wall = await wave(requests, output_len, True)
    await client.close()
    return {
        "errors": errors,
        "achieved_concurrency": sum(latencies) / wall,
        "ttft_ms_p50": 1000 * statistics.median(ttfts),
        "tpot_ms_p50": 1000 * statistics.median(tpots),
        "wall_s": wall,
    }


async def run_raw_client(url: str, concurrency: int, requests: int, output_len: int) -> dict[str, float]:
    """A floor, not a usable client: raw asyncio sockets, one connection per worker, no parsing
    beyond finding the first `data:` and `[DONE]`. Shows what one Python process on this machine
    can do, so the HTTP stack's share of the overhead is visible."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    body = json.dumps({"model": "m", "prompt": "hello " * 8, "max_tokens": output_len, "stream": True}).encode()
    head = b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    request = head % len(body) + body
    ttfts: list[float] = []
    latencies: list[float] = []
    pending = iter(range(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in pending:
            start = time.perf_counter()
            writer.write(request)
            first = None
            seen = b""
            while not seen.endswith(b"0\r\n\r\n"):
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("server closed")
                if first is None and b"data:" in data:
                    first = time.perf_counter()
                seen = (seen + data)[-16:]
            ttfts.append((first or start) - start)
            latencies.append(time.perf_counter() - start)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "errors": requests - len(ttfts),
        "achieved_concurrency": sum(latencies) / wall,
        "ttft_ms_p50": 1000 * statistics.median(ttfts),
        "tpot_ms_p50": float("nan"),
        "wall_s": wall,
    }


async def server_stats(url: str) -> dict[str, float]:
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.post("/stats")).json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,64,256,512")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=50.0)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--baseline", choices=["openai", "none"], default="openai")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-socket floor")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.ttft_ms / 1000, args.itl_ms / 1000))
        return

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        print(f"server: 127.0.0.1:{port}, true TTFT {args.ttft_ms:g} ms, true interval {args.itl_ms:g} ms, "
              f"{args.output_len} tokens per request; cpu count {os.cpu_count()}")
        header = ("client", "conc", "achieved", "errors", "TTFT p50", "server TTFT p50", "overhead vs true",
                  "overhead vs server", "TPOT p50", "wall s")
        print(" | ".join(header))
        clients = [("gptoss-sky bench", run_gptoss_client)]
        if args.baseline == "openai":
            clients.append(("openai AsyncOpenAI", run_openai_client))
        if not args.no_raw:
            clients.append(("raw asyncio floor", run_raw_client))
        for level in (int(x) for x in args.levels.split(",")):
            for name, runner in clients:
                asyncio.run(server_stats(url))  # reset
                result = asyncio.run(runner(url, level, 2 * level, args.output_len))
                served = asyncio.run(server_stats(url))["first_token_delay_ms_p50"]
                print(" | ".join([
                    name, str(level), f"{result['achieved_concurrency']:.1f}", str(result["errors"]),
                    f"{result['ttft_ms_p50']:.2f} ms", f"{served:.2f} ms",
                    f"{result['ttft_ms_p50'] - args.ttft_ms:+.2f} ms", f"{result['ttft_ms_p50'] - served:+.2f} ms",
                    f"{result['tpot_ms_p50']:.2f} ms", f"{result['wall_s']:.1f}",
                ]), flush=True)
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
