"""`status` engine numbers: Prometheus text parsed by prometheus_client, read with the key from a real
HTTP server on 127.0.0.1, joined into `status` rows and printed by the CLI."""

from __future__ import annotations

import json
import math

import pytest
from clitools import invoke
from metrics_server import MetricsServer, fixture
from openai_server import unused_url

from launcher.errors import SkyError
from launcher.operate import metrics
from launcher.plan import catalog
from launcher.sky import skyapi, state

ENGINES = list(catalog.load().engines.values())


def test_vllm_026_scrape_reads_gauges_counters_and_histograms():
    s = metrics.parse(fixture("vllm-0.26-b"), ENGINES)
    assert s.engine == "vllm"
    assert s.values["running"] == 64 and s.values["waiting"] == 6
    assert s.values["kv_cache_usage"] == pytest.approx(0.372)
    assert s.values["generation_tokens"] == 414924
    assert s.buckets["ttft_seconds"][-1] == (math.inf, 240)  # 240 requests observed in all


def _sample(text, name):
    """One unlabelled-by-us sample value, read with a regex (not the code under test)."""
    import re

    return float(re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.M).group(1))


def test_real_vllm_026_scrapes_from_an_h200_under_bench_load():
    """/metrics captured with the key from vLLM 0.26.0 serving 20b on the lent H200 (benchmarks/gpu,
    NODE_PROOF.md): idle, then during `gptoss-sky bench` at concurrency 256."""
    idle_text, load_text = fixture("vllm-0.26.0-h200-idle"), fixture("vllm-0.26.0-h200-load")
    idle = metrics.parse(idle_text, ENGINES, at=0.0)
    load = metrics.parse(load_text, ENGINES, at=10.0)
    assert idle.engine == load.engine == "vllm"
    n = metrics.summarize(idle, load)
    assert n.running == _sample(load_text, "vllm:num_requests_running") == 256
    assert n.waiting == _sample(load_text, "vllm:num_requests_waiting")
    assert n.kv_cache_pct == round(100 * _sample(load_text, "vllm:kv_cache_usage_perc"), 1) > 0
    generated = _sample(load_text, "vllm:generation_tokens_total") - _sample(idle_text, "vllm:generation_tokens_total")
    assert n.tokens_per_s == round(generated / 10.0, 1) > 0
    assert n.ttft_p50_s is not None and n.latency_over == "window"
    # Mid-bench no request has finished: vLLM's per-request TPOT histogram is still empty (count 0), so the
    # TPOT shown is the inter-token latency's (observed per token), and says so
    assert _sample(load_text, "vllm:request_time_per_output_token_seconds_count") == 0
    assert n.tpot_p50_s is not None and n.tpot_from == "vllm:inter_token_latency_seconds"
    assert load.buckets["tpot_seconds"][-1][1] == _sample(load_text, "vllm:inter_token_latency_seconds_count")
    assert n.prefix_cache_hit_pct == 0.0  # every prompt of the bench was random: queried, never hit


def test_older_vllm_spellings_are_found_through_the_catalog_list():
    s = metrics.parse(fixture("vllm-0.10-legacy"), ENGINES)  # gpu_cache_usage_perc, time_per_output_token
    assert s.values["kv_cache_usage"] == pytest.approx(0.05)
    assert s.buckets["tpot_seconds"][-1][1] == 10


def test_sglang_scrape_is_recognised_and_uses_its_hit_rate_gauge():
    a = metrics.parse(fixture("sglang-0.5-a"), ENGINES, at=0.0)
    b = metrics.parse(fixture("sglang-0.5-b"), ENGINES, at=2.0)
    n = metrics.summarize(a, b)
    assert (n.engine, n.running, n.waiting, n.kv_cache_pct) == ("sglang", 31, 1, 43.0)
    assert n.tokens_per_s == 1500.0  # (53000 - 50000) / 2 s
    assert n.prefix_cache_hit_pct == 27.0


def test_rates_and_p50s_come_from_the_window_between_scrapes():
    a = metrics.parse(fixture("vllm-0.26-a"), ENGINES, at=10.0)
    b = metrics.parse(fixture("vllm-0.26-b"), ENGINES, at=12.0)
    n = metrics.summarize(a, b)
    assert n.tokens_per_s == 2406.0  # 4,812 tokens in 2 s
    assert n.prefix_cache_hit_pct == 75.0  # 6,000 hits of 8,000 queried tokens in the window
    assert n.latency_over == "window"
    # The window's 40 requests had TTFT 0.2-0.45 s (the first 200: under 0.1 s): p50 lies in (0.25, 0.5]
    assert 0.25 < n.ttft_p50_s <= 0.5
    assert 0.025 < n.tpot_p50_s <= 0.05
    assert n.tpot_from == "vllm:request_time_per_output_token_seconds"  # per-request TPOT once requests finish


def test_idle_engine_has_no_latency_and_no_hit_rate_rather_than_zeros():
    s = metrics.parse(fixture("vllm-0.26-idle"), ENGINES)
    n = metrics.summarize(s, s)
    assert n.tokens_per_s == 0 and n.ttft_p50_s is None and n.prefix_cache_hit_pct is None


def test_quantile_interpolates_like_prometheus_histogram_quantile():
    # 10 observations in (1, 2], none elsewhere: the median is halfway through that bucket
    assert metrics.quantile(0.5, [(1.0, 0), (2.0, 10), (math.inf, 10)]) == 1.5
    # beyond the last finite bound: the last finite bound
    assert metrics.quantile(0.5, [(1.0, 0), (math.inf, 4)]) == 1.0
    assert metrics.quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None


def test_text_that_is_not_an_engines_metrics_is_refused():
    with pytest.raises(ValueError, match="no engine metrics"):
        metrics.parse("# TYPE python_gc_objects_collected counter\npython_gc_objects_collected_total 3\n", ENGINES)


def test_read_many_over_http_with_the_key_and_reasons_for_failures():
    with MetricsServer("k-good") as srv:
        ok = srv.replica("r1", fixture("vllm-0.26-a"), fixture("vllm-0.26-b"))
        targets = [(ok, "k-good"), (srv.replica("r2", fixture("vllm-0.26-a")), "k-wrong"), (unused_url(), "k")]
        good, denied, down = metrics.read_many(targets, ENGINES, window_s=0.2)
    assert good.error is None and good.window_s >= 0.2
    assert good.tokens_per_s * good.window_s == pytest.approx(4812, rel=0.01)  # rate over the measured window
    assert (good.running, good.waiting, good.kv_cache_pct) == (64, 6, 37.2)
    assert "401" in denied.error and denied.tokens_per_s is None
    assert "unreachable" in down.error


def test_watch_memory_measures_from_the_previous_refresh_with_one_scrape(monkeypatch):
    import time

    with MetricsServer("k") as srv:
        url = srv.replica("r1", fixture("vllm-0.26-a"), fixture("vllm-0.26-b"), fixture("vllm-0.26-b"))
        memory = {}
        first = metrics.read_many([(url, "k")], ENGINES, window_s=0.1, memory=memory)[0]
        assert srv.seen["r1"] == 2 and first.tokens_per_s * first.window_s == pytest.approx(4812, rel=0.01)
        time.sleep(0.4)
        second = metrics.read_many([(url, "k")], ENGINES, window_s=0.1, memory=memory)[0]
        assert srv.seen["r1"] == 3  # one scrape: the window starts at the previous refresh's
        assert second.window_s >= 0.4 and second.tokens_per_s == 0 and second.running == 64
        monkeypatch.setattr(srv, "key", "rotated")  # unreadable now: forgotten, so the next read starts over
        assert "401" in metrics.read_many([(url, "k")], ENGINES, window_s=0.1, memory=memory)[0].error
        assert memory == {}


class _Sky:
    """The seam's status calls only, answering as SkyClient does (see skyapi.SkyPilotClient)."""

    def __init__(self, clusters, services, endpoints):
        self._clusters, self._services, self._endpoints = clusters, services, endpoints

    def clusters(self, names=None):
        return [c for c in self._clusters if not names or c["name"] in names]

    def services(self, names=None):
        return [s for s in self._services if not names or s["name"] in names]

    def current_user(self):  # the records carry no owner: every deployment is this user's
        return {"user_hash": "metrics-test-user", "user_name": "metrics-test"}

    def endpoint(self, name, port):
        found = self._endpoints.get(name)
        if found is None:
            raise SkyError(f"{name} exposes no endpoint on port {port}")
        return found


def _record(name, kind):
    key_path = state.new_key(name)
    state.save(state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(key_path), created=state.now() - 3600, state="up"))
    return state.read_key(key_path)


@pytest.fixture
def deployments(monkeypatch):
    """A cluster, a two-replica service and an unreachable cluster, each with its own key."""
    keys = {n: _record(n, k) for n, k in (("gptoss-a", "cluster"), ("gptoss-svc-b", "service"),
                                          ("gptoss-c", "cluster"), ("gptoss-d", "cluster"))}
    servers = {n: MetricsServer(keys[n]) for n in ("gptoss-a", "gptoss-svc-b")}
    for s in servers.values():
        s.__enter__()
    a = servers["gptoss-a"].replica("a", fixture("vllm-0.26-a"), fixture("vllm-0.26-b"))
    svc = servers["gptoss-svc-b"]
    r1 = svc.replica("r1", fixture("vllm-0.26-a"), fixture("vllm-0.26-b"))
    r2 = svc.replica("r2", fixture("vllm-0.26-idle"))
    # SkyPilot's cluster status carries no endpoint: status asks the seam's endpoint() for it
    endpoints = {"gptoss-a": a, "gptoss-c": unused_url()}
    clusters = [{"name": "gptoss-a", "status": "UP", "price_per_hour": 2.0, "launched_at": None},
                {"name": "gptoss-c", "status": "UP", "price_per_hour": 1.0},
                {"name": "gptoss-d", "status": "INIT", "price_per_hour": 1.0}]
    services = [{"name": "gptoss-svc-b", "status": "READY", "endpoint": "http://203.0.113.9:30001",
                 "replicas": [{"id": 1, "status": "READY", "endpoint": r1, "price_per_hour": 3.0,
                               "launched_at": state.now() - 1800},
                              {"id": 2, "status": "READY", "endpoint": r2, "price_per_hour": 3.0,
                               "launched_at": state.now() - 1800}]}]
    fake = _Sky(clusters, services, endpoints)
    monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: fake)
    yield
    for s in servers.values():
        s.__exit__(None, None, None)


def test_status_json_has_engine_numbers_per_cluster_and_per_replica(deployments):
    result = invoke("status", "--json", "--window", "0.2")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    a = rows["gptoss-a"]["engine"]
    assert a["tokens_per_s"] * a["window_s"] == pytest.approx(4812, rel=0.01) and a["running"] == 64
    svc = rows["gptoss-svc-b"]
    r1, r2 = (x["engine"] for x in svc["replicas"])
    assert r1["running"] == 64 and r2["running"] == 0
    assert svc["engine"]["running"] == 64 and svc["engine"]["waiting"] == 6
    assert svc["engine"]["tokens_per_s"] == pytest.approx(r1["tokens_per_s"] + r2["tokens_per_s"], abs=0.2)
    # a service is priced as the sum of its replicas, and costs what they cost since they launched
    assert svc["price_per_hour"] == 6.0 and svc["cost_so_far"] == pytest.approx(3.0, abs=0.01)
    # unreachable metrics are a reason, never an error exit
    assert rows["gptoss-c"]["engine"]["tokens_per_s"] is None
    assert "unreachable" in rows["gptoss-c"]["engine"]["error"]
    assert rows["gptoss-d"]["engine"]["error"] == "no endpoint (state INIT)"
    keys = [state.read_key(state.load(n).key_path) for n in rows]
    assert not any(k in result.stdout for k in keys)  # keys never in --json


def test_status_table_shows_numbers_replicas_and_dashes(deployments):
    result = invoke("status", "--window", "0.2")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0] + (" " + line.split()[1] if line.split()[0] == "replica" else ""): line
             for line in result.stdout.splitlines()[1:] if line.strip()}
    assert "64" in lines["gptoss-a"].split() and "37.2" in lines["gptoss-a"].split()
    assert "2/2" in lines["gptoss-svc-b"].split() and "$6.00" in lines["gptoss-svc-b"].split()
    assert "replica 1" in lines and "replica 2" in lines
    c = lines["gptoss-c"].split()
    assert c[-7:] == ["-"] * 7  # no numbers, no traceback


def test_status_watch_refreshes_until_interrupted(deployments, monkeypatch):
    import launcher.cli.inspecting as inspecting

    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) >= 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(inspecting.time, "sleep", sleep)
    result = invoke("status", "--watch", "--interval", "7", "--no-metrics")
    assert result.exit_code == 0, result.stderr
    assert calls == [7, 7] and "gptoss-svc-b" in result.stdout


def test_status_watch_with_json_is_refused():
    result = invoke("status", "--watch", "--json")
    assert result.exit_code == 2 and "--watch" in result.stderr


def test_every_engine_names_its_metrics_for_each_quantity():
    for engine in ENGINES:
        assert set(engine.metrics) == set(metrics.QUANTITIES), engine.engine
        assert engine.metrics["running"] and engine.metrics["generation_tokens"], engine.engine
