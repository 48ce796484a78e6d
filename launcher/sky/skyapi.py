"""The one module that imports SkyPilot. Everything gptoss-sky asks of SkyPilot goes through here.

`sky` is imported inside functions (it takes seconds and pulls in cloud SDKs), so commands that never
touch SkyPilot stay fast. SkyPilot exceptions are mapped to SkyError / NoCloudError at this seam, and
SDK request ids are resolved here, so callers get plain values. Offline-safe pieces (YAML validation,
catalog reads, the in-process optimizer) are plain functions; the calls that reach a cloud (launch,
status, down, serve) are methods of `SkyPilotClient`, which implements launcher.sky.seam's `SkyClient`
Protocol; tests use tests/fakesky.py's `FakeSky` in its place.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import functools
import io
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from launcher.errors import (
    ApiServerUnreachableError,
    GptossSkyError,
    NoCloudError,
    NotFoundError,
    RenderError,
    RequestStalledError,
    SkyError,
    UserError,
)
from launcher.sky.seam import OnRequest

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def sky_message(exc: BaseException) -> str:
    """SkyPilot's whole message (every line: the remedy is often on the next one), without colour codes."""
    text = _ANSI.sub("", str(exc)).strip()
    return text or type(exc).__name__


@contextlib.contextmanager
def map_sky_exceptions(action: str) -> Iterator[None]:
    """Re-raise SkyPilot's exceptions as ours, with what we were doing and SkyPilot's message kept whole."""
    try:
        yield
    except GptossSkyError:
        raise
    except Exception as exc:  # the SDK raises many unrelated types; this is the seam that maps them
        import sky.exceptions as sky_exc

        if isinstance(exc, sky_exc.NoCloudAccessError):
            raise NoCloudError(f"{action}: no cloud is enabled in SkyPilot; run `sky check`\n"
                               f"SkyPilot: {sky_message(exc)}") from exc
        if isinstance(exc, sky_exc.ClusterDoesNotExist):
            raise NotFoundError(f"{action}: {sky_message(exc)}") from exc
        if isinstance(exc, (sky_exc.ApiServerConnectionError, sky_exc.ApiServerAuthenticationError)) or (
                isinstance(exc, RuntimeError) and "SKYPILOT_DISABLE_LOCAL_API_SERVER" in str(exc)):
            raise ApiServerUnreachableError(f"{action}: {sky_message(exc)}") from exc
        raise SkyError(f"{action}: {sky_message(exc)}") from exc


class _Stderr(io.TextIOBase):
    """A stream that writes to whatever sys.stderr is at the time (pytest and click swap it)."""

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR = _Stderr()


def _route_sky_output() -> None:
    """Point SkyPilot's logger and console (both bound to stdout at import) at stderr, once per process.

    stdout is gptoss-sky's: results and --json only. The API server auto-start banner, the optimizer
    table and request logs come through these two.
    """
    import logging

    from sky import sky_logging
    from sky.utils import rich_console_utils

    loggers = [logging.getLogger(n) for n in ["sky", *logging.root.manager.loggerDict] if n.startswith("sky")]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, sky_logging.EnvAwareHandler) and handler.stream is not _STDERR:
                with handler.lock or contextlib.nullcontext():  # not setStream: it flushes the old stream,
                    handler.stream = _STDERR  # which pytest or click may already have closed
    console = rich_console_utils.get_console()
    if console.file is not _STDERR:
        console.file = _STDERR


@contextlib.contextmanager
def _sky_call(action: str) -> Iterator[None]:
    """One call across the seam: SkyPilot's output on stderr (never stdout), its errors mapped."""
    with map_sky_exceptions(action):
        _route_sky_output()
        if threading.current_thread() is threading.main_thread():
            with contextlib.redirect_stdout(sys.stderr):  # what the SDK print()s straight to stdout
                yield
        else:  # redirect_stdout is process-wide: a reader thread passes its own output stream instead
            yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """SkyPilot prints spinner payloads on stdout; keep them off ours (stdout is for results/--json)."""
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def task_from_config(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None,
                     envs: Mapping[str, str] | None = None) -> Any:
    """Parse a task/service config with SkyPilot's own schema and parser (offline)."""
    import sky

    try:
        task = sky.Task.from_yaml_config(
            copy.deepcopy(dict(config)),  # from_yaml_config mutates its argument
            env_overrides=list((envs or {}).items()) or None,
            secrets_overrides=list((secrets or {}).items()) or None,
        )
        if task.service is not None:
            sky.serve.validate_service_task(task, pool=False)
    except Exception as exc:  # schema and value errors come as several types
        raise RenderError(f"SkyPilot rejected the YAML for {config.get('name')!r}: {exc}") from exc
    return task


# --- catalog prices (offline-safe) ---------------------------------------------------------------


def real_catalog_path(cloud: str) -> str:
    """Where SkyPilot keeps its cached vms.csv for `cloud` ($SKY_RUNTIME_DIR/.sky/catalogs/v8/...)."""
    from sky.catalog import common

    return common.get_catalog_path(f"{cloud}/vms.csv")


def list_gpu_offers(accelerator_names: Sequence[str], clouds: Sequence[str]) -> list[dict[str, Any]]:
    """Catalog rows for these accelerator spellings on these clouds, read by SkyPilot's own reader.

    Returns plain dicts: cloud, region, instance_type, accelerator_name, accelerator_count, price,
    spot_price (None when the row has no spot offer).
    """
    import math
    import re

    import sky

    pattern = "^(?:" + "|".join(re.escape(n) for n in accelerator_names) + ")$"
    with map_sky_exceptions("reading SkyPilot's catalog"), _quiet():
        found = sky.catalog.list_accelerators(
            gpus_only=True, name_filter=pattern, clouds=list(clouds), case_sensitive=False,
            all_regions=True, require_price=True,
        )
    rows = []
    for infos in found.values():
        for info in infos:
            spot = info.spot_price
            rows.append(dict(
                cloud=str(info.cloud).lower(), region=info.region, instance_type=info.instance_type,
                accelerator_name=info.accelerator_name, accelerator_count=float(info.accelerator_count),
                price=float(info.price),
                spot_price=None if spot is None or (isinstance(spot, float) and math.isnan(spot)) or spot <= 0
                else float(spot),
            ))
    return rows


def enabled_clouds() -> list[str]:
    """Clouds the API server has enabled (lower-case: 'aws', 'kubernetes', 'ssh', ...), asked of the server
    so a team server (`sky api login`) counts, not this machine's own credentials."""
    import sky
    from sky.client import sdk

    with _sky_call("asking the SkyPilot API server for its enabled clouds"):
        return [str(c).lower() for c in sky.get(sdk.enabled_clouds(expand=False))]


def skypilot_version() -> str:
    """The installed SkyPilot client's version."""
    import sky

    return str(sky.__version__)


def api_server_info() -> dict[str, Any]:
    """Where SkyPilot's API server is and how it answers /api/health, without starting one.

    Returns url (password redacted), local (a server this machine starts itself), status (healthy,
    unhealthy = not answering, version_mismatch, needs_auth), server_version, client_version, error."""
    from sky.server import common

    with map_sky_exceptions("asking the SkyPilot API server"), _quiet():
        common.get_server_url.cache_clear()  # SkyPilot caches the URL per process; read today's config
        url = common.get_server_url()
        local = common.is_api_server_local(url)
        info = common.get_api_server_status(url)
    return dict(url=common.redact_url_password(url), local=bool(local), status=str(info.status.value),
                server_version=info.version, client_version=skypilot_version(),
                error=getattr(info, "error", None))


def optimize(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run SkyPilot's optimizer in-process on a task config; the resources it would launch first."""
    import sky
    from sky import optimizer

    task = task_from_config(config, secrets=secrets or {"VLLM_API_KEY": "plan-only"})
    with map_sky_exceptions("optimizing"):
        with sky.Dag() as dag:
            dag.add(task)
        optimizer.Optimizer.optimize(dag, quiet=True)
    best = task.best_resources
    accelerators = best.accelerators or {}
    name, count = next(iter(accelerators.items()))
    return dict(cloud=str(best.cloud).lower(), region=best.region, instance_type=best.instance_type,
                accelerator_name=name, accelerator_count=count, use_spot=best.use_spot,
                price_per_hour=best.get_cost(3600))


def _replica_price(handle: Any) -> float | None:
    """$/hour of one SkyServe replica's cluster, from the handle serve status returns (None without one)."""
    resources = getattr(handle, "launched_resources", None)
    if resources is None:
        return None
    try:
        return float(resources.get_cost(3600)) * getattr(handle, "launched_nodes", 1)
    except (AttributeError, TypeError, ValueError):  # a resources object without a priced instance
        return None


# --- calls that reach a cloud ---------------------------------------------------------------------

SERVE_CONTROLLER_PREFIX = "sky-serve-controller-"  # sky.utils.common.SKY_SERVE_CONTROLLER_PREFIX


@dataclasses.dataclass(frozen=True)
class StatusNames:
    """SkyPilot's state names gptoss-sky decides by, as the plain strings its records carry (`_value`).

    Read from SkyPilot's own enums by `status_names()`, so no module but this one spells them, and a state
    SkyPilot adds to its failed or terminal helpers counts here without a change.
    """

    cluster_up: str
    cluster_stopped: str
    job_failed: frozenset[str]  # terminal and not a clean end: FAILED, FAILED_SETUP, FAILED_DRIVER
    job_ended: frozenset[str]  # terminal without a failure: SUCCEEDED, CANCELLED
    service_ready: str
    service_no_replica: str
    service_broken: frozenset[str]  # ServiceStatus.failed_statuses(): no controller; `serve down` skips them
    service_failed: frozenset[str]  # a launch has failed: service_broken, and FAILED (replicas failed, none ready)
    replica_ready: str
    replica_failed: frozenset[str]  # ReplicaStatus.failed_statuses()
    replica_running: frozenset[str]  # its job exists (STARTING, READY, NOT_READY), so its log can be tailed
    request_active: frozenset[str]  # a SkyPilot request not finished yet: PENDING, WAITING, RUNNING
    request_cancelled: str


@functools.cache
def status_names() -> StatusNames:
    """The names, from SkyPilot's enums (imported on first use: callers have asked SkyPilot already)."""
    from sky.serve.serve_state import ReplicaStatus, ServiceStatus
    from sky.server.requests.requests import RequestStatus
    from sky.skylet.job_lib import JobStatus
    from sky.utils.status_lib import ClusterStatus

    def names(members: Any) -> frozenset[str]:
        return frozenset(m.value for m in members)

    clean_end = names([JobStatus.SUCCEEDED, JobStatus.CANCELLED])
    broken = names(ServiceStatus.failed_statuses())
    return StatusNames(
        cluster_up=ClusterStatus.UP.value,
        cluster_stopped=ClusterStatus.STOPPED.value,
        job_failed=names(s for s in JobStatus if s.is_terminal()) - clean_end,
        job_ended=clean_end,
        service_ready=ServiceStatus.READY.value,
        service_no_replica=ServiceStatus.NO_REPLICA.value,
        service_broken=broken,
        service_failed=broken | {ServiceStatus.FAILED.value},
        replica_ready=ReplicaStatus.READY.value,
        replica_failed=names(ReplicaStatus.failed_statuses()),
        replica_running=names([ReplicaStatus.STARTING, ReplicaStatus.READY, ReplicaStatus.NOT_READY]),
        request_active=names(RequestStatus.active_statuses()),
        request_cancelled=RequestStatus.CANCELLED.value,
    )


def _value(status: Any) -> str | None:
    """An enum member (ClusterStatus, ServiceStatus, ...) or its string, as the plain string."""
    if status is None:
        return None
    return str(getattr(status, "value", status))


def _getter(record: Any) -> Callable[..., Any]:
    return record.get if isinstance(record, dict) else (lambda k, d=None: getattr(record, k, d))


def cluster_from_sky(record: Any) -> dict[str, Any]:
    """One `sky.status` record (a StatusResponse, or its dict) as the plain dict callers use."""
    get = _getter(record)
    handle = get("handle")
    resources = getattr(handle, "launched_resources", None)
    price = None
    if resources is not None:
        with contextlib.suppress(Exception):  # a resource with no catalog price (Kubernetes, SSH)
            price = resources.get_cost(3600) * (getattr(handle, "launched_nodes", 1) or 1)
    return dict(name=get("name"), status=_value(get("status")), launched_at=get("launched_at"),
                cloud=(str(getattr(resources, "cloud", "") or get("cloud") or "").lower() or None),
                region=getattr(resources, "region", None) or get("region"), price_per_hour=price,
                user_hash=get("user_hash"), user_name=get("user_name"))


def service_from_sky(record: Mapping[str, Any]) -> dict[str, Any]:
    """One `sky.serve.status` record (with its replica_info) as the plain dict callers use."""
    replicas = [dict(id=x.get("replica_id"), status=_value(x.get("status")), version=x.get("version"),
                     endpoint=x.get("endpoint"), launched_at=x.get("launched_at"),
                     price_per_hour=_replica_price(x.get("handle")),
                     cloud=(x.get("cloud") or "").lower() or None, region=x.get("region"),
                     is_spot=x.get("is_spot"))
                for x in record.get("replica_info", [])]
    return dict(name=record.get("name"), status=_value(record.get("status")), endpoint=record.get("endpoint"),
                replicas=replicas, uptime=record.get("uptime"), user_hash=record.get("user_hash"),
                user_name=record.get("user_name"))


class _LineQueue(io.TextIOBase):
    """A text stream for SDK calls that write logs to a stream: whole lines go to a queue."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: queue.Queue = queue.Queue()
        self.partial = ""
        self.reader_gone = False

    def write(self, s: str) -> int:
        if self.reader_gone:  # the reader stopped: end the SDK's streaming loop
            raise BrokenPipeError("log reader closed")
        self.partial += s
        *whole, self.partial = self.partial.split("\n")
        for line in whole:
            self.lines.put(line)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _stream_lines(action: str, call: Callable[[io.TextIOBase], Any]) -> Iterator[str]:
    """Run an SDK call that writes to an output stream in a thread; yield its lines as they come.

    Errors are raised (mapped) after the lines already read; closing the iterator ends the stream.
    """
    out = _LineQueue()
    end = object()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with _sky_call(action):
                call(out)
        except BaseException as exc:  # handed to the reading thread
            if not out.reader_gone:
                failure.append(exc)
        finally:
            if out.partial:
                out.lines.put(out.partial)
            out.lines.put(end)

    worker = threading.Thread(target=run, name=f"gptoss-sky {action}", daemon=True)
    worker.start()
    try:
        while True:
            line = out.lines.get()
            if line is end:
                break
            yield line
    finally:
        out.reader_gone = True
    worker.join(timeout=5)
    if failure:
        raise failure[0]


CANCEL_WAIT_S = 20.0  # how long a cancelled request may take to show as CANCELLED
CANCEL_RECHECK_S = 3.0  # cancel again when it still reads active this long after a cancel
KUBE_ANSWER_S = 15.0  # a Kubernetes context that has not answered its node list in this long is not answering
# SkyPilot's retry loop (`retry_until_up`; the SkyServe controller always retries): the line it logs
# before sleeping, e.g. "↺ Retry after 30s  View logs: sky logs --provision sky-serve-controller-…".
_RETRY_LINE = re.compile(r"Retry after \d+s")
# Lines that say why, best first: SkyPilot's specific reasons, then its generic failure lines.
_CAUSE_LINES = (re.compile(r"not supported|unreachable|timed out|quota|capacity|credential|permission|denied|"
                           r"required", re.IGNORECASE),
                re.compile(r"error|failed|no resource", re.IGNORECASE))


class _Stalled(Exception):
    """Raised from the log stream to end stream_and_get when SkyPilot starts retrying for ever."""


class _RequestLog(io.TextIOBase):
    """The request's log on its way to `output`: remembers the last lines, and stops the wait at
    SkyPilot's first "Retry after" (the request would loop there, every 30 s, for ever)."""

    def __init__(self, output: io.TextIOBase) -> None:
        super().__init__()
        self.output = output
        self.partial = ""
        self.recent: collections.deque[str] = collections.deque(maxlen=40)
        self.stalled = False

    def write(self, s: str) -> int:
        text = s
        self.output.write(text)
        self.partial += text
        *whole, self.partial = self.partial.split("\n")
        for line in whole:
            clean = _ANSI.sub("", line).strip()
            if clean:
                self.recent.append(clean)
            if _RETRY_LINE.search(clean):
                self.stalled = True
                raise _Stalled(clean)
        return len(text)

    def flush(self) -> None:
        self.output.flush()

    def isatty(self) -> bool:
        return False

    def cause(self) -> str:
        """The line SkyPilot logged as the reason, the last one that looks like one."""
        lines = [" ".join(x.split()) for x in self.recent if not _RETRY_LINE.search(x)]
        for pattern in _CAUSE_LINES:
            causes = [x for x in lines if pattern.search(x)]
            if causes:
                return causes[-1]
        return (lines or ["SkyPilot logged no reason"])[-1]


def _wait_request(action: str, request_id: Any, output: io.TextIOBase | None,
                  on_request: OnRequest | None) -> Any:
    """Hand the request id out, then stream the request's log and return its result (errors mapped).
    SkyPilot's retry loop ends the wait with RequestStalledError (the request keeps running)."""
    import sky

    if on_request is not None:
        on_request(str(request_id))
    log = _RequestLog(output or _STDERR)
    try:
        with _sky_call(action):
            return sky.stream_and_get(request_id, output_stream=log)
    except SkyError:
        if not log.stalled:
            raise
    raise RequestStalledError(f"{action}: SkyPilot cannot make progress and retries every 30 s: {log.cause()}",
                              request_id=str(request_id), cause=log.cause())


class SkyPilotClient:
    """The seam where SkyPilot talks to clouds, through its API server (local or a team's): the real
    launcher.sky.seam.SkyClient.

    Tests substitute tests/fakesky.py's FakeSky, whose answers are checked against a real API server.
    Guarantees (fresh machine included): `clusters(names)` lists only clusters that exist, of every user;
    `services()` is [] when no serve controller exists; `down`/`serve_down`/`endpoint`/`job_status`/logs
    of a name SkyPilot does not have raise NotFoundError; SkyPilot's output never reaches stdout.
    """

    def _task(self, config: Mapping[str, Any], secrets: Mapping[str, str], envs: Mapping[str, str]) -> Any:
        return task_from_config(config, secrets=secrets, envs=envs)

    def launch(self, config: Mapping[str, Any], cluster_name: str, *, secrets: Mapping[str, str],
               envs: Mapping[str, str], idle_minutes: int | None, down: bool,
               output: io.TextIOBase | None = None, on_request: OnRequest | None = None) -> int | None:
        """Provision and set up the cluster and submit its job; returns the job id. SkyPilot's
        provisioning log goes to `output` (a text stream; stderr by default), never stdout.

        `on_request` gets SkyPilot's request id as soon as the API server has it, before any waiting:
        the request runs on the server whatever happens to this process (see `cancel_request`)."""
        import sky

        task = self._task(config, secrets, envs)
        action = f"launching {cluster_name}"
        with _sky_call(action):
            request = sky.launch(task, cluster_name=cluster_name, idle_minutes_to_autostop=idle_minutes,
                                 down=down)
        job_id, _ = _wait_request(action, request, output, on_request)
        return job_id

    def endpoint(self, cluster_name: str, port: int) -> str:
        import sky

        try:
            with _sky_call(f"getting the endpoint of {cluster_name}"):
                endpoints = sky.get(sky.endpoints(cluster_name, port))
        except SkyError as exc:  # SkyPilot says "not UP" both for a missing and for a stopped cluster
            if not isinstance(exc, NotFoundError) and not self.clusters([cluster_name]):
                raise NotFoundError(str(exc)) from exc
            raise
        value = endpoints.get(port) or endpoints.get(str(port))  # type: ignore[call-overload]
        if not value:
            raise SkyError(f"{cluster_name} exposes no endpoint on port {port}")
        return value

    def clusters(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Clusters of every user of the API server (names given: only those that exist), with the
        owner SkyPilot records (user_hash, user_name); compare with `current_user()`."""
        import sky

        with _sky_call("reading cluster status"):
            records = sky.get(sky.status(list(names) if names else None, all_users=True))
        return [cluster_from_sky(r) for r in records]

    def current_user(self) -> dict[str, str | None]:
        """Who this client is to the API server: {user_hash, user_name}, as in cluster/service records."""
        import sky
        from sky import models
        from sky.utils import common_utils

        with _sky_call("asking the SkyPilot API server who we are"):
            user = sky.api_info().user
        if user:  # a team server with authentication decides who we are
            get = _getter(user)
            return {"user_hash": get("id"), "user_name": get("name")}
        return {"user_hash": common_utils.get_user_hash(), "user_name": models.User.get_current_user().name}

    def down(self, cluster_name: str, purge: bool = False) -> None:
        """Tear the cluster down; NotFoundError when SkyPilot has no such cluster (already gone)."""
        import sky

        with _sky_call(f"tearing down {cluster_name}"):
            sky.stream_and_get(sky.down(cluster_name, purge=purge), output_stream=_STDERR)

    def serve_up(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                 envs: Mapping[str, str], output: io.TextIOBase | None = None,
                 on_request: OnRequest | None = None) -> str:
        """Start the service (its controller first); returns the endpoint. `on_request` as in `launch`;
        a controller SkyPilot keeps failing to place raises RequestStalledError, not a wait for ever."""
        import sky

        task = self._task(config, secrets, envs)
        action = f"starting service {service_name}"
        with _sky_call(action):
            request = sky.serve.up(task, service_name)
        _, endpoint = _wait_request(action, request, output, on_request)
        return endpoint

    def serve_update(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                     envs: Mapping[str, str]) -> None:
        import sky
        from sky.serve import serve_utils

        task = self._task(config, secrets, envs)
        with _sky_call(f"updating service {service_name}"):
            sky.stream_and_get(sky.serve.update(task, service_name, mode=serve_utils.UpdateMode.ROLLING),
                               output_stream=_STDERR)

    def _serve_controller(self) -> dict[str, Any] | None:
        """The API server's SkyServe controller cluster when it is running (UP or INIT), else None.

        SkyPilot's serve status/down raise ("No live services.", or a network error) when there is no
        controller, which is every machine before its first service: that means no services.
        """
        import sky

        with _sky_call("looking for the SkyServe controller"):
            records = sky.get(sky.status([SERVE_CONTROLLER_PREFIX + "*"], all_users=True))
        stopped = status_names().cluster_stopped
        for r in records:
            get = _getter(r)
            if str(get("name", "")).startswith(SERVE_CONTROLLER_PREFIX) and _value(get("status")) != stopped:
                return {"name": get("name"), "status": _value(get("status"))}
        return None

    def services(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Services of every user (names given: only those that exist); [] when no controller runs."""
        import sky

        if self._serve_controller() is None:
            return []
        with _sky_call("reading service status"):
            records = sky.get(sky.serve.status(list(names) if names else None))
        return [service_from_sky(r) for r in records]

    def serve_down(self, service_name: str, purge: bool = False) -> None:
        """Tear the service down; NotFoundError when SkyPilot has no such service (or no controller).

        SkyPilot's own `serve down` silently skips unknown names and services in a failed state; both
        are answered here instead of reporting a teardown that did not happen.
        """
        import sky

        found = [s for s in self.services([service_name]) if s["name"] == service_name]
        if not found:
            raise NotFoundError(f"tearing down service {service_name}: SkyPilot has no service named "
                                f"{service_name!r}")
        if found[0]["status"] in status_names().service_broken and not purge:
            raise SkyError(f"tearing down service {service_name}: it is {found[0]['status']}, and SkyPilot "
                           "skips failed services (their replicas may be left running); run again with "
                           "--purge to remove it anyway")
        with _sky_call(f"tearing down service {service_name}"):
            sky.stream_and_get(sky.serve.down(service_name, purge=purge), output_stream=_STDERR)

    # --- the node's progress (contract shared by the live launch view and `logs`) -------------------

    def job_status(self, cluster_name: str, job_id: int | None = None) -> str | None:
        """SkyPilot's state of the cluster's job (latest when job_id is None), e.g. PENDING, SETTING_UP,
        RUNNING, SUCCEEDED, FAILED, FAILED_SETUP, FAILED_DRIVER, CANCELLED; None when there is no job yet.
        NotFoundError when the cluster does not exist."""
        import sky

        with _sky_call(f"reading the job status of {cluster_name}"):
            statuses = sky.get(sky.job_status(cluster_name, None if job_id is None else [job_id]))
        if job_id is None:
            return _value(next(iter(statuses.values()), None)) if statuses else None
        return _value(statuses.get(job_id, statuses.get(str(job_id))))  # type: ignore[call-overload]

    def tail_logs(self, cluster_name: str, job_id: int | None = None, *, follow: bool = True,
                  tail: int = 0) -> Iterator[str]:
        """Lines of the cluster job's log (setup and run output, phase markers included), as they come.
        Ends when the job ends (follow) or at the current end of the log (follow=False).
        NotFoundError (after any lines) when the cluster does not exist."""
        from sky.client import sdk

        return _stream_lines(f"reading the log of {cluster_name}", lambda out: sdk.tail_logs(
            cluster_name, job_id, follow=follow, tail=tail, output_stream=out))

    def serve_logs(self, service_name: str, replica_id: int, *, follow: bool = True,
                   tail: int = 0) -> Iterator[str]:
        """Lines of one SkyServe replica's log, as `tail_logs`. NotFoundError when there is no such
        service (SkyPilot itself reports nothing for follow=False)."""
        import sky

        if not any(s["name"] == service_name for s in self.services([service_name])):
            raise NotFoundError(f"reading the log of {service_name} replica {replica_id}: SkyPilot has no "
                                f"service named {service_name!r}")
        return _stream_lines(f"reading the log of {service_name} replica {replica_id}", lambda out: (
            sky.serve.tail_logs(service_name, target="replica", replica_id=replica_id, follow=follow,
                                output_stream=out, tail=tail or None)))

    # --- SkyPilot requests (a launch is one: it runs on the API server, not in this process) ---------

    def request_status(self, request_id: str) -> str | None:
        """SkyPilot's state of a request: PENDING, WAITING, RUNNING (status_names().request_active), SUCCEEDED,
        FAILED, CANCELLED; None when the API server does not know the id (e.g. another server, or purged)."""
        from sky.client import sdk

        with _sky_call("asking the SkyPilot API server about a request"):
            found = sdk.api_status([request_id], all_status=True)
        for payload in found:
            if payload.request_id == request_id or payload.request_id.startswith(request_id):
                return str(payload.status)
        return None

    def cancel_request(self, request_id: str) -> str | None:
        """Cancel one of this user's requests (`sky api cancel ID`) when it is still active; returns its
        state afterwards as `request_status` does (CANCELLED, or how it had already ended; None: unknown)."""
        import time

        import sky
        from sky.client import sdk

        status = self.request_status(request_id)
        if status not in status_names().request_active:
            return status
        # SkyPilot 0.14's executor parks a request that raised its retry error as WAITING without
        # looking at its state first, so a cancel that lands just before that is overwritten and
        # the request retries on. Cancel again while it still reads active, until the deadline.
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            with _sky_call(f"cancelling SkyPilot request {request_id}"):
                sky.get(sdk.api_cancel([request_id], silent=True))
            recheck = time.monotonic() + CANCEL_RECHECK_S
            while time.monotonic() < min(recheck, deadline):
                time.sleep(0.5)
                status = self.request_status(request_id)
                if status not in status_names().request_active:
                    return status
            if time.monotonic() >= deadline:
                return status

    def kubernetes_unreachable(self, context: str | None) -> str | None:
        """Why the API server cannot reach this Kubernetes context (None = its default one), in
        SkyPilot's words; None when it answers. One request, waited on for KUBE_ANSWER_S at most: a context
        whose server accepts and never answers held it for 63 s on a local API server, so a context that
        has not answered by then is said to be not answering and its request is cancelled."""
        import time

        import sky
        from sky.client import sdk

        what = f"asking Kubernetes context {context or '(default)'} for its nodes"
        try:
            with _sky_call(what):
                request_id = sdk.kubernetes_node_info(context)
            deadline = time.monotonic() + KUBE_ANSWER_S
            while self.request_status(request_id) in status_names().request_active:
                if time.monotonic() >= deadline:
                    with contextlib.suppress(GptossSkyError):
                        self.cancel_request(request_id)
                    return (f"it did not answer the API server's request for its nodes within {KUBE_ANSWER_S:g} s "
                            f"(request {request_id}, cancelled)")
                time.sleep(0.5)
            with _sky_call(what):
                sky.get(request_id)
        except ApiServerUnreachableError:
            raise
        except SkyError as exc:
            return str(exc)
        return None

    def serve_controller_unplaceable(self) -> str | None:
        """Why SkyPilot cannot place a SkyServe controller for a new service, in its own words (each enabled
        infra's reason from SkyPilot's table of unsupported features); None when it can: a controller already
        runs, some enabled infra can host one, or this client's SkyPilot config runs controllers inside the
        API server (serve.controller.consolidation_mode). Asked before serve.up, which would retry every
        30 s for ever. Two bounded requests; no enabled infra at all is said as such."""
        from sky import skypilot_config

        with contextlib.suppress(Exception):
            if skypilot_config.get_nested(("serve", "controller", "consolidation_mode"), False):
                return None
        if self._serve_controller() is not None:
            return None
        enabled = self.enabled_infra()
        if not enabled:
            return "no infra is enabled on the SkyPilot API server"
        reasons = {infra: missing_feature(infra.split("/")[0], "host_controllers") for infra in enabled}
        if any(reason is None for reason in reasons.values()):
            return None
        return "; ".join(f"{infra}: {' '.join(str(reason).split())}" for infra, reason in reasons.items())

    def enabled_infra(self) -> list[str]:
        """Infra the API server can launch on, lower-case, as SkyPilot names it ('aws', 'kubernetes/CTX',
        'ssh/POOL', ...), asked of the server (so a remote team server works)."""
        import sky
        from sky.client import sdk

        with _sky_call("asking the SkyPilot API server for its enabled infra"):
            return [str(c) for c in sky.get(sdk.enabled_clouds(expand=True))]


if TYPE_CHECKING:  # mypy: the real client keeps the seam's Protocol
    from launcher.sky.seam import SkyClient

    _: SkyClient = SkyPilotClient()


@contextlib.contextmanager
def _snapshot_catalog(cloud: str, snapshot_v8: str) -> Iterator[Any]:
    """SkyPilot's catalog module for `cloud`, reading the bundled snapshot folder `snapshot_v8`.

    In-process (no second interpreter importing SkyPilot again): a private copy of SkyPilot's catalog
    module for `cloud` is executed while SkyPilot's catalog folder points at `snapshot_v8`, so its own
    reader (`read_catalog`, `list_accelerators`, `validate_region_zone`, GCP's host-VM pricing) reads the
    snapshot files. The snapshot has no `.meta/*.md5`, so SkyPilot treats it as user-modified and never
    fetches over it; sys.modules and SkyPilot's own catalog folder are left as they were. Use the module
    inside the block only (its tables are read lazily).
    """
    import importlib.util

    from sky.catalog import common
    from sky.utils import accelerator_registry  # noqa: F401  bound to SkyPilot's own folder, not the snapshot

    where = f"{snapshot_v8}/{cloud}/vms.csv"
    saved = common._ABSOLUTE_VERSIONED_CATALOG_DIR  # pylint: disable=protected-access
    common._ABSOLUTE_VERSIONED_CATALOG_DIR = snapshot_v8  # pylint: disable=protected-access
    try:
        spec = importlib.util.find_spec(f"sky.catalog.{cloud}_catalog")
        if spec is None or spec.loader is None:
            raise SkyError(f"SkyPilot {skypilot_version()} has no catalog reader for {cloud}")
        module = importlib.util.module_from_spec(spec)
        with _quiet():
            spec.loader.exec_module(module)
            if getattr(module, "_user_df", False) is None and hasattr(module, "_default_df"):
                # AWS renames zones per account by calling AWS (boto3, credentials, network); a snapshot
                # read stays offline and account-neutral: SkyPilot's own fallback, the catalog as published.
                vars(module)["_user_df"] = module._default_df  # pylint: disable=protected-access
            yield module
    except SkyError:
        raise
    except Exception as exc:  # pandas/CSV errors come as many types; say which file, never a class name
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable or incomplete file"
        raise SkyError(f"cannot read the bundled price snapshot {where}: {detail}") from exc
    finally:
        common._ABSOLUTE_VERSIONED_CATALOG_DIR = saved  # pylint: disable=protected-access


def list_gpu_offers_from_snapshot(accelerator_names: Sequence[str], cloud: str,
                                  snapshot_v8: str) -> list[dict[str, Any]]:
    """Same as list_gpu_offers for one cloud, read by SkyPilot from a bundled snapshot folder."""
    import math

    pattern = "^(?:" + "|".join(re.escape(n) for n in accelerator_names) + ")$"
    with _snapshot_catalog(cloud, snapshot_v8) as module:
        found = module.list_accelerators(gpus_only=True, name_filter=pattern, region_filter=None,
                                         quantity_filter=None, case_sensitive=False, all_regions=True,
                                         require_price=True)
    rows = []
    for infos in found.values():
        for info in infos:
            spot = info.spot_price
            rows.append(dict(
                cloud=cloud, region=info.region, instance_type=info.instance_type,
                accelerator_name=info.accelerator_name, accelerator_count=float(info.accelerator_count),
                price=float(info.price),
                spot_price=None if spot is None or (isinstance(spot, float) and math.isnan(spot)) or spot <= 0
                else float(spot),
            ))
    return [r for r in rows if not math.isnan(r["price"])]


def region_zone_problem(cloud: str, region: str | None, zone: str | None,
                        snapshot_v8: str) -> tuple[str | None, str | None]:
    """Whether `cloud`'s catalog has this region (and zone), asked of SkyPilot's own validator: of its
    cached catalog when it has one, else of the bundled snapshot (what `plan` prices from). AWS zones are
    not asked: its catalog holds zone ids (use1-az1) that SkyPilot renames per account by calling AWS.

    Returns (SkyPilot's reason in one line, with the zones of a known region when a zone is wrong, or None;
    which catalog was read), or (None, None) when neither has `cloud` (nothing checked)."""
    import os

    live = cloud != "aws" and os.path.exists(real_catalog_path(cloud))
    table = real_catalog_path(cloud) if live else f"{snapshot_v8}/{cloud}/vms.csv"
    if not os.path.exists(table):
        return None, None
    if cloud == "aws":
        zone = None
    problem: ValueError | None = None
    if live:
        from sky import catalog

        try:
            with _quiet():
                catalog.validate_region_zone(region, zone, clouds=cloud)
        except ValueError as exc:
            problem = exc
    else:
        with _snapshot_catalog(cloud, snapshot_v8) as module:
            try:
                module.validate_region_zone(region, zone)
            except ValueError as exc:  # kept, not raised: the block would call it an unreadable snapshot
                problem = exc
    where = "SkyPilot's catalog" if live else "the bundled catalog snapshot"
    if problem is None:
        return None, where
    reason = "; ".join(line.strip() for line in str(problem).splitlines() if line.strip())
    listed = "Did you mean" in reason or "List of supported" in reason
    return reason + (_zones_hint(table, region) if zone and region and not listed else ""), where


def _zones_hint(table: str, region: str) -> str:
    """'; zones of REGION: a, b' from the catalog table (column AvailabilityZone), '' when it has none."""
    import csv

    with contextlib.suppress(OSError, csv.Error), open(table, newline="") as rows:
        zones = sorted({row.get("AvailabilityZone") or "" for row in csv.DictReader(rows)
                        if row.get("Region") == region} - {""})
        if zones:
            return f"; zones of {region}: {', '.join(zones)}"
    return ""


def known_infra() -> list[str]:
    """Every cloud/infra name SkyPilot can launch on (lower-case), from its own cloud registry."""
    from sky.utils import registry

    return sorted(str(name).lower() for name in registry.CLOUD_REGISTRY)


def parse_infra(text: str) -> tuple[str, str | None, str | None]:
    """`--infra` as SkyPilot's own parser reads it: (cloud, region or k8s context or ssh pool, zone).

    The cloud part must name infra SkyPilot knows (aliases such as k8s are resolved); UserError otherwise.
    """
    from sky.utils import infra_utils

    allowed = "CLOUD[/REGION[/ZONE]], kubernetes[/CONTEXT] or ssh/POOL"
    try:
        info = infra_utils.InfraInfo.from_str(text.strip())
    except Exception as exc:  # SkyPilot's parser raises ValueError and friends
        raise UserError(f"--infra {text!r}: {str(exc).strip() or 'not understood'}; use {allowed}") from None
    if info is None or not info.cloud:
        raise UserError(f"--infra {text!r} names no cloud; use {allowed}")
    cloud = canonical_infra(info.cloud)
    if cloud is None:
        raise UserError(f"--infra {text!r}: unknown infra {info.cloud!r}; SkyPilot knows: "
                        f"{', '.join(known_infra())}")
    return cloud, info.region, info.zone


def canonical_infra(name: str) -> str | None:
    """'K8s' -> 'kubernetes'; None when SkyPilot knows no such cloud."""
    from sky.utils import registry

    try:
        cloud = registry.CLOUD_REGISTRY.from_str(name.strip())
    except Exception:  # SkyPilot raises ValueError for unknown names in some versions
        return None
    return str(cloud).lower() if cloud is not None else None




def missing_feature(cloud: str, feature: str) -> str | None:
    """SkyPilot's own reason why `cloud` cannot do `feature` ('open_ports', 'host_controllers', ...),
    from the cloud's table of unsupported features (offline); None when SkyPilot lists no such limit."""
    from sky import clouds as sky_clouds
    from sky.utils import registry

    try:
        found = registry.CLOUD_REGISTRY.from_str(cloud)
        wanted = sky_clouds.CloudImplementationFeatures(feature)
    except Exception:  # an unknown cloud or feature name: SkyPilot knows no limit of it
        return None
    table = getattr(type(found), "_CLOUD_UNSUPPORTED_FEATURES", None) or {}
    reason = table.get(wanted)
    return str(reason) if reason else None
