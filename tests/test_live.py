"""`up`/`serve` watch the node: phases from the job's log, a failed setup/job/engine/replica ending the
command at once with the cause and the log tail, and smoke deciding "Ready". Through the CLI, with a
fake at the SkyPilot seam that plays a node's log and job states, and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time

import pytest
from clitools import invoke, missed_failures_time_out
from fakesky import FakeSky, skypilot_state
from openai_server import API_KEY

from launcher.sky import state, watch


class NodeSky(FakeSky):
    """FakeSky whose job log and job state are a node's, scripted: the lines the node prints, then the job's
    final state (SETTING_UP until every line was handed out). Names SkyPilot does not have still raise
    NotFoundError, as FakeSky (and the real seam) do.

    `hang`: the log stream stays open after the lines (a stuck connection), so only the job state tells.
    `after_lines`: called once every line was handed out (e.g. the engine starts answering).
    `services`: the service's (state, replicas) per poll, as FakeSky.service_script; `on_ready`: called
    the first time the service is READY (its load balancer answers). `replica_lines`: each replica's log."""

    def __init__(self, endpoint, lines=(), final=None, hang=False, after_lines=None, services=(),
                 replica_lines=None, on_ready=None):
        super().__init__(endpoint)
        if final is not None:
            skypilot_state("job", final)  # a state SkyPilot does not have cannot be scripted
        self.lines, self.final, self.hang, self.after_lines = list(lines), final, hang, after_lines
        self.printed = threading.Event()
        self.release = threading.Event()  # ends a hanging stream at teardown
        if services:
            self.service_script = list(services)
        self.on_ready = on_ready
        self.replica_lines = replica_lines or {}

    def job_status(self, cluster_name, job_id=None):
        super().job_status(cluster_name, job_id)  # NotFoundError for a cluster SkyPilot does not have
        if not self.printed.is_set():
            return "SETTING_UP"
        return self.final or "RUNNING"

    def tail_logs(self, cluster_name, job_id=None, *, follow=True, tail=0):
        super().tail_logs(cluster_name, job_id, follow=False)  # NotFoundError as above
        if not follow:
            return iter(self.lines[-tail:] if tail else self.lines)

        def stream():
            yield from self.lines
            if self.after_lines:
                self.after_lines()
            self.printed.set()
            if self.hang or self.final is None:
                self.release.wait(60)
        return stream()

    def services(self, names=None):
        found = super().services(names)
        if self.on_ready and any(s["status"] == "READY" for s in found):
            self.on_ready()
            self.on_ready = None
        return found

    def serve_logs(self, service_name, replica_id, *, follow=True, tail=0):
        super().serve_logs(service_name, replica_id, follow=False)  # NotFoundError with no such service
        lines = self.replica_lines.get(replica_id, [])
        if not follow:
            return iter(lines[-tail:] if tail else lines)

        def stream():
            yield from lines
            self.release.wait(60)
        return stream()


@pytest.fixture
def fast(monkeypatch):
    """Short poll intervals, so a test takes a fraction of a second per poll (the logic is the same)."""
    monkeypatch.setattr(watch, "POLL_S", 0.1)
    monkeypatch.setattr(watch, "DRAIN_S", 0.5)
    missed_failures_time_out(monkeypatch)


@pytest.fixture
def node(seeded, server, monkeypatch):
    """Build a NodeSky, put it at the seam, and end its hanging streams afterwards."""
    made = []
    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)  # the local server's key

    def make(answers=True, **kwargs):
        """`answers`: the engine answers once its log is printed (else /health stays 503)."""
        kwargs.setdefault("endpoint", server.url.removeprefix("http://"))
        server.config.faults.add("loading")
        if answers:
            kwargs.setdefault("after_lines", lambda: server.config.faults.discard("loading"))
        fake = NodeSky(**kwargs).install(monkeypatch)
        made.append(fake)
        return fake
    yield make
    for fake in made:
        fake.release.set()


def marker(name, at, code=None, prefix="(task, pid=4242) "):
    return f"{prefix}gptoss-sky phase {name} {at}" + (f" {code}" if code is not None else "")


def node_log(t0, upto="ready"):
    """A node's log as SkyPilot shows it: setup and run prefixes, engine chatter between markers."""
    setup, run = "(setup pid=2171) ", "(task, pid=4242) "
    lines = [marker("install", t0 + 10, prefix=setup), setup + "Installed 120 packages in 41s",
             marker("download", t0 + 60, prefix=setup), setup + "Fetching 15 files: 100%",
             marker("setup_done", t0 + 300, prefix=setup), marker("engine_start", t0 + 301, prefix=run),
             run + "INFO Starting vLLM API server", marker("load", t0 + 320, prefix=run),
             marker("compile", t0 + 380, prefix=run), marker("graphs", t0 + 440, prefix=run),
             marker("ready", t0 + 470, prefix=run)]
    names = [ln.split("gptoss-sky phase ")[1].split()[0] if "gptoss-sky phase" in ln else None for ln in lines]
    return lines[:names.index(upto) + 1] if upto in names else lines


def test_up_json_carries_the_node_phases_with_their_timestamps_and_status_keeps_them(node, server):
    t0 = int(time.time()) + 5  # the node's clock, a little ahead of ours
    node(lines=node_log(t0))  # /health answers 503 until the node's log says ready
    result = invoke("up", "20b", "-y", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    got = [(p["name"], p["start"]) for p in doc["phases"]]
    assert [n for n, _ in got] == ["provision", "install", "download", "start", "load", "compile", "graphs",
                                   "answering", "smoke"]
    starts = dict(got)
    assert (starts["install"], starts["download"], starts["start"], starts["load"], starts["compile"],
            starts["graphs"], starts["answering"]) == (t0 + 10, t0 + 60, t0 + 300, t0 + 320, t0 + 380, t0 + 440,
                                                       t0 + 470)
    seconds = {p["name"]: p["seconds"] for p in doc["phases"]}
    assert (seconds["install"], seconds["download"], seconds["load"]) == (50, 240, 60)
    assert all(p["end"] is not None for p in doc["phases"])  # the launch is over: every phase closed
    assert doc["ok"] is True and doc["smoke"]["ok"] is True
    # Progress went to stderr as plain lines (not a terminal), one per phase
    assert "gptoss-20b: downloading weights" in result.stderr
    status = json.loads(invoke("status", "--json").stdout)
    assert status[0]["phases"] == doc["phases"]


def _assert_failed(result, cause, lines):
    """Ended by `cause` (not by the wait running out: see missed_failures_time_out), with the log tail."""
    assert result.exit_code == 1, result.stdout + result.stderr
    assert cause in result.stderr and not result.stderr.startswith("Traceback")
    assert "\nTraceback" not in result.stderr  # ours; the node's own one is indented in the log tail
    assert "gptoss-sky down gptoss-20b" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and cause in doc["cause"]
    assert doc["log_tail"] == [ln for ln in lines][-20:]
    for line in lines[-20:]:
        assert line in result.stderr
    return doc


def test_a_failed_setup_ends_up_at_once_with_the_cause_and_the_last_20_lines(node, fast):
    t0 = int(time.time())
    lines = [marker("install", t0, prefix="(setup pid=9) ")] + [f"(setup pid=9) pip: line {i}" for i in range(30)]
    lines.append("(setup pid=9) ERROR: No matching distribution found for vllm==9.9.9")
    node(lines=lines, final="FAILED_SETUP", answers=False)
    result = invoke("up", "20b", "-y", "--json")
    doc = _assert_failed(result, "setup failed on the node (job FAILED_SETUP)",
                              [ln for ln in lines])
    assert "pip: line 10" not in "\n".join(doc["log_tail"])  # only the last 20
    assert [p["name"] for p in doc["phases"]] == ["provision", "install"]
    record = state.load("gptoss-20b")
    assert record.state == "failed" and [p["name"] for p in record.phases] == ["provision", "install"]


def test_a_crashing_engine_ends_up_at_once_even_while_the_job_still_runs(node, fast):
    t0 = int(time.time())
    lines = node_log(t0, upto="load") + ["(task, pid=4242) torch.OutOfMemoryError: CUDA out of memory",
                                         marker("engine_exit", t0 + 400, 1)]
    node(lines=lines, final=None, hang=True, answers=False)  # job RUNNING, log stream open: only the marker tells
    result = invoke("up", "20b", "-y", "--json")
    doc = _assert_failed(result, "the engine exited with code 1", lines)
    assert "CUDA out of memory" in doc["log_tail"][-2]


def test_a_failed_job_with_a_stuck_log_stream_is_seen_within_30_s_at_the_real_poll_interval(node):
    lines = ["(task, pid=4242) Traceback (most recent call last):", "(task, pid=4242) RuntimeError: boom"]
    node(lines=lines, final="FAILED", hang=True, answers=False)
    started = time.monotonic()
    result = invoke("up", "20b", "-y", "--json")
    elapsed = time.monotonic() - started
    _assert_failed(result, "the job failed (FAILED)", lines)
    assert elapsed < 30, f"took {elapsed:.1f} s"  # the point: a few 5-s polls, not the log stream's end


def test_a_job_that_ends_before_the_model_answers_ends_the_wait(node, fast):
    lines = [marker("engine_start", int(time.time())), "(task, pid=4242) engine stopped"]
    node(lines=lines, final="SUCCEEDED", answers=False)
    result = invoke("up", "20b", "-y", "--json")
    _assert_failed(result, "the job ended (SUCCEEDED) before the model answered", lines)


def _serve_failed(result, cause):
    assert result.exit_code == 1, result.stdout + result.stderr
    assert cause in result.stderr and "gptoss-sky down gptoss-svc-20b" in result.stderr
    doc = json.loads(result.stdout)
    assert cause in doc["cause"] and doc["ok"] is False
    return doc


def test_a_failed_service_controller_ends_serve_at_once(node, fast):
    node(services=[("CONTROLLER_INIT", []), ("CONTROLLER_FAILED", [])])
    result = invoke("serve", "20b", "-y", "--json")
    _serve_failed(result, "the service controller failed (CONTROLLER_FAILED)")
    assert state.load("gptoss-svc-20b").state == "failed"


def test_no_replica_left_after_replicas_failed_ends_serve_with_the_replica_log(node, fast):
    t0 = int(time.time())
    replica_log = [marker("install", t0), marker("download", t0 + 5), "huggingface_hub.errors: 403 Forbidden"]
    node(services=[("REPLICA_INIT", [(1, "PROVISIONING")]), ("REPLICA_INIT", [(1, "STARTING")]),
                   ("REPLICA_INIT", [(1, "STARTING")]), ("NO_REPLICA", [])],
         replica_lines={1: replica_log})
    result = invoke("serve", "20b", "-y", "--json")
    doc = _serve_failed(result, "no replica is left (NO_REPLICA)")
    assert "403 Forbidden" in result.stderr and any("403 Forbidden" in ln for ln in doc["log_tail"])
    replica_phases = [(p["name"], p.get("replica")) for p in doc["phases"] if p.get("replica")]
    assert replica_phases == [("provision", 1), ("install", 1), ("download", 1)]


def test_a_failed_replica_ends_serve_with_its_own_log(node, fast):
    node(services=[("REPLICA_INIT", [(1, "STARTING"), (2, "STARTING")]),
                   ("REPLICA_INIT", [(1, "STARTING"), (2, "FAILED")])],
         replica_lines={1: ["replica one is fine"], 2: ["bash: vllm: command not found"]})
    result = invoke("serve", "20b", "-y", "--json")
    doc = _serve_failed(result, "replica 2 is FAILED")
    assert doc["log_tail"] == ["bash: vllm: command not found"]


def test_serve_shows_each_replicas_phases_and_smokes_the_service(node, server, fast):
    t0 = int(time.time()) + 2
    node(services=[("REPLICA_INIT", [(1, "PROVISIONING"), (2, "PROVISIONING")]),
                   ("REPLICA_INIT", [(1, "STARTING"), (2, "STARTING")]),
                   ("REPLICA_INIT", [(1, "STARTING"), (2, "STARTING")]),
                   ("READY", [(1, "READY"), (2, "STARTING")])],
         on_ready=lambda: server.config.faults.discard("loading"),  # the load balancer answers
         replica_lines={1: node_log(t0), 2: node_log(t0 + 30, upto="download")})
    result = invoke("serve", "20b", "-y", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    top = [p["name"] for p in doc["phases"] if "replica" not in p]
    assert top == ["controller", "replicas", "answering", "smoke"]
    one = {p["name"]: p["start"] for p in doc["phases"] if p.get("replica") == 1}
    assert one["download"] == t0 + 60 and one["answering"] == t0 + 470
    two = [p["name"] for p in doc["phases"] if p.get("replica") == 2]
    assert two == ["provision", "install", "download"]
    assert "gptoss-svc-20b replica 2: downloading weights" in result.stderr


def test_a_failed_smoke_is_not_ready_exits_1_and_says_how_to_remove_the_deployment(node, server, fast):
    node(lines=node_log(int(time.time())))
    server.config.faults.add("raw_tool_json")
    result = invoke("up", "20b", "-y")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Ready" not in result.stdout and "Ready" not in result.stderr
    assert "FAIL" in result.stdout and "tool" in result.stdout  # the report, check by check
    assert "Smoke test failed" in result.stderr and "gptoss-sky down gptoss-20b" in result.stderr
    assert state.load("gptoss-20b").state == "up"  # it stays up (and is removable)


def test_a_passing_smoke_prints_the_report_then_ready(node, server, fast):
    node(lines=node_log(int(time.time())))
    result = invoke("up", "20b", "-y")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Ready" in result.stdout and result.stdout.index("OK") < result.stdout.index("Ready")
    assert "Time: provisioning" in result.stderr


def test_no_smoke_is_ready_without_a_report(node, server, fast):
    node(lines=node_log(int(time.time())))
    result = invoke("up", "20b", "-y", "--no-smoke", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert "smoke" not in doc and doc["ok"] is True and doc["phases"][-1]["name"] == "answering"


def test_a_busy_api_server_is_asked_again_but_a_gone_cluster_ends_the_wait(node, fast):
    from launcher.errors import NotFoundError, SkyError

    fake = node(lines=[marker("install", int(time.time()))], final="FAILED_SETUP", answers=False)
    answers = [SkyError("reading the job status: API server busy"), None]
    real = fake.job_status

    def job_status(name, job_id=None):
        if answers:
            if (answer := answers.pop(0)) is not None:
                raise answer
        return real(name, job_id)
    fake.job_status = job_status
    result = invoke("up", "20b", "-y", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["cause"].startswith("setup failed")

    state.remove("gptoss-20b")
    fake = node(lines=[], final=None, hang=True, answers=False)
    fake.job_status = lambda name, job_id=None: (_ for _ in ()).throw(NotFoundError("cluster gone"))
    result = invoke("up", "20b", "-y", "--name", "gone")
    assert result.exit_code == 1
    assert "cluster gone" in result.stderr and "gptoss-sky down gptoss-gone" in result.stderr


def test_on_a_terminal_the_view_is_a_rich_live_of_phases(node, fast, monkeypatch):
    import io

    from rich.console import Console

    from launcher.cli import launch_view

    screen = io.StringIO()
    monkeypatch.setattr(launch_view, "stderr", Console(file=screen, force_terminal=True, width=100))
    node(lines=node_log(int(time.time())))
    result = invoke("up", "20b", "-y", "--no-smoke")
    assert result.exit_code == 0, result.stdout + result.stderr
    shown = screen.getvalue()
    assert "\x1b[" in shown  # drawn with cursor moves, not printed line by line
    for label in ("provisioning", "installing the engine", "downloading weights", "capturing CUDA graphs",
                  "answering"):
        assert label in shown
    assert "✓" in shown and "gptoss-20b" in shown


def test_json_failure_document_of_bad_input_is_the_error_alone(node, fast):
    node(lines=node_log(int(time.time())))
    assert invoke("up", "20b", "-y", "--no-smoke", "--json").exit_code == 0
    again = invoke("up", "20b", "-y", "--no-smoke", "--json")  # the name is taken: the user must change it
    assert again.exit_code == 2 and "already" in again.stderr
    document = json.loads(again.stdout)  # no launch document (nothing launched): the error and its code
    assert document["exit_code"] == 2 and "already" in document["error"] and set(document) == {"error", "exit_code"}


def test_the_record_has_the_phases_while_the_launch_is_still_running(node, fast):
    """`status` mid-launch shows how far it got: the record is saved at every new phase."""
    from launcher import lifecycle
    from launcher.node import render
    from launcher.plan import catalog

    t0 = int(time.time())
    fake = node(lines=node_log(t0, upto="download"), final="FAILED_SETUP", answers=False)
    cat = catalog.load()
    deployment = lifecycle.deployment_for(
        "gptoss-mid", (render.recipes_mod.build(cat, cat.model("20b"), cat.gpu("L4"), 1),), service=False)
    seen = []
    launch = fake.launch

    def launching(*args, **kwargs):  # while SkyPilot provisions (minutes), the record says so
        seen.append(("provisioning", [p["name"] for p in state.load("gptoss-mid").phases]))
        return launch(*args, **kwargs)
    fake.launch = launching

    def observer(w, event):
        if event == "phase" and w.timeline.current.name == "download":
            seen.append(lifecycle.status(fake, ["gptoss-mid"])[0])
    with pytest.raises(Exception, match="setup failed"):
        lifecycle.launch(cat, fake, cat.model("20b"), deployment, progress=lambda m: None, observer=observer)
    assert seen[0] == ("provisioning", ["provision"])
    row = seen[1]
    assert [p["name"] for p in row["phases"]] == ["provision", "install", "download"]
    assert row["phases"][-1]["end"] is None and row["phases"][1]["start"] == t0 + 10


# --- the same through the sky helper's contract-checked FakeSky (states are SkyPilot's own enums) ------

@pytest.fixture
def fakesky(seeded, server, monkeypatch, fast):
    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)
    server.config.faults.add("loading")  # the engine never answers: only the node's state can end the wait
    return FakeSky(server.url.removeprefix("http://")).install(monkeypatch)


def test_fakesky_failed_setup_ends_up_with_the_cause_and_log(fakesky):
    t0 = int(time.time())
    log = [marker("install", t0, prefix="(setup pid=7) ")] + [f"(setup pid=7) line {i}" for i in range(25)]
    fakesky.job_script = [("PENDING", []), ("SETTING_UP", log[:5]), ("FAILED_SETUP", log[5:])]
    result = invoke("up", "20b", "-y", "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["cause"] == "setup failed on the node (job FAILED_SETUP)" and doc["log_tail"] == log[-20:]


def test_fakesky_crashing_engine_ends_up(fakesky):
    t0 = int(time.time())
    fakesky.job_script = [("SETTING_UP", node_log(t0, upto="setup_done")),
                          ("RUNNING", [marker("engine_start", t0 + 1), "RuntimeError: no kernel image",
                                       marker("engine_exit", t0 + 2, 1)]),
                          ("FAILED", [])]
    result = invoke("up", "20b", "-y", "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["cause"] in ("the engine exited with code 1", "the job failed (FAILED)")
    assert "RuntimeError: no kernel image" in doc["log_tail"]


@pytest.mark.parametrize("script, cause", [
    ([("CONTROLLER_INIT", []), ("CONTROLLER_FAILED", [])], "the service controller failed (CONTROLLER_FAILED)"),
    ([("CONTROLLER_INIT", []), ("REPLICA_INIT", [(1, "STARTING")]), ("NO_REPLICA", [])],
     "no replica is left (NO_REPLICA)"),
    ([("REPLICA_INIT", [(1, "PROVISIONING")]), ("FAILED", [(1, "FAILED_PROVISION")])],
     "replica 1 is FAILED_PROVISION"),
])
def test_fakesky_service_terminal_states_end_serve_at_once(fakesky, script, cause):
    fakesky.service_script = script
    result = invoke("serve", "20b", "-y", "--json")
    _serve_failed(result, cause)
