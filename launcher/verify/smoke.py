"""Smoke checks for a gpt-oss endpoint served by vLLM's OpenAI-compatible server.

Owns: the checks (health, models, chat, streaming, reasoning effort, tool calls, the Responses API,
auth), their pass/fail rules and the `SmokeReport` they produce. health waits for the model to load
and gates the rest; every other check is one function registered with `@_check`, run (and reported) in
the order registered. Uses httpx, launcher.verify.causes (why a request failed) and the engines' route
lists in catalogs/engines/*.yaml (the auth probe); it must not import click, rich or sky, and it never
prints: progress goes through the `on_wait` callback, results come back as data. A failed check is a
`CheckResult(ok=False)`, not an exception; `httpx.HTTPError` and JSON decode errors are caught around
each probe and nowhere else.

The API key is sent as a bearer token and scrubbed from every detail string, so a report can be
printed or dumped as JSON safely.

Usage::

    report = smoke("https://1.2.3.4:8000", api_key, timeout=600)
    if not report.ok:
        for check in report.failed:
            print(check.name, check.detail)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from launcher.plan import catalog
from launcher.verify import causes

DEFAULT_WAIT_TIMEOUT_S = 600.0  # how long to wait for the model to finish loading
DEFAULT_REQUEST_TIMEOUT_S = 120.0  # one probe; reasoning at effort "high" can take a while
POLL_INTERVAL_S = 2.0
AUTH_PROBE_CONCURRENCY = 16  # requests in flight at once while probing every route without the key

# reasoning_effort: the same questions at low and at high; high must reason at least this much more
# in total (real gpt-oss gives several times more; an ignored effort gives about the same).
EFFORT_PROMPTS = (
    "Is 91 a prime number? Answer yes or no.",
    "How many positive divisors does 360 have? Answer with the number only.",
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
    "How much does the ball cost, in cents? Answer with the number only.",
)
EFFORT_MIN_RATIO = 1.5
# stream: text that arrives faster than any GPU decodes one stream was buffered and sent in a burst
# (a gpt-oss single stream decodes at most ~1,000 tokens/s on today's GPUs).
MAX_PLAUSIBLE_TOKENS_PER_S = 5000.0

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
            "required": ["city"],
        },
    },
}


@dataclass(frozen=True)
class CheckResult:
    """One probe's outcome. `detail` says why on failure and what was seen on success."""

    name: str
    ok: bool
    detail: str
    latency_s: float | None
    required: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SmokeReport:
    """Every check in `CHECK_NAMES` order; `ok` is True only when every required check passed."""

    base_url: str
    model: str | None
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.required and not c.ok]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "base_url": self.base_url,
            "model": self.model,
            "failed": [c.name for c in self.failed],
            "checks": [c.to_dict() for c in self.checks],
        }


class _CheckFailed(Exception):
    """Internal: ends one probe with a reason. Never escapes this module."""

    def __init__(self, reason: str, **metrics: Any) -> None:
        super().__init__(reason)
        self.metrics = metrics


def describe_http_error(exc: httpx.HTTPError, timeout_s: float | None = None, url: str = "") -> str:
    """One line for a transport failure: DNS, scheme, refused, TLS, timed out, cut off, ..."""
    if not url:
        try:
            url = str(exc.request.url)
        except RuntimeError:  # raised before a request was built
            url = ""
    return causes.from_exception(exc, url, timeout_s).message


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status_error(response: httpx.Response, has_key: bool = True) -> _CheckFailed:
    try:
        body = response.text
    except (httpx.HTTPError, UnicodeDecodeError):  # body not read (streaming) or undecodable
        body = ""
    if response.status_code in (401, 503) or (
        response.status_code == 404 and response.request.method == "GET"
    ):  # a missing/wrong key, a model still loading, a wrong URL: say so
        path = response.request.url.path
        return _CheckFailed(causes.from_status(response.status_code, path, body, has_key=has_key).message)
    return _CheckFailed(f"HTTP {response.status_code}: {_short(body) or '(empty body)'}")


def _json_body(response: httpx.Response) -> Any:
    if response.status_code != 200:
        raise _status_error(response)
    try:
        return response.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        kind = response.headers.get("content-type", "no content-type")
        raise _CheckFailed(f"response is not JSON ({kind}): {_short(response.text, 80)!r}") from None


def _dig(document: Any, *path: Any) -> Any:
    """document[p0][p1]... or None when any step is missing or of the wrong type."""
    for step in path:
        try:
            document = document[step]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def _reasoning_of(message: Any) -> str | None:
    """vLLM returns the chain of thought in `reasoning`; before ~v0.17 in `reasoning_content`."""
    if not isinstance(message, dict):
        return None
    for key in ("reasoning", "reasoning_content"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def schema_problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """Problems of `value` against a small JSON Schema subset: object/required/properties/type."""
    problems: list[str] = []
    expected = schema.get("type")
    if isinstance(expected, str) and expected in _JSON_TYPES:
        ok_types = _JSON_TYPES[expected]
        is_bool = isinstance(value, bool)
        if not isinstance(value, ok_types) or (is_bool and expected in ("integer", "number")):
            return [f"expected {expected}, got {type(value).__name__}"]
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems.extend(f"{key}: {p}" for p in schema_problems(value[key], sub))
    return problems


class _Session:
    """What every check shares: the HTTP client, the key, the model (`models` fills it in when not given),
    the timeouts and where to report a wait."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_key: str | None,
        model: str | None,
        wait_timeout_s: float,
        request_timeout_s: float,
        on_wait: Callable[[str], None] | None,
        poll_interval_s: float,
        guarded: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.guarded = tuple(guarded)
        self.client = client
        self.api_key = api_key
        self.model = model
        self.wait_timeout_s = wait_timeout_s
        self.request_timeout_s = request_timeout_s
        self.on_wait = on_wait or (lambda message: None)
        self.poll_interval_s = poll_interval_s

    def headers(self, auth: bool = True) -> dict[str, str]:
        if auth and self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}

    @property
    def url(self) -> str:
        return str(self.client.base_url)

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    async def probe(self, check: _Check) -> CheckResult:
        """Run one check; turn its transport, HTTP and JSON failures into a failed CheckResult."""
        start = time.perf_counter()
        try:
            detail, metrics = await check.body(self)
            ok = True
        except _CheckFailed as exc:
            ok, detail, metrics = False, str(exc), exc.metrics
        except httpx.HTTPError as exc:
            ok, detail, metrics = False, describe_http_error(exc, self.request_timeout_s, self.url), {}
        except ValueError as exc:  # JSON decode errors from streamed lines
            ok, detail, metrics = False, f"malformed response: {exc}", {}
        latency = round(time.perf_counter() - start, 4)
        return CheckResult(check.name, ok, self.redact(detail), latency, True, metrics)

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        response = await self.client.post(path, json=payload, headers=self.headers())
        return _json_body(response)

    def chat_payload(self, content: str, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 1024,
        }
        payload.update(extra)
        return payload


_Body = Callable[[_Session], Awaitable[tuple[str, dict[str, Any]]]]  # (detail, metrics), or _CheckFailed


@dataclass(frozen=True)
class _Check:
    """One registered check: its name in the report, its body, and whether it needs a model to query."""

    name: str
    body: _Body
    needs_model: bool


_CHECKS: list[_Check] = []  # after health, in the report's order: the order they are registered below


def _check(name: str, *, needs_model: bool = True) -> Callable[[_Body], _Body]:
    """Register a check body: it returns (detail, metrics), or raises _CheckFailed with the reason."""
    def register(body: _Body) -> _Body:
        _CHECKS.append(_Check(name, body, needs_model))
        return body
    return register


async def _health(session: _Session) -> CheckResult:
    """Poll /health until 200. Only 'still loading' causes are retried until the deadline: 503, or
    a refused connection (the engine is not listening yet). A bad scheme, an unresolvable name, a
    TLS failure, a timeout, 401 or 404 fail at once with their own reason."""
    start = time.perf_counter()
    deadline = start + session.wait_timeout_s
    last: causes.Cause | None = None
    announced = False

    def failed(detail: str) -> CheckResult:
        return CheckResult("health", False, session.redact(detail), round(time.perf_counter() - start, 4))

    problem = causes.url_problem(session.url)
    if problem is not None:
        return failed(problem.message)
    while True:
        try:
            response = await session.client.get("/health")
            if response.status_code == 200:
                waited = time.perf_counter() - start
                note = f" after waiting {waited:.0f} s for the model to load" if announced else ""
                return CheckResult("health", True, f"HTTP 200{note}", round(waited, 4))
            cause = causes.from_status(
                response.status_code, "/health", response.text, has_key=bool(session.api_key)
            )
        except httpx.HTTPError as exc:
            cause = causes.from_exception(exc, session.url, session.request_timeout_s)
        if not cause.still_loading:
            return failed(cause.message)
        last = cause
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            if last.kind == "refused":
                detail = (
                    f"nothing answered within {session.wait_timeout_s:g} s ({last.message}): the server "
                    "is not running, or still loading the model"
                )
            else:
                detail = f"still loading: not ready within {session.wait_timeout_s:g} s ({last.message})"
            return failed(detail)
        if not announced:
            session.on_wait(
                f"Model still loading ({last.message}); retrying for up to {remaining:.0f} s more."
            )
            announced = True
        await asyncio.sleep(min(session.poll_interval_s, remaining))


@_check("models", needs_model=False)
async def _models(session: _Session) -> tuple[str, dict[str, Any]]:
    document = await session.client.get("/v1/models", headers=session.headers())
    data = _dig(_json_body(document), "data")
    if not isinstance(data, list):
        raise _CheckFailed("/v1/models has no `data` list")
    ids = [item.get("id") for item in data if isinstance(item, dict)]
    ids = [i for i in ids if isinstance(i, str)]
    if not ids:
        raise _CheckFailed("/v1/models lists no model")
    if session.model is None:
        session.model = ids[0]
        return f"serves {ids[0]!r}", {"models": ids}
    if session.model not in ids:
        raise _CheckFailed(f"model {session.model!r} is not served; listed: {ids}", models=ids)
    return f"serves {session.model!r}", {"models": ids}


@_check("chat")
async def _chat(session: _Session) -> tuple[str, dict[str, Any]]:
    payload = session.chat_payload("What is 7 + 5? Answer with the number only.")
    document = await session.post_json("/v1/chat/completions", payload)
    message = _dig(document, "choices", 0, "message")
    if not isinstance(message, dict):
        raise _CheckFailed("no choices[0].message in the response")
    content = message.get("content")
    reasoning = _reasoning_of(message)
    usage = document.get("usage") if isinstance(document, dict) else None
    metrics = {"reasoning_chars": len(reasoning or ""), "usage": usage}
    if not isinstance(content, str) or not content.strip():
        reason = _dig(document, "choices", 0, "finish_reason")
        raise _CheckFailed(f"empty content (finish_reason {reason!r})", **metrics)
    if not isinstance(usage, dict) or not isinstance(usage.get("completion_tokens"), int):
        raise _CheckFailed("no usage.completion_tokens in the response", **metrics)
    if reasoning is None:
        raise _CheckFailed(
            "no reasoning returned separately (neither `reasoning` nor `reasoning_content`); "
            "is the openai_gptoss reasoning parser active?",
            **metrics,
        )
    detail = (
        f"content {_short(content, 40)!r}, {usage['completion_tokens']} completion tokens, "
        f"{len(reasoning)} chars of reasoning"
    )
    return detail, metrics


@_check("stream")
async def _stream(session: _Session) -> tuple[str, dict[str, Any]]:
    """A streamed chat completion must arrive as it is generated: content in several chunks, and
    the text's arrival spread over time (not held back and sent in one burst at the end)."""
    payload = session.chat_payload(
        "Count from 1 to 50, separated by spaces.",
        stream=True,
        stream_options={"include_usage": True},
        reasoning_effort="low",
    )
    start = time.perf_counter()
    text_times: list[float] = []  # arrival of each event carrying text (reasoning or content)
    content_events = 0
    content: list[str] = []
    usage_tokens: int | None = None
    done = False

    def take(data: str, now: float) -> None:
        nonlocal content_events, usage_tokens
        try:
            chunk = json.loads(data)
        except ValueError:
            raise _CheckFailed(f"stream chunk is not JSON: {_short(data, 80)!r}") from None
        if isinstance(chunk, dict) and "error" in chunk:
            raise _CheckFailed(f"error event in stream: {_short(json.dumps(chunk['error']))}")
        tokens = _dig(chunk, "usage", "completion_tokens")
        if isinstance(tokens, int):
            usage_tokens = tokens
        delta = _dig(chunk, "choices", 0, "delta")
        if not isinstance(delta, dict):
            return
        piece = delta.get("content")
        if (isinstance(piece, str) and piece) or _reasoning_of(delta):
            text_times.append(now)
        if isinstance(piece, str) and piece:
            content_events += 1
            content.append(piece)

    async with session.client.stream(
        "POST", "/v1/chat/completions", json=payload, headers=session.headers()
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise _status_error(response)
        buffer = b""
        # Bytes with their arrival time: events that arrive together share one timestamp.
        async for piece_bytes in response.aiter_bytes():
            now = time.perf_counter()
            buffer += piece_bytes
            *lines, buffer = buffer.split(b"\n")
            for raw_line in lines:
                line = raw_line.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                take(data, now)
    assembled = "".join(content)
    tokens_out = usage_tokens if usage_tokens is not None else len(text_times)
    first = text_times[0] if text_times else None
    last = text_times[-1] if text_times else start
    spread = last - first if first is not None else 0.0
    metrics: dict[str, Any] = {
        "ttft_s": None if first is None else round(first - start, 4),
        "tokens": tokens_out,
        "tokens_per_s": None,
        "content_chars": len(assembled),
        "text_events": len(text_times),
        "content_events": content_events,
        "text_spread_s": round(spread, 4),
    }
    if spread > 0 and tokens_out > 1:
        metrics["tokens_per_s"] = round((tokens_out - 1) / spread, 1)
    if not done:
        raise _CheckFailed(
            f"stream ended without `data: [DONE]` after {len(text_times)} text chunks (truncated)",
            **metrics,
        )
    if not assembled.strip():
        raise _CheckFailed("stream assembled no content", **metrics)
    if content_events < 2:
        raise _CheckFailed(
            f"not streamed: all content arrived in one chunk ({len(assembled)} chars)", **metrics
        )
    rate = metrics["tokens_per_s"]
    assert first is not None  # every content event also stamped text_times
    if spread <= 0 or (rate is not None and rate > MAX_PLAUSIBLE_TOKENS_PER_S):
        shown = "at the same moment" if spread <= 0 else f"within {spread * 1000:.1f} ms"
        raise _CheckFailed(
            f"not streamed incrementally: all {len(text_times)} text chunks ({tokens_out} tokens) "
            f"arrived {shown}, {first - start:.2f} s after the request: the answer was held back "
            "and sent in one burst (a buffering proxy, or a server that does not stream)",
            **metrics,
        )
    detail = (
        f"TTFT {metrics['ttft_s'] * 1000:.0f} ms, {tokens_out} tokens in {len(text_times)} chunks"
        + (f" at {rate:g} tokens/s" if rate else "")
        + f", content {_short(assembled, 40)!r}"
    )
    return detail, metrics


async def _reasoning(session: _Session, prompt: str, effort: str) -> tuple[int, int | None]:
    """(characters of reasoning, reasoning tokens when the server reports them) for one answer."""
    payload = session.chat_payload(prompt, reasoning_effort=effort, max_tokens=1024)
    try:
        document = await session.post_json("/v1/chat/completions", payload)
    except _CheckFailed as exc:
        raise _CheckFailed(f"reasoning_effort={effort!r} refused: {exc}") from None
    message = _dig(document, "choices", 0, "message")
    if not isinstance(message, dict):
        raise _CheckFailed(f"reasoning_effort={effort!r}: no choices[0].message")
    tokens = _dig(document, "usage", "completion_tokens_details", "reasoning_tokens")
    return len(_reasoning_of(message) or ""), tokens if isinstance(tokens, int) else None


@_check("reasoning_effort")
async def _reasoning_effort(session: _Session) -> tuple[str, dict[str, Any]]:
    """The same questions at low and high effort: high must reason clearly more in total."""
    efforts = ("low", "high")
    jobs = [_reasoning(session, prompt, effort) for effort in efforts for prompt in EFFORT_PROMPTS]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    answers: list[tuple[int, int | None]] = outcomes  # type: ignore[assignment]
    n = len(EFFORT_PROMPTS)
    per_effort = {effort: answers[i * n : (i + 1) * n] for i, effort in enumerate(efforts)}
    metrics: dict[str, Any] = {}
    for effort, results in per_effort.items():
        metrics[f"{effort}_reasoning_chars"] = sum(chars for chars, _ in results)
        metrics[f"{effort}_reasoning_chars_each"] = [chars for chars, _ in results]
        tokens = [t for _, t in results]
        metrics[f"{effort}_reasoning_tokens"] = None if None in tokens else sum(tokens)
    low, high = metrics["low_reasoning_chars"], metrics["high_reasoning_chars"]
    seen = f"reasoning over {n} questions: low {low} chars, high {high} chars"
    if high == 0:
        raise _CheckFailed(f"no reasoning at all at effort 'high' ({seen})", **metrics)
    if high < EFFORT_MIN_RATIO * low:
        raise _CheckFailed(
            f"reasoning_effort is ignored: high gave no more reasoning than low ({seen}; high "
            f"must be at least {EFFORT_MIN_RATIO:g}x low)",
            **metrics,
        )
    ratio = f"{high / low:.1f}x" if low else "low gave none"
    return f"high reasons more than low ({seen}, {ratio})", metrics


@_check("tool_call")
async def _tool_call(session: _Session) -> tuple[str, dict[str, Any]]:
    payload = session.chat_payload(
        "What is the weather in Paris right now? Use the get_weather tool.",
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    document = await session.post_json("/v1/chat/completions", payload)
    message = _dig(document, "choices", 0, "message")
    if not isinstance(message, dict):
        raise _CheckFailed("no choices[0].message in the response")
    calls = message.get("tool_calls")
    if not calls:
        content = message.get("content") or ""
        if "get_weather" in content or content.lstrip().startswith("{"):
            raise _CheckFailed(
                "tool call left as raw text in `content`, not parsed into `tool_calls` "
                "(vLLM needs --enable-auto-tool-choice --tool-call-parser openai): "
                f"{_short(content, 80)!r}"
            )
        raise _CheckFailed(f"no tool_calls in the response; content {_short(content, 80)!r}")
    function = _dig(calls, 0, "function")
    name = _dig(function, "name")
    if name != "get_weather":
        raise _CheckFailed(f"tool call names {name!r}, expected 'get_weather'")
    raw = _dig(function, "arguments")
    if not isinstance(raw, str):
        raise _CheckFailed(f"tool call arguments are not a JSON string: {raw!r}")
    try:
        arguments = json.loads(raw)
    except ValueError:
        raise _CheckFailed(f"tool call arguments are not valid JSON: {_short(raw, 80)!r}") from None
    problems = schema_problems(arguments, WEATHER_TOOL["function"]["parameters"])
    if problems:
        raise _CheckFailed(f"tool call arguments do not match the schema: {'; '.join(problems)}")
    return f"get_weather({json.dumps(arguments)})", {"arguments": arguments}


@_check("responses")
async def _responses(session: _Session) -> tuple[str, dict[str, Any]]:
    payload = {
        "model": session.model,
        "input": "Say hello in one short sentence.",
        "max_output_tokens": 1024,
        "reasoning": {"effort": "low"},
    }
    document = await session.post_json("/v1/responses", payload)
    if not isinstance(document, dict):
        raise _CheckFailed("/v1/responses did not return an object")
    output_text = document.get("output_text")
    text = output_text if isinstance(output_text, str) else ""
    for item in document.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text += part.get("text") or ""
    if not text.strip():
        status = document.get("status")
        raise _CheckFailed(f"/v1/responses returned no output text (status {status!r})")
    return f"output {_short(text, 40)!r}", {"status": document.get("status")}


async def _probe_unauthenticated(session: _Session, method: str, path: str) -> tuple[str, int | None, str]:
    """(\"METHOD /path\", status or None, transport failure) for one request without the key."""
    label = f"{method} {path}"
    try:
        if method == "POST":  # an empty object: refused by validation if it ever reached a handler
            response = await session.client.post(
                path, content=b"{}", headers={"Content-Type": "application/json"}
            )
        else:
            response = await session.client.request(method, path)
    except httpx.HTTPError as exc:
        return label, None, describe_http_error(exc, session.request_timeout_s, session.url)
    return label, response.status_code, ""


@_check("auth", needs_model=False)
async def _auth(session: _Session) -> tuple[str, dict[str, Any]]:
    """Every route either engine can serve, sent without the key, must be refused (401/403);
    only /health may answer. Fails naming each route that answered anything else."""
    if not session.api_key:
        raise _CheckFailed(
            "no API key given, so auth cannot be checked; gptoss-sky endpoints always have one "
            "(pass --api-key, --api-key-file or GPTOSS_SKY_API_KEY)"
        )
    gate = asyncio.Semaphore(AUTH_PROBE_CONCURRENCY)

    async def one(method: str, path: str) -> tuple[str, int | None, str]:
        async with gate:
            return await _probe_unauthenticated(session, method, path)

    results = await asyncio.gather(*(one(m, p) for m, p in session.guarded))
    # Routes that served something first, then handlers that rejected `{}`, then 405/404 (no
    # handler ran, but the guard let the request through).
    rank = lambda status: 0 if status < 300 else 3 if status == 404 else 2 if status == 405 else 1  # noqa: E731
    open_ = sorted(
        ((label, status) for label, status, _ in results if status not in (None, 401, 403)),
        key=lambda item: rank(item[1]),
    )
    answered = [f"{label} (HTTP {status})" for label, status in open_]
    broken = [f"{label} ({error})" for label, status, error in results if status is None]
    metrics: dict[str, Any] = {
        "probed": len(results),
        "refused": sum(status in (401, 403) for _, status, _ in results),
        "answered_without_key": answered,
        "probe_errors": broken,
    }
    if answered:
        shown = ", ".join(answered[:12]) + (f" and {len(answered) - 12} more" if len(answered) > 12 else "")
        raise _CheckFailed(
            f"{len(answered)} of {len(results)} routes answered without the API key "
            f"(auth is not enforced there): {shown}",
            **metrics,
        )
    if broken:
        raise _CheckFailed(
            f"{len(broken)} of {len(results)} routes could not be probed without the key: "
            + ", ".join(broken[:3]),
            **metrics,
        )
    if not results:
        raise _CheckFailed("no routes to probe (catalogs/engines/*.yaml list no guarded_paths)")
    return f"all {len(results)} routes refused without the key (only /health answers)", metrics


CHECK_NAMES = ("health", *(check.name for check in _CHECKS))


async def _run_checks(session: _Session) -> list[CheckResult]:
    """health first (it waits for the model to load); the rest only once it passed, in registry order."""
    results = [await _health(session)]
    if not results[0].ok:
        return results + [_skipped(check.name, "/health did not pass") for check in _CHECKS]
    for check in _CHECKS:
        if check.needs_model and session.model is None:
            results.append(_skipped(check.name, "no model to query (/v1/models failed; pass --model)"))
        else:
            results.append(await session.probe(check))
    return results


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, f"not run: {why}", None)


def guarded_routes() -> tuple[tuple[str, str], ...]:
    """(METHOD, path) for every route any engine in the catalog can serve, deduplicated: smoke does not
    know which engine serves an --endpoint, and the node's guard must refuse all of them anyway."""
    seen: dict[tuple[str, str], None] = {}
    for engine in catalog.load().engines.values():
        for method, paths in engine.guarded_paths.items():
            for path in paths:
                seen[(method.upper(), path)] = None
    return tuple(seen)


async def run_smoke(
    base_url: str,
    api_key: str | None,
    model: str | None = None,
    timeout: float = DEFAULT_WAIT_TIMEOUT_S,
    *,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    on_wait: Callable[[str], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    poll_interval: float = POLL_INTERVAL_S,
    guarded: Sequence[tuple[str, str]] | None = None,
) -> SmokeReport:
    """Run every check against `base_url` (scheme://host:port, no /v1) and return the report.

    `timeout` bounds the wait for the model to load (503 from /health or connection refused);
    `request_timeout` bounds each probe. `model=None` takes the first model /v1/models lists.
    `on_wait(message)` is called once when the server is still loading (the CLI prints it).
    `guarded`: the (METHOD, path) routes the auth check probes without the key (default: every route
    of every engine in catalogs/engines/*.yaml).
    """
    base_url = base_url.rstrip("/")
    if base_url.endswith("/v1"):
        base_url = base_url[:-3]
    limits = httpx.Timeout(request_timeout, connect=min(request_timeout, 10.0))
    async with httpx.AsyncClient(base_url=base_url, timeout=limits, transport=transport) as client:
        session = _Session(
            client, api_key, model, timeout, request_timeout, on_wait, poll_interval,
            guarded_routes() if guarded is None else guarded,
        )
        checks = await _run_checks(session)
    return SmokeReport(base_url, session.model, tuple(checks))


def smoke(
    base_url: str,
    api_key: str | None,
    model: str | None = None,
    timeout: float = DEFAULT_WAIT_TIMEOUT_S,
    **kwargs: Any,
) -> SmokeReport:
    """Blocking wrapper of `run_smoke` for callers without an event loop (up, serve, the CLI)."""
    return asyncio.run(run_smoke(base_url, api_key, model, timeout, **kwargs))
