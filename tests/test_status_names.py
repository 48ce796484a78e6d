"""SkyPilot's state names as the seam exports them (skyapi.status_names()) against SkyPilot's own enums.

The expected sets are written out from SkyPilot's source (its failed_statuses(), terminal helpers and
member docs); each enum is checked member by member, so a state SkyPilot adds fails here until the watch
has been told what it means.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakesky import FakeSky

from launcher.errors import LaunchFailedError
from launcher.sky import skyapi, watch

SERVICE = yaml.safe_load((Path(__file__).resolve().parents[1] / "services" / "20b-any.sky.yaml").read_text())
KEY = {"VLLM_API_KEY": "status-names-test-key"}


def _values(enum):
    return {m.value for m in enum}


def test_job_states_are_skypilots_split_into_running_failed_and_ended():
    from sky.skylet.job_lib import JobStatus

    names = skyapi.status_names()
    assert names.job_failed == {"FAILED", "FAILED_SETUP", "FAILED_DRIVER"}
    assert names.job_ended == {"SUCCEEDED", "CANCELLED"}
    assert {s.value for s in JobStatus.user_code_failure_states()} <= names.job_failed
    running = {s.value for s in JobStatus.nonterminal_statuses()}
    assert running | names.job_failed | names.job_ended == _values(JobStatus)
    assert not running & (names.job_failed | names.job_ended) and not names.job_failed & names.job_ended


def test_service_states_failed_is_skypilots_failed_statuses_plus_replicas_failed():
    from sky.serve.serve_state import ServiceStatus

    names = skyapi.status_names()
    assert names.service_broken == {s.value for s in ServiceStatus.failed_statuses()}
    assert names.service_broken == {"CONTROLLER_FAILED", "FAILED_CLEANUP"}  # `serve down` skips these
    assert names.service_failed == {"CONTROLLER_FAILED", "FAILED_CLEANUP", "FAILED"}
    waiting = {"CONTROLLER_INIT", "REPLICA_INIT", "SHUTTING_DOWN"}
    judged = [waiting, names.service_failed, {names.service_ready}, {names.service_no_replica}]
    assert set().union(*judged) == _values(ServiceStatus) and sum(map(len, judged)) == len(ServiceStatus)


def test_replica_states_failed_is_skypilots_failed_statuses_and_running_ones_have_a_log():
    from sky.serve.serve_state import ReplicaStatus

    names = skyapi.status_names()
    assert names.replica_failed == {s.value for s in ReplicaStatus.failed_statuses()}
    assert names.replica_failed == {"FAILED", "FAILED_CLEANUP", "FAILED_INITIAL_DELAY", "FAILED_PROBING",
                                    "FAILED_PROVISION", "UNKNOWN"}
    assert names.replica_running == {"STARTING", "READY", "NOT_READY"} and names.replica_ready == "READY"
    assert not names.replica_running & {s.value for s in ReplicaStatus.terminal_statuses()}
    waiting, leaving = {"PENDING", "PROVISIONING"}, {"SHUTTING_DOWN", "PREEMPTED"}  # replaced, not a failure
    judged = [waiting, leaving, names.replica_failed, names.replica_running]
    assert set().union(*judged) == _values(ReplicaStatus) and sum(map(len, judged)) == len(ReplicaStatus)


def test_request_states_active_and_cancelled_are_skypilots():
    from sky.server.requests.requests import RequestStatus

    names = skyapi.status_names()
    assert names.request_active == {"PENDING", "WAITING", "RUNNING"} and names.request_cancelled == "CANCELLED"
    finished = {s.value for s in RequestStatus.finished_status()}
    assert finished == {"SUCCEEDED", "FAILED", "CANCELLED"} and names.request_cancelled in finished
    assert names.request_active | finished == _values(RequestStatus) and not names.request_active & finished


def test_cluster_states_are_skypilots():
    from sky.utils.status_lib import ClusterStatus

    names = skyapi.status_names()
    assert (ClusterStatus(names.cluster_up), ClusterStatus(names.cluster_stopped)) == (
        ClusterStatus.UP, ClusterStatus.STOPPED)


def test_the_watch_words_every_failed_state_and_only_those():
    names = skyapi.status_names()
    assert set(watch.JOB_FAILURES) == names.job_failed
    assert set(watch.SERVICE_FAILURES) == names.service_failed


def test_a_service_whose_replicas_failed_ends_the_launch_but_is_not_refused_by_down():
    """FAILED (replicas failed, the controller runs) is a failed launch, yet not one of SkyPilot's
    failed_statuses(): `serve down` without --purge still reaches the controller and removes it."""
    sky = FakeSky()
    sky.service_script = [("REPLICA_INIT", [(1, "PROVISIONING")]), ("FAILED", [])]
    sky.serve_up(SERVICE, "gptoss-svc-f", secrets=KEY, envs={})
    with pytest.raises(LaunchFailedError, match=r"the service's replicas failed and none is ready \(FAILED\)"):
        watch.watch_service(sky, "gptoss-svc-f", watch.Watch("gptoss-svc-f", "service"), timeout=60, poll=0.01)
    sky.serve_down("gptoss-svc-f")
    assert sky.services() == []
