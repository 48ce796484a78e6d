"""launcher/bench.py and `gptoss-sky bench`, against the fake server's timed /v1/completions stream."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner, Result
from openai_server import API_KEY, MODEL, FakeServer

from launcher import bench as bench_lib
from launcher.cli import cli

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


def invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))


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
        assert lv["usd_per_million_output_tokens"] == pytest.approx(3.6 / (lv["output_tokens_per_s"] * 3600) * 1e6, rel=1e-3)
    assert document["recommended_target_qps_per_replica"] > 0
    assert document["model"] == MODEL  # read from /v1/models
    assert API_KEY not in result.stdout


def test_cli_table_and_exit_1_on_errors(server: FakeServer) -> None:
    server.config.faults = {"completions_500_half"}
    result = invoke(
        "bench", "--endpoint", server.url, "--api-key", API_KEY, "--concurrency", "2", "--requests", "4",
        "--input-len", "8", "--output-len", "4",
    )
    assert result.exit_code == 1
    assert "TTFT 50/90/99" in result.stdout and "2/4" in result.stdout
    assert "HTTP 500" in result.stdout
    assert API_KEY not in result.stdout + result.stderr


def test_cli_rejects_bad_concurrency() -> None:
    result = invoke("bench", "--endpoint", "http://127.0.0.1:9", "--concurrency", "1,x")
    assert result.exit_code == 2
    assert "comma-separated integers" in result.stderr
