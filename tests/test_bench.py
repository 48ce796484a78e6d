"""launcher/verify/bench.py and `gptoss-sky bench`, against the fake server's timed /v1/completions stream."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from openai_server import API_KEY, MODEL, FakeServer

from launcher.verify import bench as bench_lib

TTFT_S = 0.05
ITL_S = 0.01


def run(server: FakeServer, **kwargs: object) -> bench_lib.BenchReport:
    options: dict[str, object] = {"concurrency": [1, 4], "requests": 8, "input_len": 30, "output_len": 12}
    options.update(kwargs)
    return bench_lib.bench(server.url, API_KEY, MODEL, request_timeout=10.0, **options)  # type: ignore[arg-type]


def test_percentiles_match_the_servers_known_delays(server: FakeServer) -> None:
    server.config.ttft_s, server.config.itl_s = TTFT_S, ITL_S
    report = run(server)
    assert [lv.concurrency for lv in report.levels] == [1, 4]
    for lv in report.levels:
        assert lv.errors == 0 and lv.completed == 8
        assert lv.output_tokens == 8 * 12  # from the usage chunk
        assert TTFT_S * 1000 <= lv.ttft_ms_p50 <= TTFT_S * 1000 + 50
        assert lv.ttft_ms_p50 <= lv.ttft_ms_p90 <= lv.ttft_ms_p99
        assert ITL_S * 1000 * 0.8 <= lv.tpot_ms_p50 <= ITL_S * 1000 + 8
        assert ITL_S * 1000 * 0.5 <= lv.itl_ms_p50 <= ITL_S * 1000 + 8
        # One request takes ttft + 11 intervals = 0.16 s, so concurrency c gives about c / 0.16 req/s.
        expected = lv.concurrency / (TTFT_S + 11 * ITL_S)
        assert 0.5 * expected <= lv.request_throughput <= 1.1 * expected
        assert lv.output_tokens_per_s == pytest.approx(lv.request_throughput * 12, rel=0.01)


def test_server_500s_are_counted_as_errors(server: FakeServer) -> None:
    server.config.faults = {"completions_500_half"}
    report = run(server, concurrency=[2], requests=6)
    level = report.levels[0]
    assert (level.requests, level.completed, level.errors) == (6, 3, 3)
    assert level.error_samples and level.error_samples[0].startswith("HTTP 500")
    assert report.errors == 3


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("truncated_stream", "ended before data: [DONE]"), ("abort_stream", "RemoteProtocolError")],
)
def test_cut_streams_are_counted_as_errors(server: FakeServer, fault: str, reason: str) -> None:
    server.config.faults = {fault}
    report = run(server, concurrency=[2], requests=4)
    level = report.levels[0]
    assert level.errors == 4 and level.completed == 0
    assert reason in level.error_samples[0]
    assert level.ttft_ms_p50 is None and level.output_tokens_per_s == 0


def test_wrong_key_is_an_error_and_the_key_is_not_echoed(server: FakeServer) -> None:
    report = bench_lib.bench(server.url, "sk-wrong", MODEL, concurrency=[1], requests=2, input_len=5, output_len=3)
    assert report.levels[0].errors == 2
    assert "HTTP 401" in report.levels[0].error_samples[0]


def test_dollars_per_million_output_tokens() -> None:
    # $3.60/h at 1000 tokens/s: 3.6M tokens per hour cost $3.60, so $1 per 1M tokens.
    assert bench_lib.usd_per_million_tokens(3.6, 1000.0) == pytest.approx(1.0)
    assert bench_lib.usd_per_million_tokens(2.0, 500.0) == pytest.approx(2.0 / 1.8)
    assert bench_lib.usd_per_million_tokens(None, 500.0) is None
    assert bench_lib.usd_per_million_tokens(2.0, 0.0) is None


def test_level_price_uses_measured_output_rate() -> None:
    record = bench_lib.RequestRecord(0.1, (0.01,) * 99, 100, 1.0)
    level = bench_lib.summarize(4, [record] * 10, duration_s=2.0, price_per_hour=7.2)
    assert level.output_tokens_per_s == 500.0  # 1000 tokens in 2 s
    assert level.usd_per_million_output_tokens == pytest.approx(7.2 / (500 * 3600) * 1e6)  # $4/1M
    assert level.request_throughput == 5.0
    assert level.tpot_ms_p50 == pytest.approx(10.0)


def test_percentile_interpolates_like_numpy() -> None:
    values = list(range(1, 101))
    random.Random(1).shuffle(values)
    assert bench_lib.percentile(values, 50) == 50.5
    assert bench_lib.percentile(values, 90) == pytest.approx(90.1)
    assert bench_lib.percentile(values, 99) == pytest.approx(99.01)
    assert bench_lib.percentile([7.0], 99) == 7.0
    assert bench_lib.percentile([], 50) is None


def _level(concurrency: int, qps: float, ttft_p90: float, tpot_p50: float, errors: int = 0) -> bench_lib.LevelResult:
    return bench_lib.LevelResult(
        concurrency=concurrency, requests=10, completed=10 - errors, errors=errors, duration_s=1.0,
        request_throughput=qps, output_tokens=100, output_tokens_per_s=100.0, ttft_ms_p50=ttft_p90 / 2,
        ttft_ms_p90=ttft_p90, ttft_ms_p99=ttft_p90 * 2, tpot_ms_p50=tpot_p50, tpot_ms_p99=tpot_p50 * 2,
        itl_ms_p50=tpot_p50, itl_ms_p99=tpot_p50 * 2, usd_per_million_output_tokens=None,
    )


def test_recommendation_takes_busiest_level_meeting_targets_times_safety_factor() -> None:
    levels = [
        _level(1, 1.0, 100, 10),
        _level(8, 6.0, 400, 20),
        _level(32, 15.0, 900, 45),  # misses the TPOT target
        _level(64, 20.0, 300, 20, errors=1),  # errors disqualify
    ]
    qps, why, marked = bench_lib.recommend_qps(levels, ttft_target_ms=1000, tpot_target_ms=30)
    assert qps == pytest.approx(0.8 * 6.0)
    assert "concurrency 8" in why
    assert [lv.met_targets for lv in marked] == [True, True, False, False]
    assert bench_lib.recommend_qps(levels, ttft_target_ms=50, tpot_target_ms=None)[0] is None
    assert bench_lib.recommend_qps(levels, None, None)[0] is None


def test_prompts_are_about_the_requested_length_and_distinct() -> None:
    rng = random.Random(0)
    first, second = bench_lib.make_prompt(500, rng, 0), bench_lib.make_prompt(500, rng, 1)
    assert first != second and first.split()[:2] != second.split()[:2]
    assert 480 <= len(first.split()) <= 520


# -- CLI ------------------------------------------------------------------------------------------




def test_cli_json_has_the_documented_keys(server: FakeServer) -> None:
    server.config.ttft_s, server.config.itl_s = 0.02, 0.005
    result = invoke(
        "bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "1,2", "--requests", "4",
        "--input-len", "16", "--output-len", "8", "--price-per-hour", "3.6", "--ttft-target-ms", "500",
        "--tpot-target-ms", "100", "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert result.stderr == ""
    keys = {
        "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "itl_ms_p50",
        "itl_ms_p99", "request_throughput", "output_tokens_per_s", "errors", "usd_per_million_output_tokens",
    }
    assert [lv["concurrency"] for lv in document["levels"]] == [1, 2]
    for lv in document["levels"]:
        assert keys <= lv.keys()
        per_million = 3.6 / (lv["output_tokens_per_s"] * 3600) * 1e6
        assert lv["usd_per_million_output_tokens"] == pytest.approx(per_million, rel=1e-3)
    assert document["recommended_target_qps_per_replica"] > 0
    assert document["model"] == MODEL  # read from /v1/models
    assert API_KEY not in result.stdout


def test_cli_table_and_exit_1_on_errors(server: FakeServer) -> None:
    server.config.faults = {"completions_500_half"}
    result = invoke(
        "bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "2", "--requests", "4",
        "--input-len", "8", "--output-len", "4", "--waves", "1", "--no-warmup",
    )
    assert result.exit_code == 1
    assert "TTFT 50/90/99" in result.stdout and "2/4" in result.stdout
    assert "HTTP 500" in result.stdout
    assert API_KEY not in result.stdout + result.stderr


def test_cli_rejects_bad_concurrency() -> None:
    result = invoke("bench", "--endpoint", "http://127.0.0.1:9", "--concurrency", "1,x")
    assert result.exit_code == 2
    assert "comma-separated integers" in result.stderr


# -- the raw client (launcher/verify/rawstream.py, the default) and the httpx baseline ---------------------

from clitools import invoke  # noqa: E402
from openai_server import unused_url  # noqa: E402

from launcher.verify import rawstream  # noqa: E402


def test_default_client_is_raw_and_httpx_stays_available(server: FakeServer) -> None:
    server.config.ttft_s, server.config.itl_s = TTFT_S, ITL_S
    assert bench_lib.DEFAULT_CLIENT == "raw"
    for client in ("raw", "httpx"):
        report = run(server, concurrency=[3], requests=6, client=client)
        level = report.levels[0]
        assert (level.errors, level.completed, level.output_tokens) == (0, 6, 6 * 12), client
        # The lower bounds are the server's own delays (a client cannot see tokens sooner); the upper
        # bounds only catch a wrong measurement (e.g. TTFT taken at the end), not speed: a 2-core CI
        # machine under load adds hundreds of ms to httpx's event loop, so they are loose on purpose.
        assert TTFT_S * 1000 <= level.ttft_ms_p50 <= TTFT_S * 1000 + 500, client
        assert ITL_S * 1000 * 0.8 <= level.tpot_ms_p50 <= ITL_S * 1000 * 3, client
    with pytest.raises(ValueError, match="client must be one of"):
        run(server, client="curl")


async def _raw_level(url: str, concurrency: int, requests: int, **kwargs: object):
    async with rawstream.RawClient(url, float(kwargs.pop("timeout", 10.0))) as client:  # type: ignore[arg-type]
        records, _ = await bench_lib.run_level(
            client, model=MODEL, concurrency=concurrency, requests=requests, input_len=8, output_len=6,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        return records, len(client._all)


def test_raw_client_reuses_one_connection_per_worker(server: FakeServer) -> None:
    records, connections = asyncio.run(_raw_level(server.url, 3, 12))
    assert all(r.error is None and r.output_tokens == 6 for r in records) and len(records) == 12
    assert connections == 3


def test_raw_client_connection_refused_is_an_error() -> None:
    records, _ = asyncio.run(_raw_level(unused_url(), 2, 4))
    assert len(records) == 4
    assert all(r.error is not None and r.error.startswith("ConnectError") for r in records)


def test_raw_client_read_timeout(server: FakeServer) -> None:
    server.config.ttft_s = 2.0
    records, _ = asyncio.run(_raw_level(server.url, 1, 1, timeout=0.3))
    assert records[0].error is not None and records[0].error.startswith("ReadTimeout")
    assert records[0].latency_s < 1.5


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("truncated_stream", "ended before data: [DONE]"),
        ("abort_stream", "RemoteProtocolError"),
        ("completions_500_half", "HTTP 500"),
    ],
)
def test_raw_client_counts_cut_streams_and_500s(server: FakeServer, fault: str, reason: str) -> None:
    server.config.faults = {fault}
    records, _ = asyncio.run(_raw_level(server.url, 2, 4))
    errors = [r.error for r in records if r.error is not None]
    assert len(errors) == (2 if fault == "completions_500_half" else 4)
    assert all(reason in e for e in errors)
    if fault == "completions_500_half":
        assert all("internal error" in e for e in errors)  # the body is quoted
        assert sum(r.output_tokens for r in records if r.error is None) == 2 * 6


def _event(text: str, usage: dict | None = None) -> bytes:
    doc: dict[str, object] = {"id": "c", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
    if usage is not None:
        doc = {"id": "c", "choices": [], "usage": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def _feed(response: bytes, pieces: list[int]) -> rawstream.Outcome:
    """Feed `response` to a parser in pieces of the given sizes, each at its own time."""
    loop = asyncio.new_event_loop()
    try:
        exchange = rawstream._Exchange(loop.create_future(), 0.0)
        pos, t = 0, 0.0
        while pos < len(response) and not exchange.future.done():
            size = pieces[int(t) % len(pieces)]
            t += 1.0
            exchange.feed(response[pos : pos + size], t)
            pos += size
        if not exchange.future.done():
            exchange.lost(None)
        return exchange.outcome()
    finally:
        loop.close()


def _chunked(body_parts: list[bytes]) -> bytes:
    out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    for part in body_parts:
        out += b"%x;ext=1\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\nx-trailer: 1\r\n\r\n"


STREAM = [_event(""), _event(" a"), _event(" b") + _event(" c"), _event("", {"completion_tokens": 3}),
          b"data: [DONE]\n\n"]


@pytest.mark.parametrize("pieces", [[1], [7], [3, 50, 1], [100000]])
def test_parser_handles_chunked_encoding_split_anywhere(pieces: list[int]) -> None:
    outcome = _feed(_chunked(STREAM), pieces)
    assert outcome.error is None and outcome.status == 200 and outcome.done
    assert outcome.usage_tokens == 3
    assert len(outcome.text_times) == 3  # " a", " b", " c"; the empty first event is not a token
    assert outcome.text_times == sorted(outcome.text_times)


def test_parser_handles_content_length_crlf_events_and_interim_100() -> None:
    body = b"".join(STREAM).replace(b"\n", b"\r\n")
    response = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    outcome = _feed(response, [5, 64])
    assert outcome.error is None and outcome.done and outcome.usage_tokens == 3 and len(outcome.text_times) == 3


def test_parser_read_until_close_and_cut_chunked_stream() -> None:
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"".join(STREAM)
    outcome = _feed(until_close, [40])
    assert outcome.error is None and outcome.done
    cut = _chunked(STREAM[:2])[:-20]  # stops inside the stream, no terminal chunk
    outcome = _feed(cut, [30])
    assert outcome.error is not None and "RemoteProtocolError" in outcome.error


def test_parser_reports_malformed_and_error_events() -> None:
    outcome = _feed(_chunked([_event(" a"), b"data: {not json\n\n"]), [1000])
    assert outcome.error is not None and outcome.error.startswith("malformed stream")
    outcome = _feed(_chunked([_event(" a"), b'data: {"error": {"message": "engine dead"}}\n\n']), [1000])
    assert outcome.error is not None and "engine dead" in outcome.error


def test_cli_client_httpx_option(server: FakeServer) -> None:
    result = invoke(
        "bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "2", "--requests", "4",
        "--input-len", "8", "--output-len", "4", "--client", "httpx", "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["levels"][0]["completed"] == 4 * bench_lib.DEFAULT_WAVES


def test_prompts_follow_the_seed_and_each_run_draws_a_fresh_one(server: FakeServer) -> None:
    """Issue 12: a second run with the same prompts is partly served from the server's prefix cache."""
    same = [bench_lib.make_payloads(MODEL, 8, 64, 4, seed=7, concurrency=2) for _ in range(2)]
    assert same[0] == same[1]
    other = bench_lib.make_payloads(MODEL, 8, 64, 4, seed=8, concurrency=2)
    assert {p["prompt"] for p in other}.isdisjoint(p["prompt"] for p in same[0])
    seeds = {run(server, concurrency=[1], requests=2).seed for _ in range(3)}
    assert len(seeds) == 3  # fresh per run (2**31 choices)
    assert run(server, concurrency=[1], requests=2, seed=123).seed == 123


def test_bench_cli_reports_the_seed_it_used(server: FakeServer) -> None:
    from clitools import invoke

    result = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--model", MODEL,
                    "--concurrency", "1", "--requests", "2", "--seed", "42", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seed"] == 42


# -- steady state: a warm-up wave, counted waves, their spread -------------------------------------------


def test_steady_state_runs_a_warmup_then_counted_waves_each_with_fresh_prompts(server: FakeServer) -> None:
    server.config.ttft_s, server.config.itl_s = 0.02, 0.005
    report = run(server, concurrency=[1, 3], requests=3, waves=3, warmup=True, output_len=6)
    assert server.config.completions_seen == 2 * 4 * 3  # per level: a warm-up wave and three counted ones
    assert len(set(server.config.prompts_seen)) == len(server.config.prompts_seen)  # no prefix-cache hits
    assert (report.waves, report.warmup) == (3, True)
    for level in report.levels:
        assert (level.requests, level.completed, level.output_tokens) == (9, 9, 9 * 6)  # warm-up not counted
        assert level.warmup is not None and (level.warmup.requests, level.warmup.completed) == (3, 3)
        assert [w.requests for w in level.waves] == [3, 3, 3]
        # Pooled throughput is the counted waves' tokens over their summed time, so it lies among the waves'.
        rates = [w.output_tokens_per_s for w in level.waves]
        assert min(rates) * 0.999 <= level.output_tokens_per_s <= max(rates) * 1.001
        assert level.duration_s == pytest.approx(sum(w.duration_s for w in level.waves), abs=1e-3)
        assert level.spread is not None and level.spread.output_tokens_per_s_cv is not None
        assert level.spread.output_tokens_per_s_cv >= 0


def test_one_wave_without_warmup_is_the_old_single_run(server: FakeServer) -> None:
    report = run(server, concurrency=[2], requests=4)
    level = report.levels[0]
    assert server.config.completions_seen == 4
    assert (level.waves, level.warmup, level.spread) == ((), None, None)


def test_spread_is_the_sample_coefficient_of_variation() -> None:
    # stdev of (90, 100, 110) with n - 1 is 10, the mean 100
    assert bench_lib.coefficient_of_variation([90.0, 100.0, 110.0]) == 0.1
    assert bench_lib.coefficient_of_variation([5.0, 5.0]) == 0.0
    assert bench_lib.coefficient_of_variation([5.0]) is None
    assert bench_lib.coefficient_of_variation([5.0, None]) is None
    waves = [bench_lib.WaveResult(4, 4, 0, 1.0, 4.0, tps, 10.0, 12.0, tpot) for tps, tpot in ((90, 2), (110, 2))]
    spread = bench_lib.spread_of(waves)
    assert spread is not None
    assert spread.output_tokens_per_s_cv == round(14.142135623730951 / 100, 4)  # stdev of (90, 110) = 10 * sqrt 2
    assert (spread.ttft_ms_p50_cv, spread.tpot_ms_p50_cv) == (0.0, 0.0)
    assert bench_lib.spread_of(waves[:1]) is None


def test_warmup_failures_count_as_failures(server: FakeServer) -> None:
    server.config.faults = {"completions_500_half"}  # every second request answers 500
    report = run(server, concurrency=[1], requests=2, waves=1, warmup=True)
    level = report.levels[0]
    assert level.warmup is not None and level.warmup.errors == 1
    assert level.errors == 1
    assert report.errors == 2
    assert level.error_samples and level.error_samples[0].startswith("HTTP 500")


def test_cli_steady_state_is_the_default_and_in_the_json(server: FakeServer) -> None:
    server.config.ttft_s, server.config.itl_s = 0.01, 0.002
    result = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "2",
                    "--input-len", "8", "--output-len", "4", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    level = document["levels"][0]
    assert (document["waves"], document["warmup"]) == (bench_lib.DEFAULT_WAVES, True)
    assert len(level["waves"]) == bench_lib.DEFAULT_WAVES and level["warmup"]["requests"] == 4
    assert set(level["spread"]) == {"output_tokens_per_s_cv", "ttft_ms_p50_cv", "tpot_ms_p50_cv"}
    assert server.config.completions_seen == 4 * (bench_lib.DEFAULT_WAVES + 1)  # max(concurrency, 4) a wave
    table = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "2",
                   "--input-len", "8", "--output-len", "4", "--waves", "2")
    assert table.exit_code == 0, table.stdout + table.stderr
    assert "2 counted waves per level after a warm-up wave" in table.stdout
    assert "spread" in table.stderr and "over 2 waves" in table.stderr


@pytest.mark.parametrize("json_flag", [False, True])
def test_cli_refuses_a_request_longer_than_the_served_context(server: FakeServer, json_flag: bool) -> None:
    server.config.max_model_len = 1000
    result = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--input-len", "900",
                    "--output-len", "200", *(["--json"] if json_flag else []))
    assert result.exit_code == 2
    assert server.config.completions_seen == 0  # refused before any load
    text = json.loads(result.stdout)["error"] if json_flag else result.stderr.strip()
    assert "900 + --output-len 200 = 1100" in text and "at most 1000" in text
    assert len(text.splitlines()) == 1
    fits = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--input-len", "800",
                  "--output-len", "200", "--concurrency", "1", "--waves", "1", "--no-warmup", "--requests", "1")
    assert fits.exit_code == 0, fits.stdout + fits.stderr


def test_cli_with_model_given_still_runs_when_models_is_unreadable(server: FakeServer) -> None:
    server.config.faults = {"non_json_models"}
    result = invoke("bench", "--endpoint", server.url, "--api-key", API_KEY, "--model", MODEL,
                    "--concurrency", "1", "--waves", "1", "--no-warmup", "--requests", "1",
                    "--input-len", "8", "--output-len", "4")
    assert result.exit_code == 0, result.stdout + result.stderr
