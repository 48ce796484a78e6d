"""Is the `gptoss-sky bench` client the bottleneck? Measure it against a server with known timing.

Server: a raw-socket asyncio HTTP/1.1 server in a separate process on 127.0.0.1 (port chosen by the
OS). Every /v1/completions request gets its response head at once, then, timed with `loop.call_at`
against absolute deadlines from the kernel's receive timestamp of the request (SO_TIMESTAMPNS; so a
burst of requests queued in the server's loop does not make their tokens late), `max_tokens` SSE
chunks: the first at the true TTFT, the others at the true interval; then usage and `data: [DONE]`,
in chunked transfer encoding like uvicorn/vLLM. It records when it really wrote each first token
("server TTFT") and samples its number of open streams every 10 ms.

Clients, each running the same closed loop (N workers, each sends its next request when the previous
ends), after a warm-up wave that opens the connections:
  raw (gptoss-sky default)   launcher.verify.bench.run_level with launcher.verify.rawstream (kernel RX timestamps)
  raw (read-time stamps)      the same with perf_counter() taken in the read callback instead
  httpx (named baseline)     launcher.verify.bench.run_level with the httpx client (`--client httpx`)
  openai AsyncOpenAI         a plain streaming loop over the openai SDK, max_retries=0

Two arrival patterns per level:
  steady  worker i starts at i x R / N (R = one request's duration) and runs 3 requests (6 at
          concurrency 1): arrivals
          spread over time as in a long closed-loop run whose outputs do not all end together;
  burst   all N start together, 2 waves (6 at concurrency 1): every first token of a wave is due in the same ms (the
          pattern of the earlier measurement; a stress test of the client, not a steady state).
Reported per level: streams the server saw open (mean over the middle of the run, and peak), TTFT p50
minus the true TTFT, TTFT p50 minus the server's own first-token delay, TPOT p50 vs the true interval.

Pinning (default when there are >= 2 CPUs): server on the last CPU, client on CPU 0, so that neither
steals the other's core; --no-pin lets the OS place them.

Usage (bounded: ~3 k requests of 16 tokens, about 2 minutes; it stops by itself):
    PYTHONPATH=. python benchmarks/bench_client_overhead.py [--levels 1,64,256,512] [--modes steady,burst]
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.verify import bench as bench_lib  # noqa: E402
from launcher.verify import rawstream  # noqa: E402

# -- the server (child process) -------------------------------------------------------------------

TOKEN_EVENT = (b'data: {"id":"cmpl-1","object":"text_completion",'
               b'"choices":[{"index":0,"text":" tok","finish_reason":null}]}\n\n')
TOKEN_CHUNK = b"%x\r\n%s\r\n" % (len(TOKEN_EVENT), TOKEN_EVENT)


class _ServerState:
    def __init__(self) -> None:
        self.first_token_delay: list[float] = []
        self.active = 0
        self.max_active = 0
        self.samples: list[int] = []


def _serve(ttft_s: float, itl_s: float, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    state = _ServerState()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    import socket
    import struct

    timespec = struct.Struct("@qq")
    cmsg_space = socket.CMSG_SPACE(16)
    so_timestampns = getattr(socket, "SO_TIMESTAMPNS", 35)

    class Conn:
        """One accepted connection on raw non-blocking sockets. A request's clock starts at the
        kernel's receive timestamp of its bytes (SO_TIMESTAMPNS), so the server's own queueing
        behind other sockets does not make it late: TTFT is the true delay from arrival."""

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.buf = b""
            self.out = b""
            self.open = True
            self.kernel = True
            try:
                sock.setsockopt(socket.SOL_SOCKET, so_timestampns, 1)
            except OSError:
                self.kernel = False
            loop.add_reader(sock.fileno(), self.readable)

        def readable(self) -> None:
            now = time.perf_counter()
            try:
                if self.kernel:
                    wall = time.time()
                    data, ancillary, _, _ = self.sock.recvmsg(65536, cmsg_space)
                    for _lvl, _kind, raw in ancillary:
                        sec, nsec = timespec.unpack_from(raw)
                        arrival = now - (wall - (sec + nsec * 1e-9))
                        if now - 1.0 < arrival <= now:
                            now = arrival
                else:
                    data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.data_received(data, now)

        def close(self) -> None:
            if self.open:
                self.open = False
                loop.remove_reader(self.sock.fileno())
                if self.out:
                    loop.remove_writer(self.sock.fileno())
                self.sock.close()

        def write(self, data: bytes) -> None:
            if not self.open:
                return
            if self.out:
                self.out += data
                return
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent < len(data):
                self.out = data[sent:]
                loop.add_writer(self.sock.fileno(), self.writable)

        def writable(self) -> None:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            self.out = self.out[sent:]
            if not self.out:
                loop.remove_writer(self.sock.fileno())

        def data_received(self, data: bytes, received: float) -> None:
            self.buf += data
            while True:
                k = self.buf.find(b"\r\n\r\n")
                if k < 0:
                    return
                head = self.buf[:k].decode("latin-1")
                lines = head.split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(self.buf) < k + 4 + length:
                    return
                body = self.buf[k + 4 : k + 4 + length]
                self.buf = self.buf[k + 4 + length :]
                self.handle(method, path, body, received)

        def handle(self, method: str, path: str, body: bytes, received: float) -> None:
            if path == "/stats":
                delays = state.first_token_delay
                doc = {
                    "first_token_delay_ms_p50": 1000 * statistics.median(delays) if delays else None,
                    "max_active": state.max_active,
                    "samples": state.samples,
                }
                payload = json.dumps(doc).encode()
                self.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                if method == "POST":  # POST /stats reads and resets
                    state.first_token_delay = []
                    state.max_active = 0
                    state.samples = []
                return
            max_tokens = int(json.loads(body).get("max_tokens", 16))
            state.active += 1
            state.max_active = max(state.max_active, state.active)
            self.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            loop.call_at(received + ttft_s, self.token, received, 0, max_tokens)

        def token(self, received: float, i: int, max_tokens: int) -> None:
            if not self.open:
                state.active -= 1
                return
            self.write(TOKEN_CHUNK)
            if i == 0:
                state.first_token_delay.append(time.perf_counter() - received)
            if i + 1 < max_tokens:
                loop.call_at(received + ttft_s + (i + 1) * itl_s, self.token, received, i + 1, max_tokens)
                return
            tail = (
                b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":%d}}\n\ndata: [DONE]\n\n'
                % max_tokens
            )
            self.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
            state.active -= 1

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Conn(sock)

    def sample() -> None:
        if state.active:
            state.samples.append(state.active)
        loop.call_later(0.01, sample)

    loop.add_reader(listener.fileno(), accept)
    print(listener.getsockname()[1], flush=True)
    loop.call_soon(sample)
    loop.run_forever()


# -- the clients ----------------------------------------------------------------------------------

Result = dict[str, Any]


def _summary(ttfts: list[float], tpots: list[float], errors: int, wall: float) -> Result:
    return {
        "errors": errors,
        "ttft_ms_p50": 1000 * statistics.median(ttfts) if ttfts else float("nan"),
        "tpot_ms_p50": 1000 * statistics.median(tpots) if tpots else float("nan"),
        "wall_s": wall,
    }


async def _run_bench_client(client: Any, n: int, per_worker: int, output_len: int, ramp_s: float) -> Result:
    async with client:
        await bench_lib.run_level(client, model="m", concurrency=n, requests=n, input_len=8, output_len=1, headers={})
        records, wall = await bench_lib.run_level(
            client, model="m", concurrency=n, requests=per_worker * n, input_len=8, output_len=output_len,
            headers={}, ramp_s=ramp_s,
        )
    ok = [r for r in records if r.error is None]
    return _summary([r.ttft_s for r in ok if r.ttft_s is not None],
                    [t for r in ok if (t := r.tpot_s) is not None], len(records) - len(ok), wall)


def raw_client(kernel_timestamps: bool) -> Callable[..., Awaitable[Result]]:
    async def run(url: str, n: int, per_worker: int, output_len: int, ramp_s: float) -> Result:
        client = rawstream.RawClient(url, 120.0, kernel_timestamps=kernel_timestamps)
        return await _run_bench_client(client, n, per_worker, output_len, ramp_s)

    return run


async def httpx_client(url: str, n: int, per_worker: int, output_len: int, ramp_s: float) -> Result:
    return await _run_bench_client(bench_lib.make_client(url, n, 120.0), n, per_worker, output_len, ramp_s)


async def openai_client(url: str, n: int, per_worker: int, output_len: int, ramp_s: float) -> Result:
    """A naive but fair baseline: the openai SDK's AsyncOpenAI, default settings, no retries."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120.0)
    ttfts: list[float] = []
    tpots: list[float] = []
    errors = 0

    async def one(max_tokens: int, record: bool) -> None:
        nonlocal errors
        start = time.perf_counter()
        times: list[float] = []
        try:
            stream = await client.completions.create(
                model="m", prompt="hello " * 8, max_tokens=max_tokens, stream=True, extra_body={"ignore_eos": True},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    times.append(time.perf_counter())
        except Exception:  # noqa: BLE001 -- a benchmark script: count and go on
            errors += 1
            return
        if record and times:
            ttfts.append(times[0] - start)
            if len(times) > 1:
                tpots.append((times[-1] - times[0]) / (len(times) - 1))

    async def wave(count: int, max_tokens: int, record: bool, ramp: float) -> float:
        pending = iter(range(count))

        async def worker(index: int) -> None:
            if ramp > 0 and index:
                await asyncio.sleep(index * ramp / n)
            for _ in pending:
                await one(max_tokens, record)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(min(n, count))))
        return time.perf_counter() - start

    await wave(n, 1, False, 0.0)
    wall = await wave(per_worker * n, output_len, True, ramp_s)
    await client.close()
    return _summary(ttfts, tpots, errors, wall)


async def vllm_bench_client(url: str, n: int, per_worker: int, output_len: int, ramp_s: float) -> Result:
    """`vllm bench serve`'s own request function and session (vllm/benchmarks/lib/endpoint_request_func.py,
    the connector of vllm/benchmarks/serve.py), run with an interpreter that has vLLM (its CPU install will
    do); its TTFT is the first chunk with `choices`, its TPOT (latency - TTFT) / (tokens - 1), as it reports them."""
    import aiohttp
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions

    connector = aiohttp.TCPConnector(limit=n, limit_per_host=n, ttl_dns_cache=300, use_dns_cache=True,
                                     keepalive_timeout=60, enable_cleanup_closed=True, force_close=False)
    ttfts: list[float] = []
    tpots: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, trust_env=True,
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one(max_tokens: int, record: bool) -> None:
            nonlocal errors
            out = await async_request_openai_completions(
                RequestFuncInput(prompt="hello " * 8, api_url=url + "/v1/completions", prompt_len=8,
                                 output_len=max_tokens, model="m", ignore_eos=True), session)
            if not out.success:
                errors += 1
            elif record:
                ttfts.append(out.ttft)
                if out.output_tokens and out.output_tokens > 1:
                    tpots.append((out.latency - out.ttft) / (out.output_tokens - 1))

        async def wave(count: int, max_tokens: int, record: bool, ramp: float) -> float:
            pending = iter(range(count))

            async def worker(index: int) -> None:
                if ramp > 0 and index:
                    await asyncio.sleep(index * ramp / n)
                for _ in pending:
                    await one(max_tokens, record)

            start = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(min(n, count))))
            return time.perf_counter() - start

        await wave(n, 1, False, 0.0)
        wall = await wave(per_worker * n, output_len, True, ramp_s)
    return _summary(ttfts, tpots, errors, wall)


CLIENTS: dict[str, Callable[..., Awaitable[Result]]] = {
    "raw (gptoss-sky default)": raw_client(True),
    "raw (read-time stamps)": raw_client(False),
    "httpx (baseline)": httpx_client,
    "openai AsyncOpenAI": openai_client,
    "vllm bench serve (aiohttp)": vllm_bench_client,
}


async def server_stats(url: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.post("/stats")).json()


def _streams(samples: list[int]) -> tuple[float, int]:
    """Mean open streams over the middle half of the sampled run, and the peak."""
    if not samples:
        return 0.0, 0
    middle = samples[len(samples) // 4 : max(len(samples) // 4 + 1, 3 * len(samples) // 4)]
    return statistics.fmean(middle), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,64,256,512")
    parser.add_argument("--modes", default="steady,burst")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated names from the table")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=50.0)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--no-pin", action="store_true", help="let the OS place server and client")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.ttft_ms / 1000, args.itl_ms / 1000, args.cpu)
        return

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2
    command = [sys.executable, __file__, "--serve", "--ttft-ms", str(args.ttft_ms), "--itl-ms", str(args.itl_ms)]
    if pin:
        command += ["--cpu", str(cpus[-1])]
        os.sched_setaffinity(0, {cpus[0]})
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        duration = (args.ttft_ms + (args.output_len - 1) * args.itl_ms) / 1000
        placement = f"server pinned to CPU {cpus[-1]}, client to CPU {cpus[0]}" if pin else "not pinned"
        print(f"server: 127.0.0.1:{port}, true TTFT {args.ttft_ms:g} ms, true interval {args.itl_ms:g} ms, "
              f"{args.output_len} tokens per request ({duration:.2f} s); cpu count {os.cpu_count()}; {placement}")
        print("mode | client | conc | streams open (mean/peak) | errors | TTFT p50 | server TTFT p50 | "
              "overhead vs true | overhead vs server | TPOT p50 | wall s")
        chosen = [name.strip() for name in args.clients.split(",")]
        for mode in args.modes.split(","):
            per_worker, ramp = (3, duration) if mode == "steady" else (2, 0.0)
            for level in (int(x) for x in args.levels.split(",")):
                rounds = max(per_worker, 6) if level == 1 else per_worker  # a median of more than 2 or 3
                for name in chosen:
                    asyncio.run(server_stats(url))  # reset
                    result = asyncio.run(CLIENTS[name](url, level, rounds, args.output_len, ramp))
                    stats = asyncio.run(server_stats(url))
                    served = stats["first_token_delay_ms_p50"] or float("nan")
                    mean_open, peak = _streams(stats["samples"])
                    print(" | ".join([
                        mode, name, str(level), f"{mean_open:.0f}/{peak}", str(result["errors"]),
                        f"{result['ttft_ms_p50']:.2f} ms", f"{served:.2f} ms",
                        f"{result['ttft_ms_p50'] - args.ttft_ms:+.2f} ms", f"{result['ttft_ms_p50'] - served:+.2f} ms",
                        f"{result['tpot_ms_p50']:.2f} ms", f"{result['wall_s']:.1f}",
                    ]), flush=True)
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
