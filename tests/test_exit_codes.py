"""One exit-code rule for every command (README "Exit codes"): 0 done, 1 the cloud, SkyPilot or the endpoint
failed, 2 the input or the local setup is wrong, 130 interrupted; with --json, stdout is one JSON document
whatever happened (`{"error": ..., "exit_code": ...}` when the command had nothing else to say).

SkyPilot's side is FakeSky (tests/fakesky.py); endpoints are real servers on 127.0.0.1 (tests/openai_server.py)
or a port nothing listens on.
"""

from __future__ import annotations

import json

import pytest
import yaml
from clitools import invoke
from fakesky import FakeSky

from launcher.cli import cli
from launcher.errors import ApiServerUnreachableError, SkyError
from launcher.sky import state

REFUSED = "http://127.0.0.1:9"  # nothing listens there: the endpoint failed


def _record(name: str, kind: str = "cluster", config: dict | None = None) -> None:
    state.save(state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(state.new_key(name)), created=state.now(), state="up",
                            config=config or {}))


def _service_config() -> dict:
    result = invoke("serve", "20b", "--gpu", "H100", "--dryrun", "--json")
    assert result.exit_code == 0, result.stderr
    return yaml.safe_load(json.loads(result.stdout)["yaml"])


@pytest.fixture
def sky(monkeypatch):
    return FakeSky().install(monkeypatch)


def _unreachable(*args, **kwargs):
    raise ApiServerUnreachableError("no SkyPilot API server answers at http://127.0.0.1:46580")


def _sky_fails(*args, **kwargs):
    raise SkyError("SkyPilot: the cloud said no (RESOURCE_EXHAUSTED)")


# command -> {exit code: (set-up, argv)}; set-up gets (sky, monkeypatch, server) and prepares the case
def _up_fails(sky, mp, server):
    sky.fail_launch = SkyError("launching gptoss-20b: every offer failed: no capacity")


CASES = {
    "capacity": {0: (None, ["capacity", "20b", "--gpu", "H100"]),
                 2: (None, ["capacity", "20b", "--gpu", "H100", "--max-num-seqs", "0"])},
    "render": {0: (None, ["render", "--root", "{tmp}", "--no-validate"]),
               2: (None, ["render", "--engine", "trt"])},
    "plan": {0: (None, ["plan", "20b", "--gpu", "H100"]), 2: (None, ["plan", "30b"])},
    "up": {0: (None, ["up", "20b", "--gpu", "H100", "--dryrun"]),
           1: (_up_fails, ["up", "20b", "--gpu", "H100", "-y", "--no-smoke"]),
           2: (None, ["up", "20b", "--name", "Bad_Name", "--dryrun"])},
    "serve": {0: (None, ["serve", "20b", "--gpu", "H100", "--dryrun"]),
              1: (_up_fails, ["serve", "20b", "--gpu", "H100", "-y", "--no-smoke"]),
              2: (None, ["serve", "20b", "--replicas", "0"])},
    "scale": {0: (lambda sky, mp, s: (_record("gptoss-svc-a", "service", _service_config()),
                                      sky.add_service("gptoss-svc-a")), ["scale", "svc-a", "--replicas", "2"]),
              1: (lambda sky, mp, s: _record("gptoss-svc-a", "service", _service_config()),  # SkyPilot lacks it
                  ["scale", "svc-a", "--replicas", "2"]),
              2: (None, ["scale", "svc", "--replicas", "-2"])},
    "status": {0: (None, ["status", "--no-metrics"]),
               1: (lambda sky, mp, s: mp.setattr(sky, "clusters", _unreachable), ["status", "--no-metrics"]),
               2: (None, ["status", "--window", "-1"])},
    "endpoint": {0: (lambda sky, mp, s: (_record("gptoss-a"), sky.add_cluster("gptoss-a")), ["endpoint", "a"]),
                 1: (lambda sky, mp, s: (_record("gptoss-a"), sky.add_cluster("gptoss-a", "INIT")),
                     ["endpoint", "a"]),
                 2: (None, ["endpoint", "Bad_Name"])},
    "down": {0: (lambda sky, mp, s: (_record("gptoss-a"), sky.add_cluster("gptoss-a")), ["down", "a", "-y"]),
             1: (lambda sky, mp, s: (_record("gptoss-a"), sky.add_cluster("gptoss-a"),
                                     mp.setattr(sky, "down", _sky_fails)), ["down", "a", "-y"]),
             2: (None, ["down"])},
    "forget": {0: (lambda sky, mp, s: _record("gptoss-a"), ["forget", "a", "-y"]),
               2: (None, ["forget", "Bad_Name", "-y"])},
    "logs": {0: (lambda sky, mp, s: (_record("gptoss-a"), sky.add_cluster("gptoss-a"),
                                     sky.set_job("gptoss-a", [("RUNNING", ["INFO ok\n"])])), ["logs", "a"]),
             1: (lambda sky, mp, s: (_record("gptoss-a"), mp.setattr(sky, "tail_logs", _unreachable)),
                 ["logs", "a"]),
             2: (None, ["logs", "a", "--tail", "-5"])},
    "doctor": {1: (lambda sky, mp, s: _doctor(mp, remote_down=True), ["doctor"]),
               2: (lambda sky, mp, s: _doctor(mp, remote_down=False), ["doctor"])},
    "smoke": {0: (None, ["smoke", "--endpoint", "{server}", "--api-key", "{key}", "--timeout", "10"]),
              1: (None, ["smoke", "--endpoint", REFUSED, "--timeout", "1"]),
              2: (None, ["smoke", "--endpoint", "ftp://x"])},
    "bench": {0: (None, ["bench", "--endpoint", "{server}", "--api-key", "{key}", "--concurrency", "1",
                         "--requests", "2", "--output-len", "8", "--input-len", "16"]),
              1: (None, ["bench", "--endpoint", REFUSED, "--model", "m", "--concurrency", "1", "--requests", "1"]),
              2: (None, ["bench", "--endpoint", REFUSED, "--requests", "0"])},
    "tune": {0: (None, ["tune", "--endpoint", "{server}", "--api-key", "{key}", "--slo", "ttft-p90=9999,tpot-p50=9999",
                        "--max-concurrency", "2", "--output-len", "8", "--input-len", "16"]),
             1: (None, ["tune", "--endpoint", REFUSED, "--slo", "ttft-p90=500,tpot-p50=20"]),
             2: (None, ["tune", "--endpoint", REFUSED, "--slo", "ttft-p90=500"])},
    # without gpt_oss.evals installed (Python >= 3.12) eval stops at 2 before it asks the endpoint
    "eval": {2: (None, ["eval", "--endpoint", REFUSED, "--model", "openai/gpt-oss-20b", "--examples", "1"])},
}


def _doctor(mp, remote_down: bool):
    """doctor with every check fine but one: a remote API server down (1) or key file modes here (2)."""
    from launcher.operate import doctor

    ok = doctor.Check("x", doctor.OK, "fine")
    mp.setattr(doctor, "run", lambda engine, infra: [
        ok, doctor.Check("skypilot api server", doctor.PROBLEM, "remote API server does not answer", remote=True)
        if remote_down else doctor.Check("key files", doctor.PROBLEM, "readable by others", "chmod 600")])


def _has_json(argv: list[str]) -> bool:
    return any(p.name == "json_" for p in cli.commands[argv[0]].params)


PARAMS = [(name, code, json_flag) for name, codes in CASES.items() for code in codes
          for json_flag in ((False, True) if _has_json(codes[code][1]) else (False,))]


def test_every_command_has_cases_for_each_code_that_applies_to_it():
    assert set(CASES) == set(cli.commands)
    for name, codes in CASES.items():
        assert 2 in codes, name  # every command takes input that can be wrong
        assert 0 in codes or name in ("eval", "doctor"), name  # eval needs gpt_oss; doctor a healthy server
        talks = name not in ("capacity", "render", "plan", "forget", "eval")  # never ask SkyPilot or an endpoint
        # (eval does, but only with gpt_oss.evals installed)
        assert (1 in codes) == talks, name


@pytest.mark.parametrize("name, code, json_flag", PARAMS, ids=[f"{n}-{c}{'-json' if j else ''}" for n, c, j in PARAMS])
def test_exit_code_by_the_rule_and_one_json_document(name, code, json_flag, sky, monkeypatch, server, tmp_path):
    from openai_server import API_KEY

    setup, argv = CASES[name][code]
    if setup:
        setup(sky, monkeypatch, server)
    argv = [a.format(tmp=tmp_path, server=server.url, key=API_KEY) for a in argv] + (["--json"] if json_flag else [])
    result = invoke(*argv)
    assert result.exit_code == code, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and not isinstance(result.exception, AssertionError)
    if json_flag:
        document = json.loads(result.stdout)  # exactly one document, nothing else on stdout
        if isinstance(document, dict) and "exit_code" in document:  # the CLI's own error document
            assert document["exit_code"] == code and document["error"]
    elif code != 0:  # a failure says why (doctor's findings are its result, on stdout)
        assert (result.stdout if name == "doctor" else result.stderr).strip()


@pytest.mark.parametrize("name", sorted(CASES))
def test_ctrl_c_is_130_with_one_json_document(name, monkeypatch):
    command = cli.commands[name]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "callback", interrupted)
    argv = CASES[name].get(0, CASES[name].get(1, CASES["eval"][2]))[1]  # arguments that parse
    argv = [a.format(tmp="/nonexistent", server=REFUSED, key="k") for a in argv]
    result = invoke(*argv)
    assert result.exit_code == 130 and "Interrupted" in result.stderr
    if _has_json(argv):
        result = invoke(*argv, "--json")
        assert result.exit_code == 130 and json.loads(result.stdout) == {"error": "Interrupted.", "exit_code": 130}


def test_a_declined_confirmation_is_130(sky):
    _record("gptoss-a")
    sky.add_cluster("gptoss-a")
    from click.testing import CliRunner

    result = CliRunner(mix_stderr=False).invoke(cli, ["down", "a", "--json"], input="n\n")
    # CliRunner echoes the typed answer onto stdout (a terminal would): the document follows it
    assert result.exit_code == 130 and result.stdout.startswith(" n\n")
    assert json.loads(result.stdout.removeprefix(" n\n")) == {"error": "Aborted.", "exit_code": 130}
    assert sky.raw_clusters  # nothing torn down


def test_a_confirmation_with_no_input_to_answer_it_is_2_and_says_pass_y(tmp_path):
    """The real command with standard input closed (CliRunner answers an empty line instead)."""
    import os
    import subprocess
    import sys

    _record("gptoss-a")
    done = subprocess.run([sys.executable, "-m", "launcher.cli", "forget", "a"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 2 and "pass -y" in done.stderr and "Traceback" not in done.stderr
    assert state.exists("gptoss-a")  # nothing deleted
