"""`logs NAME`: which log the seam is asked for (cluster job or service replica), lines on stdout only."""

from __future__ import annotations

import pytest
from clitools import invoke

from launcher.errors import NotFoundError
from launcher.sky import skyapi, state


class _Sky:
    """SkyPilotClient's log calls as their docstrings in launcher/sky/skyapi.py specify: iterators of lines."""

    def __init__(self, replicas=(), gone=False):
        self.calls = []
        self.replicas = list(replicas)
        self.gone = gone

    def _lines(self):
        if self.gone:
            raise NotFoundError("cluster gptoss-a does not exist")
        yield "gptoss-sky phase setup 1764530000\n"
        yield "INFO:     Started server process [4242]\n"
        yield "(APIServer pid=4242) INFO: Route: /v1/chat/completions\n"

    def tail_logs(self, cluster_name, job_id=None, *, follow=True, tail=0):
        self.calls.append(("tail_logs", cluster_name, job_id, follow, tail))
        return self._lines()

    def serve_logs(self, service_name, replica_id, *, follow=True, tail=0):
        self.calls.append(("serve_logs", service_name, replica_id, follow, tail))
        return self._lines()

    def services(self, names=None):
        return [{"name": n, "status": "READY", "replicas": self.replicas} for n in names or []]


def _record(name, kind):
    state.save(state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(state.new_key(name)), created=state.now(), state="up"))


@pytest.fixture
def sky(monkeypatch):
    fake = _Sky(replicas=[{"id": 3, "status": "STARTING"}, {"id": 4, "status": "READY"}])
    monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: fake)
    _record("gptoss-a", "cluster")
    _record("gptoss-svc-b", "service")
    return fake


def test_cluster_logs_are_the_job_log_printed_line_by_line(sky):
    result = invoke("logs", "a", "--tail", "50")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["gptoss-sky phase setup 1764530000",
                                          "INFO:     Started server process [4242]",
                                          "(APIServer pid=4242) INFO: Route: /v1/chat/completions"]
    assert sky.calls == [("tail_logs", "gptoss-a", None, False, 50)]


def test_follow_is_passed_to_the_seam(sky):
    assert invoke("logs", "gptoss-a", "--follow").exit_code == 0
    assert sky.calls == [("tail_logs", "gptoss-a", None, True, 0)]


def test_service_logs_default_to_the_first_ready_replica(sky):
    result = invoke("logs", "svc-b")
    assert result.exit_code == 0, result.stderr
    assert sky.calls == [("serve_logs", "gptoss-svc-b", 4, False, 0)]


def test_service_logs_of_a_named_replica(sky):
    assert invoke("logs", "svc-b", "--replica", "3", "-f").exit_code == 0
    assert sky.calls == [("serve_logs", "gptoss-svc-b", 3, True, 0)]


@pytest.mark.parametrize("args, says", [
    (("logs", "svc-b", "--replica", "9"), "has no replica 9; its replicas: 3, 4"),
    (("logs", "a", "--replica", "1"), "--replica applies only to services"),
    (("logs", "nope"), "no gptoss-sky deployment named 'gptoss-nope'"),
    (("logs", "a", "--tail", "-1"), "--tail"),
])
def test_bad_arguments_are_one_line_exit_2_and_read_nothing(sky, args, says):
    result = invoke(*args)
    assert result.exit_code == 2 and says in result.stderr and not result.stdout
    assert "Traceback" not in result.stderr and sky.calls == []


def test_a_cluster_gone_from_skypilot_is_an_error_line_not_a_traceback(sky):
    sky.gone = True
    result = invoke("logs", "a")
    assert result.exit_code == 1 and "gone from SkyPilot" in result.stderr and "Traceback" not in result.stderr
    # the advice is what gptoss-sky does: `down` removes the record, `status` never deletes one
    assert "`gptoss-sky down gptoss-a` removes its record" in result.stderr and "status` cleans" not in result.stderr


def test_the_hint_for_a_deployment_gone_from_skypilot_is_a_command_that_clears_it(monkeypatch):
    """The hint used to say `status` cleans up the record, which status never does."""
    from fakesky import FakeSky

    FakeSky().install(monkeypatch)  # SkyPilot has no cluster gptoss-a
    _record("gptoss-a", "cluster")
    result = invoke("logs", "a")
    assert result.exit_code == 1 and "`gptoss-sky down gptoss-a` removes its record" in result.stderr
    assert invoke("down", "a", "-y").exit_code == 0  # doing what the hint says does it
    assert not state.exists("gptoss-a")
