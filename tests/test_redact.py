"""No key or secret in any output: what an endpoint or SkyPilot says is masked in every command's output.

The endpoint here is a real HTTP server on 127.0.0.1 that echoes the Authorization header it got in every
answer (as a careless proxy or debug page does); SkyPilot's side is FakeSky (tests/fakesky.py), whose
log lines and errors carry the deployment's key and a --secret value.
"""

from __future__ import annotations

import pytest
from clitools import FailingEndpoint, invoke
from fakesky import FakeSky

from launcher.errors import LaunchFailedError, SkyError
from launcher.sky import state

KEY = "sk-echoed-6f1d2a9b7c"


@pytest.fixture
def echo():
    with FailingEndpoint(echo_auth=True) as server:
        yield server.url


@pytest.mark.parametrize("command", [
    ["smoke", "--timeout", "5"],
    ["smoke", "--timeout", "5", "--json"],
    ["bench", "--concurrency", "1", "--requests", "1", "--model", "m"],
    ["bench", "--concurrency", "1", "--requests", "1", "--model", "m", "--json"],
    ["eval", "--model", "m", "--examples", "1"],  # 2 before any request: no reference for m
])
def test_an_endpoint_that_echoes_the_key_never_gets_it_printed(echo, command):
    result = invoke(*command, "--endpoint", echo, "--api-key", KEY)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr


def _record(name: str) -> str:
    path = state.new_key(name)
    state.save(state.Record(name=name, kind="cluster", model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(path), created=state.now(), state="up"))
    return path.read_text().strip()


def test_skypilot_log_lines_and_errors_with_the_key_are_masked(monkeypatch):
    sky = FakeSky().install(monkeypatch)
    key = _record("gptoss-a")
    sky.add_cluster("gptoss-a")
    sky.set_job("gptoss-a", [("RUNNING", [f"INFO api_key={key}\n", "INFO ok\n"])])
    result = invoke("logs", "a")
    assert result.exit_code == 0, result.stderr
    assert key not in result.stdout and "api_key=***" in result.stdout

    def refuse(name, purge=False):
        raise SkyError(f"tearing down {name}: the controller said: env VLLM_API_KEY={key} is invalid")
    monkeypatch.setattr(sky, "down", refuse)
    result = invoke("down", "a", "-y")
    assert result.exit_code == 1 and "VLLM_API_KEY=***" in result.stderr
    assert key not in result.stdout + result.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_secret_echoed_by_a_failed_launch_is_masked(monkeypatch, json_flag):
    secret = "exa-SECRET-0f9e8d7c"
    monkeypatch.setenv("EXA_API_KEY", secret)
    FakeSky(fail_launch=LaunchFailedError(f"setup failed: EXA_API_KEY={secret} rejected",
                                          log_tail=[f"export EXA_API_KEY={secret}"])).install(monkeypatch)
    result = invoke("up", "20b", "-y", "--no-smoke", "--gpu", "H100", "--secret", "EXA_API_KEY", *json_flag)
    assert result.exit_code == 1, result.stderr
    assert "EXA_API_KEY=***" in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
