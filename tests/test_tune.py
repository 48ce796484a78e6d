"""The tune search against a fake engine whose latency follows its flags (tests/tuned_engine.py): the load it
finds is the highest the model's own formula says meets the SLO, different configurations win under
different SLOs, a configuration that errors loses with its cause, and a time bound stops the search."""

from __future__ import annotations

import contextlib
import json

import pytest
from clitools import invoke
from tuned_engine import MODEL, LatencyModel, TunedEngine

from launcher.errors import LaunchFailedError, UserError
from launcher.verify import bench, tune

# A: few sequences, graphs for all of them; B: many sequences, graphs for only 2
A = tune.Configuration("few-seqs", {"max_num_seqs": 4, "max_cudagraph_capture_size": 16}, "few sequences")
B = tune.Configuration("many-seqs", {"max_num_seqs": 16, "max_cudagraph_capture_size": 2}, "many sequences")
TIGHT = tune.Slo(ttft_p90_ms=200, tpot_p50_ms=12)  # TPOT must stay fast: graphs must cover the batch
LOOSE = tune.Slo(ttft_p90_ms=200, tpot_p50_ms=60)  # slow TPOT is fine: only queueing misses
SHAPE = {"input_len": 16, "output_len": 8}


def _endpoints(engines, fail=(), broken=()):
    @contextlib.asynccontextmanager
    async def endpoint_for(config):
        if config.name in broken:
            raise LaunchFailedError(f"{config.name}: the engine exited during start-up (CUDA out of memory)")
        with TunedEngine(LatencyModel.from_options(config.options), fail=config.name in fail) as engine:
            engines.append(engine)
            yield tune.Endpoint(engine.url, None, MODEL, price_per_hour=3.5)
    return endpoint_for


def _highest_meeting(config, slo, limit=64):
    """The model's own answer: the highest closed-loop concurrency whose TTFT and TPOT meet the SLO."""
    model = LatencyModel.from_options(config.options)
    met = [c for c in range(1, limit) if model.expected(c)[0] <= slo.ttft_p90_ms and model.expected(c)[1]
           <= slo.tpot_p50_ms]
    assert met == list(range(1, len(met) + 1))  # monotone, as the search assumes
    return met[-1]


@pytest.mark.parametrize("slo, winner", [(TIGHT, "few-seqs"), (LOOSE, "many-seqs")])
def test_the_load_found_is_the_highest_the_model_allows_and_the_winner_depends_on_the_slo(slo, winner):
    result = tune.run([A, B], _endpoints([]), slo, **SHAPE, seed=7)
    for config in (A, B):
        found = result.result(config.name)
        expected = _highest_meeting(config, slo)
        assert found.concurrency == expected, found.steps
        measured = {s.concurrency: s.met for s in found.steps}
        assert measured[expected] and not measured.get(expected + 1, False)  # the next level up was tried, missed
        assert expected + 1 in measured
    assert result.winner == winner and result.stopped is None
    best = result.result(winner).best
    assert result.target_qps_per_replica == round(bench.SAFETY_FACTOR * best.request_throughput, 3)
    loser = next(r for r in result.results if r.name != winner)
    assert "output tok/s at the SLO" in loser.lost_because and winner in loser.lost_because
    assert best.usd_per_million_output_tokens == pytest.approx(3.5 / 3600 / best.output_tokens_per_s * 1e6, rel=1e-3)


def test_a_configuration_that_errors_or_does_not_start_loses_with_its_cause():
    engines = []
    result = tune.run([A, B, tune.Configuration("boom", {})], _endpoints(engines, fail={"few-seqs"},
                                                                          broken={"boom"}), LOOSE, **SHAPE)
    errored = result.result("few-seqs")
    assert errored.best is None and len(errored.steps) == 1
    assert errored.lost_because.startswith("missed the SLO from the first level (")
    assert "errors at concurrency 1: HTTP 500" in errored.lost_because and "CUDA out of memory" in errored.lost_because
    assert result.result("boom").lost_because == ("its server failed: boom: the engine exited during start-up "
                                                  "(CUDA out of memory)")
    assert result.winner == "many-seqs"
    assert all(e.in_flight == 0 for e in engines)


def test_the_time_bound_stops_the_search_and_says_where():
    engines = []

    def clock():  # one "second" per request the engines have answered: no wall clock involved
        return float(sum(e.requests for e in engines))

    # levels 1 and 2 (4 requests per wave, a warm-up and 2 counted waves: 12 each) leave 6 s, so level 4 runs
    # (24 < 30), then the bound (36 >= 30) stops A before 8, and B is not tried
    result = tune.run([A, B], _endpoints(engines), TIGHT, **SHAPE, max_seconds=30, clock=clock)
    assert [s.concurrency for s in result.result("few-seqs").steps] == [1, 2, 4]
    assert result.stopped == "the 0.5-minute bound (--max-minutes) was reached after concurrency 4 of few-seqs"
    assert result.result("many-seqs").lost_because == f"not tried: {result.stopped}"
    assert result.winner == "few-seqs"  # what it found before the bound still counts, said as such


@pytest.mark.parametrize("text", ["", "ttft-p90=500", "ttft-p90=500,tpot-p50=0", "ttft-p90=500,tpot-p50=x",
                                  "ttft-p90=1,ttft-p90=2", "ttft-p50=500,tpot-p50=20", "ttft-p90=5,tpot-p50=2,x=1"])
def test_a_bad_slo_names_what_is_allowed(text):
    with pytest.raises(UserError, match=r"give --slo ttft-p90=MS,tpot-p50=MS"):
        tune.parse_slo(text)


def test_an_slo_parses_in_any_order():
    assert tune.parse_slo(" tpot-p50=20 , ttft-p90=500.5") == tune.Slo(500.5, 20.0)


def test_tune_endpoint_finds_the_served_configurations_load_through_the_cli():
    model = LatencyModel(max_num_seqs=4, capture_size=16)
    with TunedEngine(model) as engine:
        result = invoke("tune", "--endpoint", engine.url, "--slo", "ttft-p90=200,tpot-p50=12", "--input-len", "16",
                        "--output-len", "8", "--price-per-hour", "2", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    (config,) = document["configurations"]
    assert config["concurrency"] == _highest_meeting(tune.Configuration("x", {"max_num_seqs": 4,
                                                                              "max_cudagraph_capture_size": 16}),
                                                     tune.Slo(200, 12))
    assert document["winner"] == "as-served" and document["model"] == MODEL
    assert document["target_qps_per_replica"] == round(bench.SAFETY_FACTOR * config["request_throughput"], 3)


def test_tune_shows_progress_on_stderr_and_the_table_on_stdout():
    with TunedEngine(LatencyModel(max_num_seqs=2)) as engine:
        result = invoke("tune", "--endpoint", engine.url, "--slo", "ttft-p90=200,tpot-p50=12", "--input-len", "16",
                        "--output-len", "8", "--max-minutes", "30")
    assert result.exit_code == 0, result.stderr
    assert "as-served: concurrency 3 misses the SLO (TTFT p90" in result.stderr and "min left" in result.stderr
    assert "Best: as-served; target_qps_per_replica:" in result.stdout and "misses the SLO" not in result.stdout


def test_tune_exits_1_when_no_load_meets_the_slo():
    with TunedEngine(LatencyModel(), fail=True) as engine:
        result = invoke("tune", "--endpoint", engine.url, "--slo", "ttft-p90=200,tpot-p50=12", "--input-len", "16",
                        "--output-len", "8", "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["winner"] is None and document["target_qps_per_replica"] is None
    assert "HTTP 500" in document["configurations"][0]["lost_because"]


@pytest.mark.parametrize("slo", ["ttft-p90=500", "ttft=1,tpot-p50=2", "ttft-p90=-1,tpot-p50=2"])
def test_tune_refuses_a_bad_slo_in_one_line(slo):
    result = invoke("tune", "--endpoint", "127.0.0.1:9", "--slo", slo)
    assert result.exit_code == 2 and "ttft-p90=MS,tpot-p50=MS" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
