"""Watching a launch: tail the node's log, follow the job's or service's state, and stop at the first
sign of failure instead of waiting out the timeout.

The log is read through the SkyPilot seam (`SkyClient.tail_logs` / `serve_logs`) in daemon threads that
only push lines into a queue; all decisions happen in the caller's thread. What the user sees is a
`Watch` (phases, per-replica phases, the last log lines) handed to an observer callback on every change.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from launcher import phases as phases_mod
from launcher.errors import EndpointError, LaunchFailedError, NotFoundError, SkyError
from launcher.sky import skyapi
from launcher.sky.seam import SkyClient

POLL_S = 5.0  # how often job/service state and the endpoint are asked: failures show within this
TAIL_LINES = 20  # log lines kept, and shown when a launch fails
DRAIN_S = 3.0  # after a failure, how long the log tail may take to deliver its last lines

# The cause a failed launch reports for a failed state. Which states count as failed is SkyPilot's
# (skyapi.status_names()); one without words here is reported by its name.
JOB_FAILURES = {"FAILED_SETUP": "setup failed on the node (job FAILED_SETUP)",
                "FAILED": "the job failed (FAILED)",
                "FAILED_DRIVER": "the job's driver failed (FAILED_DRIVER)"}
SERVICE_FAILURES = {"CONTROLLER_FAILED": "the service controller failed (CONTROLLER_FAILED)",
                    "FAILED": "the service's replicas failed and none is ready (FAILED)",
                    "FAILED_CLEANUP": "the service failed and could not be cleaned up (FAILED_CLEANUP)"}

Observer = Callable[["Watch", str], None]


@dataclass
class Replica:
    id: int
    status: str | None = None
    timeline: phases_mod.Timeline = field(default_factory=phases_mod.Timeline)
    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))


class Watch:
    """What a launch has shown so far. Mutated by the launching thread; read by the view's refresh."""

    def __init__(self, name: str, kind: str, observer: Observer | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name, self.kind = name, kind
        self.clock = clock
        self.started = clock()
        self.timeline = phases_mod.Timeline()
        self.replicas: dict[int, Replica] = {}
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.status: str | None = None
        self.note: str | None = None
        self.lock = threading.Lock()
        self._observer = observer

    def _tell(self, event: str) -> None:
        if self._observer is not None:
            self._observer(self, event)

    def begin(self, phase: str, at: float | None = None) -> None:
        with self.lock:
            began = self.timeline.begin(phase, self.clock() if at is None else at)
        if began:
            self._tell("phase")

    def finish(self) -> None:
        with self.lock:
            self.timeline.finish(self.clock())
            for replica in self.replicas.values():
                replica.timeline.finish(self.clock())
        self._tell("phase")

    def line(self, text: str, replica: int | None = None) -> phases_mod.Marker | None:
        """One log line: kept for the tail, and its phase marker applied."""
        text = phases_mod.clean(text)
        with self.lock:
            if replica is None:
                self.lines.append(text)
                before = len(self.timeline.phases)
                marker = self.timeline.feed(text)
                changed = len(self.timeline.phases) != before
            else:
                r = self.replicas.setdefault(replica, Replica(replica))
                r.lines.append(text)
                self.lines.append(f"[replica {replica}] {text}")
                before = len(r.timeline.phases)
                marker = r.timeline.feed(text)
                changed = len(r.timeline.phases) != before
        self._tell("phase" if changed else "line")
        return marker

    def set_status(self, status: str | None) -> None:
        if status != self.status:
            self.status = status
            self._tell("status")

    def set_note(self, note: str | None) -> None:
        if note != self.note:
            self.note = note
            self._tell("note")

    def replica_status(self, replica_id: int, status: str) -> None:
        with self.lock:
            replica = self.replicas.setdefault(replica_id, Replica(replica_id))
            changed = replica.status != status
            replica.status = status
            began = replica.timeline.begin("provision", self.clock())
            if status == skyapi.status_names().replica_ready:
                began = replica.timeline.begin("answering", self.clock()) or began
        if changed or began:
            self._tell("replica")

    def phases(self) -> list[dict[str, Any]]:
        """Every phase with start, end and seconds; replicas' phases carry their `replica` id."""
        now = self.clock()
        with self.lock:
            out = self.timeline.to_list(now)
            for rid in sorted(self.replicas):
                out += self.replicas[rid].timeline.to_list(now, replica=rid)
        return out


def _tail(open_lines: Callable[[], Iterable[str]], events: queue.Queue, key: Any) -> threading.Thread:
    """Read a log in a daemon thread; its lines, its end or its error arrive as events."""
    def run() -> None:
        try:
            for line in open_lines():
                events.put((key, "line", line))
            events.put((key, "end", None))
        except Exception as exc:  # the seam raises SkyError; anything else still must not kill the wait
            events.put((key, "error", exc))

    thread = threading.Thread(target=run, name=f"gptoss-sky-tail-{key}", daemon=True)
    thread.start()
    return thread


def _failure(watch: Watch, cause: str, lines: list[str]) -> LaunchFailedError:
    watch.finish()
    watch.set_note(cause)
    return LaunchFailedError(cause, cause=cause, log_tail=lines[-TAIL_LINES:], phases=watch.phases())


def _log_end(read: Callable[[], Iterable[str]]) -> list[str]:
    """The last lines of a log, asked once when a failure's own stream gave none; [] if that fails too."""
    try:
        return [phases_mod.clean(line) for line in read()]
    except Exception:  # noqa: BLE001 - the cause matters more than a missing tail
        return []


def _drain(events: queue.Queue, watch: Watch, until_end_of: Any, seconds: float) -> None:
    """Give a tail a moment to deliver the lines before a failure (the job's end closes it)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            key, kind, payload = events.get(timeout=left)
        except queue.Empty:
            return
        if kind == "line":
            watch.line(payload, key)
        elif key == until_end_of:
            return


_UNANSWERED = object()


class _Asking:
    """A state poll that rides out a few failed requests (a busy API server) but not a gone cluster."""

    def __init__(self, tries: int = 3) -> None:
        self.tries, self.failed = tries, 0

    def __call__(self, ask: Callable[[], Any], watch: Watch) -> Any:
        try:
            answer = ask()
        except NotFoundError:
            raise
        except SkyError as exc:
            self.failed += 1
            if self.failed >= self.tries:
                raise
            watch.set_note(f"SkyPilot did not answer ({exc}); asking again")
            return _UNANSWERED
        self.failed = 0
        return answer


def _drain_ready(events: queue.Queue, watch: Watch) -> None:
    """Apply the lines already received (the markers before `ready`), without waiting for more."""
    while True:
        try:
            key, kind, payload = events.get_nowait()
        except queue.Empty:
            return
        if kind == "line":
            watch.line(payload, key)


class _Follow:
    """The one event loop both watches run: log lines (and their phase markers) as they come, SkyPilot
    asked every `poll` seconds, the first sign of failure raised with the log tail that explains it.

    A subclass says what differs: which logs there are (`follow_log`, `last_lines`), what to ask SkyPilot
    (`ask`) and how to read its answer (`settle`). Logs are keyed None (a cluster's job) or by replica id.
    """

    poll_when_a_log_ends = False  # a job's log ends with the job: ask SkyPilot at once

    def __init__(self, client: SkyClient, name: str, watch: Watch, timeout: float, poll: float) -> None:
        self.client, self.name, self.watch, self.timeout, self.poll = client, name, watch, timeout, poll
        self.events: queue.Queue = queue.Queue()
        self.asking = _Asking()
        self.tailed: set[int | None] = set()  # logs ever followed
        self.open: set[int | None] = set()  # logs followed whose end has not arrived

    def follow_log(self, key: int | None) -> Iterable[str]:
        raise NotImplementedError

    def last_lines(self, key: int | None) -> list[str]:
        """The end of the log, asked once when a failure's own stream gave no line."""
        raise NotImplementedError

    def ask(self) -> Any:
        raise NotImplementedError

    def settle(self, answer: Any) -> str | None:
        """Apply one answer to the watch; raise `fail(...)` on a failure. None: ready; else what the
        timeout error says when the deadline has passed."""
        raise NotImplementedError

    def tail(self, key: int | None) -> None:
        self.tailed.add(key)
        self.open.add(key)
        _tail(lambda: self.follow_log(key), self.events, key)

    def fail(self, cause: str, key: int | None = None) -> LaunchFailedError:
        if key in self.open:
            _drain(self.events, self.watch, key, DRAIN_S)
        source = self.watch.replicas.get(key) if key is not None else None
        lines = list(source.lines) if source is not None else list(self.watch.lines)
        if not lines:  # the follow stream gave nothing: ask for the end of the log once
            lines = self.last_lines(key)
        said = phases_mod.engine_failure(lines)
        return _failure(self.watch, f"{cause}: {said}" if said else cause, lines)

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        next_poll = time.monotonic()
        while True:
            try:
                key, kind, payload = self.events.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                pass
            else:
                if kind == "line":
                    marker = self.watch.line(payload, key)
                    if marker is not None and marker.name == "engine_exit":
                        engine = "the engine" if key is None else f"the engine of replica {key}"
                        code = f" with code {marker.code}" if marker.code is not None else ""
                        raise self.fail(f"{engine} exited{code}", key)
                else:
                    self.open.discard(key)
                    if kind == "error":
                        stream = "log stream" if key is None else f"replica {key} log stream"
                        self.watch.set_note(f"{stream} stopped: {payload}")
                    if self.poll_when_a_log_ends:
                        next_poll = time.monotonic()
                if time.monotonic() < next_poll:
                    continue
            answer = self.asking(self.ask, self.watch)
            if answer is _UNANSWERED:
                next_poll = time.monotonic() + self.poll
                continue
            waiting_for = self.settle(answer)
            if waiting_for is None:
                _drain_ready(self.events, self.watch)
                return
            if time.monotonic() >= deadline:
                raise EndpointError(waiting_for)
            next_poll = time.monotonic() + self.poll


class _FollowJob(_Follow):
    """A cluster's launch: the job's log and state, and the endpoint's answer (`probe`: None once it serves)."""

    poll_when_a_log_ends = True

    def __init__(self, client: SkyClient, name: str, job_id: int | None, probe: Callable[[], str | None], watch: Watch,
                 timeout: float, poll: float) -> None:
        super().__init__(client, name, watch, timeout, poll)
        self.job_id, self.probe = job_id, probe
        self.tail(None)

    def follow_log(self, key: int | None) -> Iterable[str]:
        return self.client.tail_logs(self.name, self.job_id, follow=True)

    def last_lines(self, key: int | None) -> list[str]:
        return _log_end(lambda: self.client.tail_logs(self.name, self.job_id, follow=False, tail=TAIL_LINES))

    def ask(self) -> Any:
        return self.client.job_status(self.name, self.job_id)

    def settle(self, answer: Any) -> str | None:
        self.watch.set_status(answer)
        names = skyapi.status_names()
        if answer in names.job_failed:
            raise self.fail(JOB_FAILURES.get(answer, f"the job failed ({answer})"))
        if answer in names.job_ended:
            raise self.fail(f"the job ended ({answer}) before the model answered: the engine stopped")
        note = self.probe()
        if note is None:
            return None
        self.watch.set_note(note)
        return f"{self.name} did not serve the model within {self.timeout:.0f} s: {note}"


class _FollowService(_Follow):
    """A service's launch: its and its replicas' states, each running replica's log."""

    def __init__(self, client: SkyClient, name: str, watch: Watch, timeout: float, poll: float) -> None:
        super().__init__(client, name, watch, timeout, poll)
        self.seen_replica = False

    def follow_log(self, key: int | None) -> Iterable[str]:
        assert key is not None  # a service's logs are its replicas'
        return self.client.serve_logs(self.name, key, follow=True)

    def last_lines(self, key: int | None) -> list[str]:
        if key is None:
            return []
        return _log_end(lambda: self.client.serve_logs(self.name, key, follow=False, tail=TAIL_LINES))

    def ask(self) -> Any:
        return self.client.services([self.name])

    def settle(self, answer: Any) -> str | None:
        service = next((s for s in answer if s.get("name") == self.name), None)
        status = service.get("status") if service else "MISSING"
        self.watch.set_status(status)
        names = skyapi.status_names()
        for replica in (service or {}).get("replicas") or []:
            rid, rstatus = replica.get("id"), str(replica.get("status"))
            if rid is None:
                continue
            self.seen_replica = True
            self.watch.replica_status(rid, rstatus)
            if rstatus in names.replica_failed:
                raise self.fail(f"replica {rid} is {rstatus}", rid)
            if rstatus in names.replica_running and rid not in self.tailed:
                self.tail(rid)
        if status == names.service_ready:
            return None
        if status in names.service_failed:
            raise self.fail(SERVICE_FAILURES.get(status, f"the service failed ({status})"))
        if status == names.service_no_replica and self.seen_replica:
            raise self.fail(f"no replica is left ({status}): the replicas failed")
        if status == "MISSING":
            raise self.fail(f"service {self.name} is gone")
        return f"service {self.name} not READY after {self.timeout:.0f} s (status {status})"


def watch_cluster(client: SkyClient, name: str, job_id: int | None, probe: Callable[[], str | None], watch: Watch,
                  timeout: float, poll: float = POLL_S) -> None:
    """Until `probe` says the model answers (None), or the job/engine fails (LaunchFailedError)."""
    _FollowJob(client, name, job_id, probe, watch, timeout, poll).run()


def watch_service(client: SkyClient, name: str, watch: Watch, timeout: float, poll: float = POLL_S) -> None:
    """Until the service is READY, or it or a replica reaches a failed state (LaunchFailedError)."""
    _FollowService(client, name, watch, timeout, poll).run()
