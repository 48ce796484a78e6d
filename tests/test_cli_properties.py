"""A property over every command's flags (hypothesis): whatever values a user types, no traceback, an exit
code by the rule (0, 1, 2 or 130), and with --json exactly one JSON document on stdout.

No cloud: SkyPilot is FakeSky (tests/fakesky.py) with one enabled cloud whose launches fail, the endpoint a
real server on 127.0.0.1 that answers 500, and time.sleep ends a loop (status --watch) after a few rounds.
Bounded in time: a few examples per command, values drawn from the ones that broke commands before.
"""

from __future__ import annotations

import json
import time

import click
import pytest
from clitools import FailingEndpoint, invoke
from fakesky import FakeSky
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.cli import cli
from launcher.errors import SkyError
from launcher.sky import state

NASTY = ["", " ", "0", "-1", "1", "2", "8", "nan", "inf", "-inf", "1e20", "1e400", "9" * 30, "0.5", "abc",
         "a b", '{"x": 1}', '["*"]', "\n", "é", "Bad_Name", "gptoss-x", "x", "H100", "H100:2", "20b", "120b",
         "lambda", "kubernetes", "aws/us-east-1", "127.0.0.1:9", "s3://b", "--", "-x", "A=1", "VLLM_API_KEY",
         "'", '"', "$HOME", "*"]


@pytest.fixture(scope="module")
def failing_endpoint():
    with FailingEndpoint() as server:
        yield server.url


# values that make sense for a parameter (by its name), so examples also get past validation
GOOD = {"model": ["20b", "120b", "safeguard-20b"], "name": ["x", "gptoss-x"], "names": ["x", "svc-x"],
        "gpus": ["H100", "H100:2", "L4", "A100-80GB:1"], "gpu_spec": ["H100", "L4:1"], "context": ["8192", "32768"],
        "clouds": ["lambda", "lambda,aws"], "infra": ["lambda", "kubernetes", "aws/us-east-1"],
        "engine_args": ["--max-num-seqs 8", '--override-generation-config {"temperature":0.5}', "--no-such-flag"],
        "envs": ["A=1", "HF_HUB_DISABLE_XET=1"], "secrets": ["EXA_API_KEY=secret-value-1"], "cache": ["s3://b/p"],
        "tool_server": ["demo", "h:80"], "api_key": ["sk-property-1234"], "concurrency": ["1", "1,2"],
        "model_source": ["org/repo@abc123"], "engine_version": ["0.32.0", "0.26.0"], "profile": ["latency"]}
NUMBERS = ["1", "2", "8", "0.5", "30"]


def _value(param: click.Parameter, endpoint: str) -> st.SearchStrategy[str]:
    if isinstance(param.type, click.Choice):
        return st.sampled_from([*param.type.choices, "nope", ""])
    if param.name == "endpoint":
        return st.sampled_from([endpoint] * 4 + ["ftp://x", "http://", "h:0", "127.0.0.1:99999", ""])
    good = GOOD.get(param.name or "", NUMBERS if param.type.name in ("integer", "float") else ["x"])
    return st.sampled_from(good * 6 + NASTY)


def _argv(name: str, endpoint: str) -> st.SearchStrategy[list[str]]:
    """One draw of a command line: its arguments, then each option absent (most often) or with a value."""
    command = cli.commands[name]
    parts = []
    for param in command.params:
        if isinstance(param, click.Argument):
            values = _value(param, endpoint)
            parts.append(st.lists(values, min_size=1 if param.required else 0, max_size=1 if param.nargs == 1 else 2)
                         .map(lambda v: ("arg", v)))
        elif isinstance(param, click.Option) and param.name not in ("help",):
            flag = max(param.opts, key=len)
            present = st.sampled_from([False, False, False, True])
            if param.is_flag:
                parts.append(present.map(lambda on, f=flag: ("opt", [f] if on else [])))
            else:
                value = _value(param, endpoint)
                parts.append(st.tuples(present, value).map(lambda pv, f=flag: ("opt", [f, pv[1]] if pv[0] else [])))
    return st.tuples(*parts).map(lambda picked: [name] + [w for kind, words in picked if kind == "arg" for w in words]
                                 + [w for kind, words in picked if kind == "opt" for w in words])


def _bounded(name: str, argv: list[str], tmp) -> list[str]:
    """What keeps one example short and inside the test's folders, whatever was drawn."""
    if name == "render":
        argv += ["--root", str(tmp)]  # never write into the checkout
    if name in ("up", "serve") and "-y" not in argv and "--yes" not in argv:
        argv.append("-y")  # a question would read an empty answer; a launch fails at once (FakeSky)
    return argv


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_no_traceback_exit_by_the_rule_and_one_json_document(name, failing_endpoint, monkeypatch, tmp_path):
    monkeypatch.setattr(time, "sleep", _few_sleeps())
    has_json = any(p.name == "json_" for p in cli.commands[name].params)

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(argv=_argv(name, failing_endpoint))
    def check(argv):
        sky = FakeSky(fail_launch=SkyError("launching: no capacity anywhere (FakeSky)")).install(monkeypatch)
        _deployments(sky, failing_endpoint)
        argv = _bounded(name, list(argv), tmp_path)
        result = invoke(*argv)
        assert result.exit_code in (0, 1, 2, 130), (argv, result.exit_code, result.stderr[-1500:])
        assert result.exception is None or isinstance(result.exception, SystemExit), (argv, repr(result.exception))
        assert "Traceback" not in result.stderr, (argv, result.stderr[-1500:])
        if has_json and _json_given(argv):
            document = json.loads(result.stdout)  # one document, nothing else
            if isinstance(document, dict) and "exit_code" in document:
                assert document["exit_code"] == result.exit_code, argv

    check()


def _few_sleeps(rounds: int = 20):
    """time.sleep that returns at once and, after `rounds` calls, stops the loop as Ctrl-C would."""
    calls = {"n": 0}

    def sleep(seconds):
        calls["n"] += 1
        if calls["n"] > rounds:
            calls["n"] = 0
            raise KeyboardInterrupt
    return sleep


def _json_given(argv: list[str]) -> bool:
    """Whether click reads --json as the flag in argv (not as another option's value), by click's own parser."""
    command = cli.commands[argv[0]]
    with command.make_context(argv[0], list(argv[1:]), resilient_parsing=True) as ctx:
        return bool(ctx.params.get("json_"))


def _deployments(sky: FakeSky, endpoint: str) -> None:
    """gptoss-x (a cluster) and gptoss-svc-x (a service) recorded and live, so NAMEs reach SkyPilot and endpoints."""
    for name, kind in (("gptoss-x", "cluster"), ("gptoss-svc-x", "service")):
        if not state.exists(name):
            key = state.key_path(name)
            key.unlink(missing_ok=True)
            state.save(state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                                    key_path=str(state.new_key(name)), created=state.now(), state="up"))
    sky.endpoint_value = endpoint.removeprefix("http://")  # answers 500 at once: smoke does not wait on it
    sky.add_cluster("gptoss-x")
    sky.set_job("gptoss-x", [("RUNNING", ["INFO ok\n"])])
    sky.add_service("gptoss-svc-x")
