"""Ctrl-C during `up`/`serve`: SkyPilot's request is cancelled or left running as the user chose, the
record (with the request id) and the key stay, `status` shows a request still running as such, and
`down` cancels it first and removes the record and key only once SkyPilot has nothing left.

FakeSky hands out request ids as the real seam does (checked in test_sky_contract.py and, on a real API
server, in test_sky_requests.py); `hold_request` makes Ctrl-C arrive while the request still runs.
"""

from __future__ import annotations

import json

import pytest
from clitools import invoke
from openai_server import API_KEY

from launcher.errors import SkyError
from launcher.sky import state


@pytest.fixture
def held(seeded, server, monkeypatch):
    from fakesky import FakeSky

    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)
    sky = FakeSky(server.url.removeprefix("http://")).install(monkeypatch)
    sky.hold_request = True
    return sky


def files() -> set[str]:
    return {p.name for p in state.home().glob("*/*") if p.is_file()}


@pytest.mark.parametrize("command", [["up", "20b"], ["serve", "20b"]])
def test_ctrl_c_with_y_cancels_the_request_exits_130_and_keeps_record_and_key(held, command):
    result = invoke(*command, "-y", "--json")
    assert result.exit_code == 130, result.stdout + result.stderr
    (request_id, status), = held.requests.items()
    assert status == "CANCELLED" and ("cancel", request_id) in held.calls
    assert "cancelled SkyPilot request " + request_id in result.stderr
    assert request_id in result.stderr.split("cancelled")[0]  # shown while waiting, before Ctrl-C
    doc = json.loads(result.stdout)  # --json: still one document on stdout
    assert doc["ok"] is False and "interrupted" in doc["error"]
    name = "gptoss-20b" if command[0] == "up" else "gptoss-svc-20b"
    record = state.load(name)
    assert record.request_id == request_id and record.state == "interrupted"
    assert f"{name}.key" in files()


def test_leave_keeps_the_request_running_status_says_so_and_down_cancels_it_first(held):
    result = invoke("up", "20b", "-y", "--on-interrupt", "leave")
    assert result.exit_code == 130, result.stderr
    (request_id, status), = held.requests.items()
    assert status == "RUNNING" and "left running" in result.stderr and f"sky api cancel {request_id}" in result.stderr

    row, = json.loads(invoke("status", "--json", "--no-metrics").stdout)
    assert row["state"] == "launching (SkyPilot request RUNNING)"
    assert row["request"] == {"id": request_id, "status": "RUNNING"} and "cancels it" in row["note"]

    down = invoke("down", "20b", "-y", "--json")
    assert down.exit_code == 0, down.stderr
    assert held.requests[request_id] == "CANCELLED"
    cancel_at = held.calls.index(("cancel", request_id))
    assert held.calls.index(("down", "gptoss-20b")) > cancel_at  # the request first, then what it made
    assert files() == set()


def test_down_keeps_record_and_key_while_the_request_will_not_end(held, monkeypatch):
    invoke("up", "20b", "-y", "--on-interrupt", "leave")
    (request_id, _), = held.requests.items()
    monkeypatch.setattr(held, "cancel_request", lambda rid: "RUNNING")  # SkyPilot cannot end it (yet)
    down = invoke("down", "20b", "-y")
    assert down.exit_code == 1
    assert f"SkyPilot request {request_id} is still RUNNING" in down.stderr and "record and key kept" in down.stderr
    assert files() == {"gptoss-20b.json", "gptoss-20b.key"}
    assert not any(c[0] == "down" for c in held.calls)  # nothing torn down under a launch still running


def test_a_request_that_already_ended_is_not_cancelled_and_nothing_left_is_said_truly(held, monkeypatch):
    """Ctrl-C after SkyPilot's request failed and left no cluster: no "may still exist and bill"."""
    def failed_then_interrupted(on_request):
        held.hold_request = False
        request_id = "fake-0001-0000-0000-0000-000000000000"
        held.requests[request_id] = "FAILED"
        on_request(request_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(held, "_request", failed_then_interrupted)
    monkeypatch.setattr(held, "add_cluster", lambda *a, **k: None)  # nothing was provisioned
    result = invoke("up", "20b", "-y")
    assert result.exit_code == 130
    assert "had already ended (FAILED)" in result.stderr and "may still exist" not in result.stderr
    assert "SkyPilot left nothing running" in result.stderr
    assert not any(c[0] == "cancel" for c in held.calls)


def test_up_on_an_unreachable_kubernetes_context_fails_with_that_cause_before_anything(seeded, monkeypatch):
    from fakesky import FakeSky

    sky = FakeSky(enabled_infra=["kubernetes/ctx"]).install(monkeypatch)
    sky.unreachable = {"kubernetes/ctx": "Timed out when trying to get node info from Kubernetes cluster."}
    result = invoke("up", "20b", "-y", "--infra", "kubernetes/ctx", "--gpu", "H100")
    assert result.exit_code == 1, result.stderr
    assert "cannot reach this Kubernetes context" in result.stderr and "Timed out" in result.stderr
    assert "no cloud is enabled" not in result.stderr
    assert not any(c[0] in ("launch", "serve_up") for c in sky.calls) and files() == set()


@pytest.mark.parametrize("command", ["plan", "up"])
def test_infra_that_cannot_open_the_engines_port_is_refused_and_never_offered(seeded, command):
    result = invoke(command, "20b", "--infra", "slurm", *(["-y"] if command == "up" else []))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Opening ports is not supported in Slurm" in result.stderr and result.stdout == ""
    offers = invoke("plan", "20b", "--clouds", "slurm,lambda", "--json")
    assert offers.exit_code == 0 and {o["cloud"] for o in json.loads(offers.stdout)} == {"lambda"}


def test_up_with_only_unreachable_kubernetes_enabled_fails_with_that_cause(seeded, monkeypatch):  # noqa: F811
    from fakesky import FakeSky

    sky = FakeSky(enabled_infra=["kubernetes/a", "kubernetes/b"]).install(monkeypatch)
    sky.unreachable = {"kubernetes/a": "timed out", "kubernetes/b": "Timed out when trying to get node info."}
    result = invoke("up", "20b", "-y", "--gpu", "H100")
    assert result.exit_code == 1, result.stderr
    assert "cannot reach any of its contexts" in result.stderr and "Timed out" in result.stderr
    assert not any(c[0] == "launch" for c in sky.calls) and files() == set()
    sky.unreachable.clear()  # the contexts answer: SkyPilot is asked
    sky.fail_launch = SkyError("launching gptoss-20b: no capacity")  # (and ends the launch at once)
    assert invoke("up", "20b", "-y", "--gpu", "H100").exit_code == 1
    assert any(c[0] == "launch" for c in sky.calls)


@pytest.mark.parametrize("enabled, answers", [(["kubernetes/dead", "lambda"], "lambda"),
                                             (["kubernetes/dead", "kubernetes/alive"], "kubernetes/alive")])
def test_up_with_a_dead_kubernetes_context_beside_other_infra_fails_before_launching(seeded, monkeypatch,  # noqa: F811
                                                                                    enabled, answers):
    """SkyPilot would ask the dead context about every GPU spelling (448 requests to a refusing one, measured
    on a local API server) before it tried the rest; one question per context names it, and what answers."""
    from fakesky import FakeSky

    sky = FakeSky(enabled_infra=enabled).install(monkeypatch)
    sky.unreachable = {"kubernetes/dead": "Timed out when trying to get node info."}
    asked, ask = [], sky.kubernetes_unreachable
    sky.kubernetes_unreachable = lambda context: asked.append(context) or ask(context)
    result = invoke("up", "20b", "-y", "--gpu", "H100")
    assert result.exit_code == 1, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot reach Kubernetes context dead" in error[0] and "Timed out" in error[0]
    assert f"--infra {answers}" in error[0] and "kubectl get nodes --context dead" in error[0]
    assert not any(c[0] == "launch" for c in sky.calls) and files() == set()
    assert sorted(asked) == sorted(i.partition("/")[2] for i in enabled if i.startswith("kubernetes/"))  # once each
