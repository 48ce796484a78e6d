"""Bad arguments, for every command and option: exit 2, one line naming the option and what is allowed,
no traceback, nothing on stdout (with --json, the one error document), and rejected before any pricing,
SkyPilot request or HTTP request.

Every seam that costs time or touches something (the price readers, enabled infra, the SkyPilot client,
the smoke/bench/eval runners) is replaced by a tripwire, so a case that gets past validation fails.
"""

from __future__ import annotations

import json

import pytest
from clitools import invoke

HTTP = "http://127.0.0.1:9"  # a valid endpoint nothing listens on: only the option under test is bad


@pytest.fixture(autouse=True)
def tripwires(monkeypatch):
    """Anything past argument validation raises: pricing, infra lookups, SkyPilot, requests."""
    from launcher import lifecycle
    from launcher.plan import offers as plan
    from launcher.sky import skyapi
    from launcher.verify import bench, evals, smoke

    def tripped(*args, **kwargs):
        raise AssertionError("got past argument validation")

    for module, names in ((plan, ["_rows", "_snapshot_rows"]),
                          (skyapi, ["list_gpu_offers", "list_gpu_offers_from_snapshot", "enabled_clouds",
                                    "SkyPilotClient", "optimize"]),
                          (smoke, ["smoke"]), (bench, ["bench", "first_model"]), (evals, ["run_eval"]),
                          (lifecycle, ["connection_for", "launch", "scale", "status", "recorded_targets",
                                       "named_target"])):
        for name in names:
            monkeypatch.setattr(module, name, tripped, raising=False)


# (argv, words the one-line error must contain: the option, and what is allowed)
SLO = "ttft-p90=500,tpot-p50=20"
CASES = [
    # plan / up / serve share these options
    (["plan", "20b", "--context", "1"], ["--context", "2048..131072"]),
    (["plan", "120b", "--context", "200000"], ["--context", "2048..131072"]),
    (["plan", "20b", "--context", "0"], ["--context", "positive"]),
    (["plan", "20b", "--tool-server", "h:99999"], ["--tool-server", "1 to 65535"]),
    (["plan", "20b", "--tool-server", "h:0"], ["--tool-server", "1 to 65535"]),
    (["plan", "20b", "--tool-server", "h"], ["--tool-server", "HOST:PORT"]),
    (["plan", "20b", "--tool-server", "bad_host!:80"], ["--tool-server", "host name"]),
    (["plan", "20b", "--tool-server", "a:1,:2"], ["--tool-server", "HOST:PORT"]),
    (["plan", "20b", "--gpu", "H100:3"], ["--gpu", "1, 2, 4 or 8"]),
    (["plan", "20b", "--gpu", "H100:"], ["--gpu", "1, 2, 4 or 8"]),
    (["plan", "20b", "--gpu", "H100:-1"], ["--gpu", "1, 2, 4 or 8"]),
    (["plan", "20b", "--gpu", "Z999"], ["--gpu", "supported:"]),
    (["plan", "30b"], ["unknown model", "choose one of"]),
    (["plan", "20b", "--clouds", "mars"], ["--clouds", "SkyPilot knows", "kubernetes"]),
    (["plan", "20b", "--clouds", ","], ["--clouds", "comma"]),
    (["plan", "20b", "--infra", "mars/x"], ["--infra", "SkyPilot knows"]),
    (["plan", "20b", "--infra", "aws//x"], ["--infra", "CLOUD[/REGION[/ZONE]]"]),
    (["plan", "20b", "--infra", "a/b/c/d"], ["--infra", "CLOUD[/REGION[/ZONE]]"]),
    (["plan", "20b", "--infra", "*"], ["--infra", "names no cloud"]),
    (["plan", "20b", "--clouds", "aws", "--infra", "aws"], ["--clouds", "--infra", "not both"]),
    (["plan", "20b", "--infra", "kubernetes", "--spot"], ["--spot", "kubernetes", "no spot"]),
    (["plan", "20b", "--clouds", "ssh,k8s", "--spot"], ["--spot", "ssh, kubernetes", "no spot"]),
    (["plan", "20b", "--top", "0"], ["--top", "positive"]),
    (["plan", "20b", "--profile", "fast"], ["--profile", "balanced"]),
    (["plan", "20b", "--optimize", "speed"], ["--optimize", "cost-per-token"]),
    (["plan", "20b", "--engine", "trt"], ["--engine", "vllm"]),
    (["plan", "20b", "--engine-arg=--max-model-len=5"], ["--engine-arg", "--context"]),
    (["plan", "20b", "--engine-arg=--no-such-flag"], ["--engine-arg", "no such option"]),
    (["plan", "20b", "--engine-version", "x.y"], ["vLLM version", "0.32.0"]),
    (["up", "20b", "--name", "Bad_Name", "--dryrun"], ["--name", "lower-case"]),
    (["up", "20b", "-c", "Bad_Name", "--dryrun"], ["--name", "lower-case"]),
    (["up", "20b", "--cache", "ftp://x", "--dryrun"], ["--cache", "s3://BUCKET"]),
    (["up", "20b", "--on-interrupt", "stop", "--dryrun"], ["--on-interrupt", "cancel", "leave"]),
    (["serve", "20b", "--on-interrupt", "", "--dryrun"], ["--on-interrupt", "cancel", "leave"]),
    (["serve", "20b", "--cache", "s3://", "--dryrun"], ["--cache", "s3://BUCKET"]),
    (["up", "20b", "--env", "=x", "--dryrun"], ["--env", "variable name"]),
    (["up", "20b", "--env", "1BAD=x", "--dryrun"], ["--env", "variable name"]),
    (["serve", "20b", "--secret", "VLLM_API_KEY=x", "--dryrun"], ["--secret", "set by gptoss-sky"]),
    (["serve", "20b", "--secret", "a b", "--dryrun"], ["--secret", "variable name"]),
    (["up", "20b", "--secret", "GPTOSS_X=1", "--dryrun"], ["--secret", "set by gptoss-sky"]),
    (["serve", "20b", "--env", "A-B=1", "--dryrun"], ["--env", "variable name"]),
    (["up", "20b", "--idle-minutes", "0"], ["--idle-minutes", "positive"]),
    (["up", "20b", "--context", "1", "--dryrun"], ["--context", "2048..131072"]),
    (["up", "20b", "--infra", "k8s//x", "--dryrun"], ["--infra", "CLOUD[/REGION[/ZONE]]"]),
    (["serve", "20b", "--replicas", "2", "--target-qps", "3"], ["--target-qps", "--min-replicas"]),
    (["serve", "20b", "--target-qps", "3"], ["--target-qps", "--min-replicas"]),
    (["serve", "20b", "--min-replicas", "1", "--max-replicas", "3", "--target-qps", "-1"],
     ["--target-qps", "above 0"]),
    (["serve", "20b", "--min-replicas", "1", "--max-replicas", "3", "--target-qps", "inf"],
     ["--target-qps", "finite"]),
    (["serve", "20b", "--min-replicas", "-1", "--max-replicas", "2"], ["--min-replicas", "0 or more"]),
    (["serve", "20b", "--min-replicas", "3", "--max-replicas", "2", "--target-qps", "1"],
     ["--min-replicas", "<= --max-replicas"]),
    (["serve", "20b", "--min-replicas", "1"], ["--min-replicas", "--max-replicas", "together"]),
    (["serve", "20b", "--replicas", "0"], ["--replicas", "positive"]),
    (["serve", "20b", "--replicas", "2", "--max-replicas", "3"], ["--replicas", "not both"]),
    (["serve", "20b", "--ondemand-fallback"], ["--ondemand-fallback", "--spot"]),
    (["serve", "20b", "--name", "-x-", "--dryrun"], ["--name", "lower-case"]),
    # scale (no pricing, but no SkyPilot request either)
    (["scale", "svc", "--replicas", "2", "--min-replicas", "1", "--max-replicas", "3"], ["--replicas", "not both"]),
    (["scale", "svc", "--replicas", "2", "--target-qps", "3"], ["--replicas", "--target-qps", "not both"]),
    (["scale", "svc"], ["--replicas", "--min-replicas"]),
    (["scale", "svc", "--min-replicas", "1"], ["--min-replicas", "--max-replicas"]),
    (["scale", "svc", "--min-replicas", "3", "--max-replicas", "2", "--target-qps", "1"],
     ["--min-replicas", "<= --max-replicas"]),
    (["scale", "svc", "--min-replicas", "1", "--max-replicas", "2", "--target-qps", "0"], ["--target-qps", "above 0"]),
    (["scale", "svc", "--replicas", "-2"], ["--replicas", "positive"]),
    (["scale", "Bad_Name", "--replicas", "1"], ["invalid name", "lower-case"]),
    # status / endpoint / down
    (["status", "Bad_Name"], ["invalid name", "lower-case"]),
    (["status", "--interval", "0", "--watch"], ["--interval", "above 0"]),
    (["status", "--window", "-1"], ["--window", "above 0"]),
    (["status", "--watch", "--json"], ["--watch", "--json"]),
    # numbers that ended in a traceback (inf, 1e20: time.sleep overflows) or a bare ValueError (nan)
    (["status", "--watch", "--interval", "inf"], ["--interval", "finite"]),
    (["status", "--watch", "--interval", "1e20"], ["--interval", "at most 3600"]),
    (["status", "--watch", "--interval", "nan"], ["--interval", "finite"]),
    (["status", "--window", "nan"], ["--window", "finite"]),
    (["status", "--window", "1e9"], ["--window", "at most 600"]),
    # empty or contradictory values that were accepted (an empty one fell back to a default silently)
    (["up", "20b", "--name", "", "--dryrun"], ["--name", "must not be empty"]),
    (["serve", "20b", "--name", " ", "--dryrun"], ["--name", "must not be empty"]),
    (["up", "20b", "--env", "EXA_X=1", "--secret", "EXA_X=2", "--dryrun"], ["--env EXA_X", "--secret EXA_X"]),
    (["smoke", "--endpoint", HTTP, "--api-key", ""], ["--api-key", "must not be empty"]),
    (["bench", "--endpoint", HTTP, "--model", ""], ["--model", "must not be empty"]),
    (["plan", "20b", "--engine-version", ""], ["--engine-version", "must not be empty"]),
    (["plan", "20b", "--model-source", ""], ["--model-source", "must not be empty"]),
    (["smoke", "--endpoint", HTTP, "--timeout", "1e20"], ["--timeout", "at most 604800"]),
    (["bench", "--endpoint", HTTP, "--request-timeout", "1e300"], ["--request-timeout", "at most 604800"]),
    (["bench", "--endpoint", HTTP, "--input-len", "200000"], ["--input-len", "at most 131072"]),
    (["bench", "--endpoint", HTTP, "--concurrency", "1,1000000"], ["--concurrency", "at most 100000"]),
    (["capacity", "20b", "--gpu", "L4", "--gpu-memory-utilization", "nan"], ["--gpu-memory-utilization", "finite"]),
    (["logs", "gptoss-x", "--replica", "0"], ["--replica", "positive"]),
    (["logs", "gptoss-x", "--tail", "-5"], ["--tail", "0 or more"]),
    (["logs", "Bad_Name"], ["invalid name", "lower-case"]),
    (["doctor", "--engine", "trt"], ["--engine", "vllm"]),
    (["endpoint", "Bad_Name"], ["invalid name", "lower-case"]),
    (["down"], ["NAME", "--all"]),
    (["down", "gptoss-x", "--all"], ["NAME", "--all", "not both"]),
    (["down", "Bad_Name", "-y"], ["invalid name", "lower-case"]),
    (["forget", "Bad_Name", "-y"], ["invalid name", "lower-case"]),
    # capacity (vLLM's own start-up rules)
    (["capacity", "20b", "--gpu", "H100", "--max-num-batched-tokens", "1"],
     ["--max-num-batched-tokens", "at least 1024"]),
    (["capacity", "20b", "--gpu", "L4", "--max-num-seqs", "4096", "--max-num-batched-tokens", "2048"],
     ["--max-num-batched-tokens", "at least 4096"]),
    (["capacity", "20b", "--gpu", "L4", "--gpu-memory-utilization", "0"], ["--gpu-memory-utilization", "(0, 1]"]),
    (["capacity", "20b", "--gpu", "L4", "--kv-cache-dtype", "int4"], ["--kv-cache-dtype", "fp8"]),
    (["capacity", "20b", "--gpu", "L4", "--max-num-seqs", "0"], ["--max-num-seqs", "positive"]),
    (["capacity", "20b", "--gpu", "L4:16"], ["--gpu", "1, 2, 4 or 8"]),
    (["capacity", "20b", "--gpu", "L4", "--vllm-version", "latest"], ["vLLM version", "0.32.0"]),
    (["capacity", "20b"], ["--gpu"]),
    # smoke / bench / eval: the endpoint and every number, before any request
    (["smoke", "--endpoint", "notaurl"], ["--endpoint", "HOST:PORT"]),
    (["smoke", "--endpoint", "ftp://x"], ["--endpoint", "scheme", "http://HOST:PORT"]),
    (["smoke", "--endpoint", "http://"], ["--endpoint", "host", "http://HOST:PORT"]),
    (["smoke", "--endpoint", "http://h:99999"], ["--endpoint", "1 to 65535"]),
    (["smoke", "--endpoint", "h:0"], ["--endpoint", "1 to 65535"]),
    (["smoke", "--endpoint", "http://bad_host!:80"], ["--endpoint", "host"]),
    (["smoke", "--endpoint", "http://user:pw@h:80"], ["--endpoint", "credentials"]),
    (["smoke", "--endpoint", HTTP, "--timeout", "-1"], ["--timeout", "above 0"]),
    (["smoke", "--endpoint", HTTP, "--timeout", "nan"], ["--timeout", "finite"]),
    (["smoke", "--endpoint", HTTP, "--request-timeout", "0"], ["--request-timeout", "above 0"]),
    (["smoke"], ["NAME", "--endpoint"]),
    (["smoke", "gptoss-x", "--endpoint", HTTP], ["NAME", "--endpoint", "exactly one"]),
    (["smoke", "--endpoint", HTTP, "--api-key-file", "/nonexistent/key"], ["--api-key-file", "does not exist"]),
    (["bench", "--endpoint", HTTP, "--price-per-hour", "-5"], ["--price-per-hour", "at least 0"]),
    (["bench", "--endpoint", HTTP, "--price-per-hour", "nan"], ["--price-per-hour", "finite"]),
    (["bench", "--endpoint", HTTP, "--concurrency", "0"], ["--concurrency", "positive"]),
    (["bench", "--endpoint", HTTP, "--concurrency", "1,x"], ["--concurrency", "integers"]),
    (["bench", "--endpoint", HTTP, "--requests", "0"], ["--requests", "positive"]),
    (["bench", "--endpoint", HTTP, "--waves", "0"], ["--waves", "positive"]),
    (["bench", "--endpoint", HTTP, "--waves", "5000"], ["--waves", "at most 1000"]),
    (["bench", "--endpoint", HTTP, "--input-len", "0"], ["--input-len", "positive"]),
    (["bench", "--endpoint", HTTP, "--output-len", "-3"], ["--output-len", "positive"]),
    (["bench", "--endpoint", HTTP, "--ttft-target-ms", "-1"], ["--ttft-target-ms", "above 0"]),
    (["bench", "--endpoint", HTTP, "--tpot-target-ms", "0"], ["--tpot-target-ms", "above 0"]),
    (["bench", "--endpoint", HTTP, "--request-timeout", "0"], ["--request-timeout", "above 0"]),
    (["bench", "--endpoint", HTTP, "--client", "curl"], ["--client", "httpx"]),
    (["bench", "--endpoint", HTTP, "--seed", "-1"], ["--seed", "0 or more"]),
    (["bench", "--endpoint", "ftp://x"], ["--endpoint", "scheme"]),
    (["eval", "--endpoint", HTTP, "--examples", "0"], ["--examples", "positive"]),
    (["eval", "--endpoint", HTTP, "--eval", "mmlu"], ["--eval", "gpqa"]),
    (["eval", "--endpoint", HTTP, "--reasoning-effort", "max"], ["--reasoning-effort", "low"]),
    (["eval", "--endpoint", "notaurl"], ["--endpoint", "HOST:PORT"]),
    (["eval", "--endpoint", HTTP, "--sampler", "completions"], ["--sampler", "responses"]),
    (["capacity", "20b", "--gpu", "L4", "--context", "131073"], ["--context 131073", "2048..131072"]),
    (["capacity", "20b", "--gpu", "L4", "--context", "1"], ["--context 1", "2048..131072", "holds no request"]),
    (["tune", "--endpoint", HTTP, "--slo", "ttft-p90=500"], ["--slo", "ttft-p90=MS,tpot-p50=MS"]),
    (["tune", "--endpoint", HTTP, "--slo", "ttft-p90=0,tpot-p50=20"], ["--slo", "above 0"]),
    (["tune", "--endpoint", "notaurl", "--slo", SLO], ["--endpoint", "HOST:PORT"]),
    (["tune", "--endpoint", HTTP, "--slo", SLO, "--input-len", "0"], ["--input-len", "positive"]),
    (["tune", "--endpoint", HTTP, "--slo", SLO, "--output-len", "200000"], ["--output-len", "at most 131072"]),
    (["tune", "--endpoint", HTTP, "--slo", SLO, "--max-minutes", "0"], ["--max-minutes", "above 0"]),
    (["tune", "--endpoint", HTTP, "--slo", SLO, "--max-concurrency", "0"], ["--max-concurrency", "positive"]),
    (["tune", "--endpoint", HTTP, "--slo", SLO, "--price-per-hour", "-1"], ["--price-per-hour", "at least 0"]),
    (["tune", "--endpoint", HTTP], ["--slo"]),
    # render
    (["render", "--engine", "trt"], ["--engine", "vllm"]),
]
# plan, up and serve share their model/GPU/infra/engine options: every plan case is also an up and a serve case.
CASES += [([command, *argv[1:], "--dryrun"], words) for command in ("up", "serve")
          for argv, words in list(CASES) if argv[0] == "plan" and "--top" not in argv]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_argument_is_one_line_exit_2_before_any_work(argv, words):
    result = invoke(*argv)  # the tripwires fail it if it gets past validation
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr
    if "--json" in argv:  # the one document says the same
        assert json.loads(result.stdout) == {"error": lines[0].removeprefix("Error: "), "exit_code": 2}
    else:
        assert result.stdout == ""


def test_every_command_and_numeric_option_is_covered():
    """A new command or number/URL option without a bad-argument case fails here."""
    import click

    from launcher.cli import cli

    covered_commands = {argv[0] for argv, _ in CASES}
    assert covered_commands >= set(cli.commands), set(cli.commands) - covered_commands
    covered = {(argv[0], word.split("=")[0]) for argv, _ in CASES for word in argv if word.startswith("-")}
    missing = []
    for name, command in cli.commands.items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType, click.Choice)) or \
                    param.name in ("endpoint", "tool_server", "infra", "clouds", "gpus", "gpu_spec", "name", "cache",
                                   "envs", "secrets", "engine_args", "engine_version"):
                if not any((name, opt) in covered for opt in param.opts):
                    missing.append(f"{name} {param.opts[0]}")
    assert not missing, f"no bad-argument case for: {', '.join(missing)}"


# --- plan: the same answer with or without --json; a corrupt price cache is rebuilt ------------------


def test_plan_without_offers_exits_2_with_and_without_json(monkeypatch):
    """`plan --json` used to print [] with exit 0 where the table exits 2."""
    from launcher.plan import offers as plan

    monkeypatch.setattr(plan, "_rows", lambda names, clouds: ([], [], []))
    table = invoke("plan", "20b", "--clouds", "lambda")
    as_json = invoke("plan", "20b", "--clouds", "lambda", "--json")
    assert table.exit_code == as_json.exit_code == 2
    assert table.stdout == ""
    assert json.loads(as_json.stdout)["error"].startswith("no offer for 20b on lambda")
    assert "no offer for 20b on lambda" in as_json.stderr and len(as_json.stderr.strip().splitlines()) == 1
