"""launcher/verify/smoke.py and `gptoss-sky smoke`, against the fake vLLM server and its faults."""

from __future__ import annotations

import json

import pytest
from clitools import invoke  # noqa: E402
from openai_server import API_KEY, MODEL, FakeServer, unused_url

from launcher.verify import smoke as smoke_lib

FAST = {"timeout": 1.0, "request_timeout": 2.0, "poll_interval": 0.05}


def run(server: FakeServer, api_key: str | None = API_KEY, **kwargs: object) -> smoke_lib.SmokeReport:
    return smoke_lib.smoke(server.url, api_key, **{**FAST, **kwargs})  # type: ignore[arg-type]


def failed_names(report: smoke_lib.SmokeReport) -> list[str]:
    return [c.name for c in report.failed]


def test_healthy_server_passes_every_check(server: FakeServer) -> None:
    report = run(server)
    assert report.ok, report.to_dict()
    assert [c.name for c in report.checks] == list(smoke_lib.CHECK_NAMES)
    assert report.model == MODEL  # taken from /v1/models when not given
    stream = report.check("stream")
    assert stream.metrics["tokens"] == 120  # from the final usage chunk: 24 chunks of 5 tokens
    assert stream.metrics["ttft_s"] is not None and stream.metrics["tokens_per_s"] > 0
    assert stream.metrics["content_events"] == 20
    effort = report.check("reasoning_effort").metrics
    assert effort["high_reasoning_chars"] > 1.5 * effort["low_reasoning_chars"] > 0
    assert len(effort["high_reasoning_chars_each"]) == len(smoke_lib.EFFORT_PROMPTS)
    auth = report.check("auth")
    assert auth.metrics["probed"] == auth.metrics["refused"] == len(smoke_lib.guarded_routes())
    assert server.config.unauthenticated == []  # nothing but /health got past the guard
    assert all(c.latency_s is not None and c.latency_s >= 0 for c in report.checks)


def test_report_data_says_check_by_check_what_passed_and_failed(server: FakeServer) -> None:
    server.config.faults = {"stream_one_chunk", "auth_open:/tokenize"}
    document = run(server).to_dict()
    json.dumps(document)  # the live view and --json print it as it is
    rows = {c["name"]: c for c in document["checks"]}
    assert list(rows) == list(smoke_lib.CHECK_NAMES)
    assert all({"name", "ok", "detail"} <= set(row) for row in rows.values())
    assert document["failed"] == ["stream", "auth"]
    assert [name for name, row in rows.items() if not row["ok"]] == ["stream", "auth"]
    assert "one chunk" in rows["stream"]["detail"] and "POST /tokenize" in rows["auth"]["detail"]
    assert rows["chat"]["detail"].startswith("content '12'")


def test_old_reasoning_content_field_is_accepted(server: FakeServer) -> None:
    server.config.faults = {"old_reasoning_field"}
    report = run(server)
    assert report.ok, report.to_dict()


@pytest.mark.parametrize(
    ("fault", "check", "reason"),
    [
        ("no_auth", "auth", "auth is not enforced"),
        ("auth_open:/invocations", "auth", "1 of "),
        ("auth_open:/invocations", "auth", "POST /invocations (HTTP 400)"),
        ("auth_open:/tokenize", "auth", "POST /tokenize (HTTP 400)"),
        ("auth_open:/metrics", "auth", "GET /metrics (HTTP 200)"),
        ("auth_open:/v1/responses", "auth", "POST /v1/responses (HTTP"),
        ("auth_open:/generate", "auth", "POST /generate (HTTP 404)"),  # an SGLang route, not served here
        ("auth_open:/flush_cache", "auth", "PATCH /flush_cache (HTTP 404)"),
        ("effort_ignored", "reasoning_effort", "reasoning_effort is ignored"),
        ("no_reasoning_for_high", "reasoning_effort", "no reasoning at all at effort 'high'"),
        ("stream_all_at_once", "stream", "not streamed incrementally"),
        ("stream_burst_at_end", "stream", "not streamed incrementally"),
        ("stream_one_chunk", "stream", "all content arrived in one chunk"),
        ("raw_tool_json", "tool_call", "raw text in `content`"),
        ("bad_tool_args", "tool_call", "missing required key 'city'"),
        ("no_reasoning", "chat", "no reasoning"),
        ("truncated_stream", "stream", "without `data: [DONE]`"),
        ("abort_stream", "stream", "connection closed"),
        ("non_json_models", "models", "not JSON"),
        ("reject_high_effort", "reasoning_effort", "'high' refused: HTTP 400"),
        ("no_responses", "responses", "HTTP 404"),
    ],
)
def test_each_fault_fails_its_check(server: FakeServer, fault: str, check: str, reason: str) -> None:
    server.config.faults = {fault}
    report = run(server)
    assert not report.ok
    assert check in failed_names(report)
    assert reason in report.check(check).detail


def test_vllm_own_api_key_leaves_routes_open_and_auth_names_them(server: FakeServer) -> None:
    # vLLM's --api-key guards /v1, /v2, /inference, /cohere only (reference section 6).
    server.config.faults = {"vllm_api_key_only"}
    report = run(server)
    assert failed_names(report) == ["auth"]
    detail = report.check("auth").detail
    for route in ("POST /invocations (HTTP 400)", "POST /tokenize (HTTP 400)", "GET /metrics (HTTP 200)"):
        assert route in detail
    open_routes = report.check("auth").metrics["answered_without_key"]
    assert not [r for r in open_routes if r.split()[1].startswith(("/v1", "/v2", "/inference", "/cohere"))]
    assert "POST /detokenize (HTTP 404)" in open_routes


def test_sglang_own_api_key_leaves_health_variants_open(server: FakeServer) -> None:
    # SGLang's --api-key lets /health*, /ready*, /metrics* through (sglang/srt/utils/auth.py).
    server.config.faults = {"sglang_api_key_only"}
    open_routes = run(server).check("auth").metrics["answered_without_key"]
    assert sorted(r.split(" (")[0] for r in open_routes) == [
        "GET /health_generate", "GET /metrics", "GET /ready", "GET /readyz",
    ]


def test_auth_probe_covers_every_route_of_both_engines_and_runs_nothing(server: FakeServer) -> None:
    server.config.faults = {"no_auth"}
    report = run(server)
    probed = {r.split(" (")[0] for r in report.check("auth").metrics["answered_without_key"]}
    from launcher.plan import catalog

    for engine in catalog.load().engines.values():
        for method, paths in engine.guarded_paths.items():
            assert {f"{method.upper()} {path}" for path in paths} <= probed, engine.engine
    assert set(server.config.unauthenticated) >= probed
    # Inference routes get `{}` (a validation error), state-changing ones PATCH: never a 200 there.
    for route in report.check("auth").metrics["answered_without_key"]:
        if route.startswith(("POST ", "PATCH ")):
            assert "(HTTP 200)" not in route, route


def test_the_issue_named_routes_are_in_the_catalog() -> None:
    routes = {path for _, path in smoke_lib.guarded_routes()}
    named = {
        "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/v1/embeddings",
        "/invocations", "/tokenize", "/detokenize", "/metrics", "/v1/score", "/pooling", "/classify",
        "/rerank", "/generate", "/get_model_info", "/get_server_info", "/flush_cache",
    }
    assert named <= routes, named - routes
    assert "/health" not in routes


@pytest.mark.parametrize("engine", ["vllm-0.32.0", "sglang-0.5.23"])
def test_guarded_paths_cover_the_engines_real_route_lists(engine: str) -> None:
    # tests/fixtures/*-routes.txt: the routes the engine's own app registers (make_routes.py), the
    # same lists the node's guard is tested against. A route smoke does not probe is a hole it misses.
    import re
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / f"{engine}-routes.txt"
    listed = [line.split(" ", 1) for line in fixture.read_text().splitlines() if line.strip()]
    probed = [path for _, path in smoke_lib.guarded_routes()]
    missing = []
    for method, path in listed:
        if path == "/health" or method == "HEAD":
            continue
        segment = "[^/]+(/[^/]+)*" if ":path" in path else "[^/]+"  # {model:path} spans slashes
        pattern = re.compile(re.sub(r"\\{[^}]+\\}", segment, re.escape(path)) + "$")
        if not any(pattern.match(p) for p in probed):
            missing.append(f"{method} {path}")
    assert missing == []


def test_catalog_refuses_the_health_path_among_guarded_paths(tmp_path) -> None:
    import shutil

    from launcher.errors import CatalogError
    from launcher.plan import catalog

    root = tmp_path / "catalogs"
    shutil.copytree(catalog.catalog_dir(), root)
    engine_file = root / "engines" / "vllm.yaml"
    engine_file.write_text(engine_file.read_text().replace("get: [/v1/models,", "get: [/health, /v1/models,"))
    with pytest.raises(CatalogError, match="vllm.yaml: guarded_paths.get lists the health path /health"):
        catalog.load(str(root))


def test_wrong_model_listed_fails_models(server: FakeServer) -> None:
    server.config.faults = {"wrong_model"}
    report = run(server, model=MODEL)
    assert failed_names(report) == ["models"]
    assert "'openai/gpt-oss-20b' is not served" in report.check("models").detail
    assert "some/other-model" in report.check("models").detail


def test_no_key_fails_auth_with_a_clear_reason(server: FakeServer) -> None:
    server.config.faults = {"no_auth"}  # otherwise every probe would get 401
    report = run(server, api_key=None)
    assert failed_names(report) == ["auth"]
    assert "no API key given" in report.check("auth").detail


def test_wrong_key_fails_with_http_401(server: FakeServer) -> None:
    report = run(server, api_key="sk-wrong")
    assert "models" in failed_names(report)
    assert "HTTP 401" in report.check("models").detail
    assert "Unauthorized" in report.check("models").detail
    assert "the key was refused" in report.check("models").detail


def test_loading_then_ready_retries_and_passes(server: FakeServer) -> None:
    server.config.loading_503s = 3
    notes: list[str] = []
    report = run(server, timeout=5.0, on_wait=notes.append)
    assert report.ok, report.to_dict()
    assert len(notes) == 1 and "still loading" in notes[0]
    assert "waiting" in report.check("health").detail


def test_never_ready_fails_with_still_loading_after_timeout(server: FakeServer) -> None:
    server.config.faults = {"loading"}
    report = run(server, timeout=0.5)
    assert not report.ok
    assert report.check("health").detail.startswith("still loading")
    assert report.check("auth").detail.startswith("not run")


def test_nothing_listening_fails_health() -> None:
    report = smoke_lib.smoke(unused_url(), API_KEY, timeout=0.3, poll_interval=0.05)
    assert not report.ok
    assert "connection refused" in report.check("health").detail
    assert "nothing answered" in report.check("health").detail


def test_timeout_is_a_failed_check_not_an_exception(server: FakeServer) -> None:
    server.config.faults = {"hang_chat"}
    report = run(server, request_timeout=0.3)
    assert "chat" in failed_names(report)
    assert "timed out within 0.3 s" in report.check("chat").detail
    assert report.check("responses").ok and report.check("auth").ok  # other probes still ran


def test_schema_problems() -> None:
    schema = smoke_lib.WEATHER_TOOL["function"]["parameters"]
    assert smoke_lib.schema_problems({"city": "Paris"}, schema) == []
    assert smoke_lib.schema_problems({"city": 3}, schema) == ["city: expected string, got int"]
    assert smoke_lib.schema_problems([], schema) == ["expected object, got list"]
    assert smoke_lib.schema_problems({"n": True}, {"properties": {"n": {"type": "integer"}}}) == [
        "n: expected integer, got bool"
    ]


# -- CLI ------------------------------------------------------------------------------------------




def test_cli_json_passes_and_prints_one_document(server: FakeServer) -> None:
    result = invoke("smoke", "--endpoint", server.url, "--api-key", API_KEY, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["failed"] == []
    assert {c["name"] for c in document["checks"]} == set(smoke_lib.CHECK_NAMES)
    assert result.stderr == ""


def test_cli_exit_1_names_the_failing_check(server: FakeServer) -> None:
    server.config.faults = {"no_auth"}
    result = invoke("smoke", "--endpoint", server.url, "--api-key", API_KEY, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"] == ["auth"]


def test_cli_table_output_and_key_from_file(server: FakeServer, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    server.config.faults = {"raw_tool_json"}
    result = invoke("smoke", "--endpoint", server.url, "--api-key-file", str(key_file))
    assert result.exit_code == 1
    assert "CHECK" in result.stdout and "FAILED: tool_call" in result.stdout


def test_cli_key_from_environment(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTOSS_SKY_API_KEY", API_KEY)
    result = invoke("smoke", "--endpoint", server.url, "--json")
    assert result.exit_code == 0, result.stdout


def test_cli_never_prints_the_api_key(server: FakeServer) -> None:
    # Failures included: the wrong-key run echoes request details in error messages.
    for faults in (set(), {"no_auth"}, {"hang_chat"}):
        server.config.faults = faults
        for extra in ([], ["--json"]):
            result = invoke(
                "smoke", "--endpoint", server.url, "--api-key", API_KEY, "--request-timeout", "0.3", *extra
            )
            assert result.exit_code in (0, 1)
            assert API_KEY not in result.stdout and API_KEY not in result.stderr


def test_cli_needs_name_or_endpoint() -> None:
    result = invoke("smoke")
    assert result.exit_code == 2
    assert "NAME or --endpoint" in result.stderr


def test_cli_unknown_deployment_is_a_user_error() -> None:
    result = invoke("smoke", "no-such-deployment")
    assert result.exit_code == 2
    assert "no-such-deployment" in result.stderr


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_auth_passes_behind_the_nodes_guard_and_names_what_the_bare_engine_leaves_open(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's real route table (tests/fixtures/*-routes.txt), once bare and once behind
    # launcher/node/guard.py as the node runs it: smoke's auth check must tell the two apart.
    from engineapp import KEY, Served, engine_app

    from launcher.node import guard

    monkeypatch.setenv("GPTOSS_KEY_ENV", "GPTOSS_TEST_KEY")
    monkeypatch.setenv("GPTOSS_TEST_KEY", KEY)
    bare = engine_app(engine)
    guarded = engine_app(engine)
    guarded.add_middleware(guard.Guard)
    with Served(guarded) as served:
        report = smoke_lib.smoke(served.url, KEY, **FAST)  # type: ignore[arg-type]
    assert report.check("auth").ok, report.check("auth").detail
    with Served(bare) as served:
        report = smoke_lib.smoke(served.url, KEY, **FAST)  # type: ignore[arg-type]
    auth = report.check("auth")
    assert not auth.ok
    assert "POST /invocations (HTTP 200)" in auth.metrics["answered_without_key"]
    assert "GET /metrics (HTTP 200)" in auth.metrics["answered_without_key"]
    assert auth.detail.startswith(f"{len(auth.metrics['answered_without_key'])} of ")
    assert auth.metrics["answered_without_key"][0] in auth.detail  # routes that served come first
    assert "(HTTP 200)" in auth.metrics["answered_without_key"][0]
