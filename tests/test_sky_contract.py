"""The seam against a real SkyPilot 0.14 API server (isolated, offline, no cloud), and the fake against
the same answers: one test body runs every no-cloud scenario on both FakeSky and the real server.

Each scenario is something SkyPilot answers without a cloud and that gptoss-sky meets on every fresh
machine: nothing launched, a name SkyPilot does not have, no SkyServe controller, no enabled cloud.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakesky import FakeSky

from launcher.errors import GptossSkyError, NoCloudError, NotFoundError
from launcher.sky import skyapi

ROOT = Path(__file__).resolve().parents[1]
TASK = yaml.safe_load((ROOT / "tasks" / "20b-any.sky.yaml").read_text())
SERVICE = yaml.safe_load((ROOT / "services" / "20b-any.sky.yaml").read_text())
KEY = {"VLLM_API_KEY": "contract-test-key"}
NOPE = "gptoss-contract-nope"
UNKNOWN_REQUEST = "0bad0bad-0000-4000-8000-000000000000"

# scenario -> (call, expected): a value, or the gptoss-sky error type the seam maps SkyPilot's to.
SCENARIOS = {
    "status, nothing launched": (lambda c: c.clusters(), []),
    "status of an unknown name": (lambda c: c.clusters([NOPE]), []),
    "down of an unknown cluster": (lambda c: c.down(NOPE), NotFoundError),
    "down --purge of an unknown cluster": (lambda c: c.down(NOPE, purge=True), NotFoundError),
    "endpoint of an unknown cluster": (lambda c: c.endpoint(NOPE, 8000), NotFoundError),
    "serve status, no controller": (lambda c: c.services(), []),
    "serve status of a name, no controller": (lambda c: c.services([NOPE]), []),
    "serve down, no controller": (lambda c: c.serve_down(NOPE), NotFoundError),
    "job status of an unknown cluster": (lambda c: c.job_status(NOPE), NotFoundError),
    "job log of an unknown cluster": (lambda c: list(c.tail_logs(NOPE, follow=False)), NotFoundError),
    "replica log, no controller": (lambda c: list(c.serve_logs(NOPE, 1, follow=False)), NotFoundError),
    "enabled infra, none": (lambda c: c.enabled_infra(), []),
    "launch, no enabled cloud": (lambda c: c.launch(TASK, NOPE, secrets=KEY, envs={}, idle_minutes=None,
                                                    down=False), NoCloudError),
    "serve up, no enabled cloud": (lambda c: c.serve_up(SERVICE, NOPE, secrets=KEY, envs={}), NoCloudError),
    "who am I": (lambda c: sorted(c.current_user()), ["user_hash", "user_name"]),
    "status of an unknown request": (lambda c: c.request_status(UNKNOWN_REQUEST), None),
    "cancel of an unknown request": (lambda c: c.cancel_request(UNKNOWN_REQUEST), None),
    "a Kubernetes context the server does not have": (
        lambda c: "Failed to load Kubernetes configuration" in (c.kubernetes_unreachable(NOPE) or ""), True),
}


@pytest.fixture(params=["fake", "real"])
def client(request):
    if request.param == "real":
        request.getfixturevalue("sky_server")
        return skyapi.SkyPilotClient()
    return FakeSky(enabled_infra=())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fake_and_real_server_give_the_same_answer(client, scenario, capfd):
    call, expected = SCENARIOS[scenario]
    if isinstance(expected, type):
        with pytest.raises(GptossSkyError) as info:
            call(client)
        assert type(info.value) is expected, str(info.value)
        if expected is NoCloudError:
            assert "run `sky check`" in str(info.value) and "Cloud access is not set up" in str(info.value)
    else:
        assert call(client) == expected
    assert capfd.readouterr().out == ""  # nothing SkyPilot says reaches stdout


# --- what needs a cloud: FakeSky scripted in SkyPilot's own states and shapes ---------------------

def test_fake_job_passes_through_its_script_with_log_lines():
    sky = FakeSky()
    sky.job_script = [("SETTING_UP", ["gptoss-sky phase install 1700000000"]),
                      ("RUNNING", ["gptoss-sky phase serve 1700000100"]), ("FAILED", ["engine exited 1"])]
    job = sky.launch(TASK, "gptoss-j", secrets=KEY, envs={}, idle_minutes=None, down=False)
    assert sky.clusters(["gptoss-j"])[0]["status"] == "UP" and sky.endpoint("gptoss-j", 8000)
    assert [sky.job_status("gptoss-j", job) for _ in range(4)] == ["SETTING_UP", "RUNNING", "FAILED", "FAILED"]
    assert list(sky.tail_logs("gptoss-j", follow=False)) == [
        "gptoss-sky phase install 1700000000", "gptoss-sky phase serve 1700000100", "engine exited 1"]
    with pytest.raises(KeyError):  # a state SkyPilot does not have cannot be scripted
        sky.set_job("gptoss-j", [("EXPLODED", [])])


def test_fake_service_states_replicas_and_owners_are_skypilots():
    from sky.serve.serve_state import ServiceStatus

    sky = FakeSky("10.0.0.9:30001")
    sky.service_script = [("CONTROLLER_INIT", []), ("REPLICA_INIT", [(1, "PROVISIONING")]),
                          ("NO_REPLICA", [(1, "FAILED_PROVISION")]), ("CONTROLLER_FAILED", [(1, "FAILED")])]
    assert sky.services() == []  # no controller before the first service
    sky.serve_up(SERVICE, "gptoss-svc-a", secrets=KEY, envs={})
    seen = [sky.services(["gptoss-svc-a"])[0] for _ in range(4)]
    assert [s["status"] for s in seen] == ["CONTROLLER_INIT", "REPLICA_INIT", "NO_REPLICA", "CONTROLLER_FAILED"]
    assert all(ServiceStatus(s["status"]) for s in seen)
    assert seen[0]["endpoint"] is None and seen[1]["endpoint"] == "http://10.0.0.9:30001"
    assert [r["status"] for r in seen[3]["replicas"]] == ["FAILED"]
    with pytest.raises(GptossSkyError, match="--purge"):  # SkyPilot skips failed services without purge
        sky.serve_down("gptoss-svc-a")
    sky.serve_down("gptoss-svc-a", purge=True)
    assert sky.services() == [] and sky.clusters()[0]["name"].startswith("sky-serve-controller-")
    sky.add_cluster("gptoss-theirs", user_hash="a11ce000", user_name="alice")
    theirs = sky.clusters(["gptoss-theirs"])[0]
    assert (theirs["user_name"], theirs["user_hash"]) == ("alice", "a11ce000")
    assert theirs["user_hash"] != sky.current_user()["user_hash"]


def test_fake_teardown_the_cloud_refuses_is_a_sky_error_and_leaves_the_cluster_listed():
    from launcher.errors import SkyError

    sky = FakeSky()
    sky.add_cluster("gptoss-r")
    sky.add_service("gptoss-svc-r")
    sky.fail_down = {"gptoss-r", "gptoss-svc-r"}
    for teardown in (lambda: sky.down("gptoss-r"), lambda: sky.serve_down("gptoss-svc-r")):
        with pytest.raises(SkyError, match="cloud API error") as info:
            teardown()
        assert type(info.value) is SkyError  # not NotFoundError: it is still there, and may bill
    assert [c["name"] for c in sky.clusters()] == ["gptoss-r"] and list(sky.raw_services) == ["gptoss-svc-r"]
    with pytest.raises(NotFoundError):  # a name SkyPilot does not have is still "not found"
        sky.down("gptoss-gone")


@pytest.mark.parametrize("script, cause", [
    ([("CONTROLLER_INIT", []), ("CONTROLLER_FAILED", [])], "CONTROLLER_FAILED"),
    ([("CONTROLLER_INIT", []), ("REPLICA_INIT", [(1, "PROVISIONING")]), ("NO_REPLICA", [])], "NO_REPLICA"),
    ([("REPLICA_INIT", [(1, "STARTING")]), ("REPLICA_INIT", [(1, "FAILED_PROBING")])], "FAILED_PROBING"),
])
def test_a_service_in_a_terminal_state_ends_the_wait_at_once_with_the_cause(script, cause):
    """Issue 10: a failed controller or a service left with no replica was waited on for an hour."""
    from launcher.errors import LaunchFailedError
    from launcher.sky import watch

    sky = FakeSky()
    sky.service_script = script
    sky.serve_up(SERVICE, "gptoss-svc-t", secrets=KEY, envs={})
    polls = []
    services = sky.services
    sky.services = lambda names=None: polls.append(names) or services(names)  # type: ignore[method-assign]
    with pytest.raises(LaunchFailedError, match=cause):  # a wait that ran out would name no cause
        watch.watch_service(sky, "gptoss-svc-t", watch.Watch("gptoss-svc-t", "service"), timeout=60, poll=0.01)
    assert len(polls) <= len(script) + 1  # ended at the poll that first saw the terminal state
