"""FakeSky: a launcher.sky.seam.SkyClient standing in for skyapi.SkyPilotClient where SkyPilot would reach a cloud.

Its answers where no cloud is needed (nothing launched, unknown names, no serve controller, no enabled
cloud) are checked against a real SkyPilot API server by tests/test_sky_contract.py, with one test body
for both. What needs a cloud is scripted, in SkyPilot's own shapes: cluster records are validated by
SkyPilot's `StatusResponse` schema, service and replica records carry the keys of `sky.serve.status`,
and every state name is looked up in SkyPilot's enums (ClusterStatus, JobStatus, ServiceStatus,
ReplicaStatus), so a state SkyPilot does not have cannot be scripted. Records go through the seam's own
converters (skyapi.cluster_from_sky / service_from_sky), so callers see exactly what SkyPilotClient returns.
mypy checks it against the SkyClient Protocol (the assignment at the end of this file), and
tests/test_sky_seam.py compares its signatures with the Protocol's.

Use:
    sky = FakeSky(endpoint="127.0.0.1:8000")            # one cloud enabled ("lambda")
    sky = FakeSky(enabled_infra=())                     # a fresh machine: no cloud enabled
    sky.job_script = [("SETTING_UP", ["gptoss-sky phase install 1700000000"]), ("RUNNING", [...]),
                      ("FAILED", ["engine exited 1"])]  # job states launch() scripts, one per poll
    sky.service_script = [("CONTROLLER_INIT", []), ("REPLICA_INIT", [(1, "PROVISIONING")]),
                          ("READY", [(1, "READY")])]    # service states serve_up() scripts, one per poll
    sky.add_cluster("gptoss-x", user_name="alice", user_hash="a11ce")   # someone else's cluster
    sky.fail_down = {"gptoss-x"}                        # the cloud refuses this teardown (SkyError)
    sky.install(monkeypatch)                            # skyapi.SkyPilotClient(), enabled_clouds() -> it
    sky.hold_request = True                             # launch()/serve_up() hand out their request id,
                                                        # then Ctrl-C arrives while it is still RUNNING
    sky.unreachable = {"kubernetes/ctx": "timed out"}   # a Kubernetes context the server cannot reach
`calls` records what crossed the seam: ("launch", {...}), ("endpoint", name, port), ("down", name),
("serve_up", {...}), ("serve_update", {...}), ("serve_down", name), ("cancel", request_id).
Every launch and serve_up is a SkyPilot request (`requests`: id -> RequestStatus name) whose id is
handed to `on_request` before anything else, as SkyClient does.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from launcher.errors import GptossSkyError, NoCloudError, NotFoundError, SkyError
from launcher.sky import skyapi
from launcher.sky.seam import OnRequest, SkyClient

if TYPE_CHECKING:
    from sky.schemas.api.responses import StatusResponse

ME = {"user_hash": "f00dcafe", "user_name": "me"}
SKY_NO_CLOUD = "Cloud access is not set up. Run: sky check"  # SkyPilot 0.14.1's NoCloudAccessError


def skypilot_state(kind: str, name: str) -> Any:
    """SkyPilot's enum member for a `kind` ("cluster", "job", "service", "replica") state name (KeyError for
    a state SkyPilot does not have): what a test scripts is a state SkyPilot can report."""
    from sky.serve.serve_state import ReplicaStatus, ServiceStatus
    from sky.skylet.job_lib import JobStatus
    from sky.utils.status_lib import ClusterStatus

    enums: dict[str, Any] = {"cluster": ClusterStatus, "job": JobStatus, "service": ServiceStatus}
    return enums.get(kind, ReplicaStatus)[name]


class Script:
    """States something passes through, one per poll (the last one stays), each with the log lines that
    appear when it is reached."""

    def __init__(self, steps: Sequence[tuple[str, Any]]):
        self.steps = list(steps)
        self.at = 0

    @property
    def current(self) -> tuple[str, Any]:
        return self.steps[self.at]

    def advance(self) -> tuple[str, Any]:
        step = self.steps[self.at]
        self.at = min(self.at + 1, len(self.steps) - 1)
        return step

    def lines_so_far(self) -> list[str]:
        return [line for _, lines in self.steps[:self.at + 1] for line in (lines or [])]


class FakeSky:
    """Same methods and answers as skyapi.SkyPilotClient (see its docstring for the guarantees)."""

    def __init__(self, endpoint: str = "127.0.0.1:1", fail_launch: BaseException | None = None,
                 enabled_infra: Sequence[str] = ("lambda",), me: dict | None = None):
        self.calls: list[tuple] = []
        self.endpoint_value = endpoint
        self.fail_launch = fail_launch
        self.infra = list(enabled_infra)
        self.me = dict(me or ME)
        self.raw_clusters: dict[str, StatusResponse] = {}  # name -> SkyPilot's status record
        self.raw_services: dict[str, dict] = {}  # name -> SkyPilot serve status record
        self.service_scripts: dict[str, Script] = {}
        self.jobs: dict[str, dict[int, Script]] = {}  # cluster -> job id -> script of (JobStatus, lines)
        self.replica_logs: dict[tuple[str, int], list[str]] = {}
        self.controller = False  # the SkyServe controller cluster exists (after the first serve_up)
        self.job_script: list[tuple[str, list[str]]] = [("RUNNING", [])]
        self.service_script: list[tuple[str, list]] = [("READY", [(1, "READY")])]
        self.requests: dict[str, str] = {}  # request id -> SkyPilot RequestStatus name
        self.hold_request = False  # the next launch/serve_up is interrupted with its request RUNNING
        self.unreachable: dict[str, str] = {}  # "kubernetes/CTX" -> why the server cannot reach it
        # Its clouds answer, so a service's controller has somewhere to go unless a test says why not
        # (the real server's answer with Lambda alone is checked in test_sky_requests).
        self.controller_unplaceable: str | None = None
        self.fail_down: set[str] = set()  # clusters/services whose teardown the cloud refuses

    # --- test set-up ----------------------------------------------------------------------------

    def install(self, monkeypatch) -> FakeSky:
        """Make skyapi.SkyPilotClient() return this fake and skyapi.enabled_clouds() ask it."""
        monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: self)
        monkeypatch.setattr(skyapi, "enabled_clouds", self.enabled_clouds)
        return self

    def add_cluster(self, name: str, status: str = "UP", *, cloud: str = "lambda", region: str = "us-east-1",
                    price_per_hour: float | None = 1.29, user_hash: str | None = None,
                    user_name: str | None = None, launched_at: int | None = None) -> StatusResponse:
        """A cluster as `sky.status` reports it (validated by SkyPilot's StatusResponse schema)."""
        from sky.schemas.api.responses import StatusResponse

        cost = (lambda seconds: price_per_hour * seconds / 3600) if price_per_hour is not None else None
        resources = SimpleNamespace(cloud=cloud.capitalize() if cloud else None, region=region,
                                    get_cost=cost or (lambda s: (_ for _ in ()).throw(ValueError("no price"))))
        record = StatusResponse(
            name=name, launched_at=launched_at or int(time.time()),
            handle=SimpleNamespace(launched_resources=resources, launched_nodes=1),
            last_use="gptoss-sky", status=skypilot_state("cluster", status), autostop=-1, to_down=False,
            cluster_hash=f"hash-{name}", cluster_ever_up=status == "UP",
            user_hash=user_hash or self.me["user_hash"], user_name=user_name or self.me["user_name"],
            workspace="default", is_managed=False, nodes=1, cloud=cloud, region=region)
        self.raw_clusters[name] = record
        return record

    def add_service(self, name: str, script: Sequence[tuple[str, list]] | None = None, *,
                    user_hash: str | None = None, user_name: str | None = None) -> None:
        """A service as `sky.serve.status` reports it, passing through `script` (state, replicas) one
        step per poll; replicas are (replica_id, ReplicaStatus name)."""
        self.controller = True
        self.service_scripts[name] = Script(script or self.service_script)
        self.raw_services[name] = {
            "name": name, "controller_job_id": len(self.raw_services) + 1, "controller_port": 20001,
            "load_balancer_port": 30001, "status": None, "uptime": None, "policy": "Fixed 1 replica",
            "version": 1, "active_versions": [1], "requested_resources_str": "1x[L4:1]",
            "load_balancing_policy": "least_load", "tls_encrypted": False, "pool": False,
            "controller_pid": 4242, "controller_ip": "10.0.0.2", "hash": f"hash-{name}",
            "entrypoint": "gptoss-sky serve", "user_hash": user_hash or self.me["user_hash"],
            "user_name": user_name or self.me["user_name"], "yaml_content": None,
            "endpoint": f"http://{self.endpoint_value}", "replica_info": [],
        }

    def _service_record(self, name: str) -> dict:
        """Advance the service's script one step and fill the record as SkyPilot would."""
        raw = self.raw_services[name]
        status, replicas = self.service_scripts[name].advance()
        raw["status"] = skypilot_state("service", status)
        raw["uptime"] = int(time.time()) - 60 if status == "READY" else None
        # No load balancer port (so no endpoint) until the controller is up.
        raw["endpoint"] = None if status == "CONTROLLER_INIT" else f"http://{self.endpoint_value}"
        raw["replica_info"] = [
            {"replica_id": rid, "name": f"{name}-{rid}", "status": skypilot_state("replica", rstatus), "version": 1,
             "replica_info_version": 1, "endpoint": f"10.0.1.{rid}:8000" if rstatus == "READY" else None,
             "is_spot": False, "launched_at": int(time.time()) - 120, "cloud": "Lambda", "region": "us-east-1",
             "handle": None}
            for rid, rstatus in (replicas or [])]
        return raw

    def set_job(self, cluster: str, steps: Sequence[tuple[str, list[str]]], job_id: int = 1) -> None:
        for state, _ in steps:
            skypilot_state("job", state)
        self.jobs.setdefault(cluster, {})[job_id] = Script(steps)

    # --- the seam -------------------------------------------------------------------------------

    def _no_cloud(self, action: str) -> None:
        if not self.infra:
            raise NoCloudError(f"{action}: no cloud is enabled in SkyPilot; run `sky check`\n"
                               f"SkyPilot: {SKY_NO_CLOUD}")

    def _request(self, on_request: OnRequest | None) -> str:
        """A new SkyPilot request, RUNNING; its id goes to on_request first. With hold_request, Ctrl-C
        arrives while the caller waits on it (the request keeps running, as on the real server)."""
        _request_status("RUNNING")
        request_id = f"fake-{len(self.requests) + 1:04d}-0000-0000-0000-000000000000"
        self.requests[request_id] = "RUNNING"
        if on_request is not None:
            on_request(request_id)
        if self.hold_request:
            self.hold_request = False
            raise KeyboardInterrupt
        return request_id

    def _finish(self, request_id: str, error: BaseException | None) -> None:
        self.requests[request_id] = "FAILED" if error is not None else "SUCCEEDED"
        if error is not None:
            raise error

    def launch(self, config: Mapping[str, Any], cluster_name: str, *, secrets: Mapping[str, str],
               envs: Mapping[str, str], idle_minutes: int | None, down: bool,
               output: io.TextIOBase | None = None, on_request: OnRequest | None = None) -> int | None:
        task = skyapi.task_from_config(config, secrets=secrets, envs=envs)  # what SkyPilot would parse
        self._no_cloud(f"launching {cluster_name}")
        self.calls.append(("launch", dict(config=config, name=cluster_name, secrets=dict(secrets), envs=dict(envs),
                                          idle_minutes=idle_minutes, down=down, task=task)))
        request_id = self._request(on_request)
        self.add_cluster(cluster_name, "UP")
        self._finish(request_id, self.fail_launch)
        job_id = max(self.jobs.get(cluster_name, {0: None})) + 1
        self.set_job(cluster_name, self.job_script, job_id)
        return job_id

    def endpoint(self, cluster_name: str, port: int) -> str:
        name = cluster_name
        self.calls.append(("endpoint", name, port))
        if name not in self.raw_clusters:
            raise NotFoundError(f"getting the endpoint of {name}: Cluster {name!r} not found.")
        if _value(self.raw_clusters[name]["status"]) != "UP":
            raise SkyError(f"getting the endpoint of {name}: Cluster {name!r} is not up.")
        return self.endpoint_value

    def clusters(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [skyapi.cluster_from_sky(r) for n, r in self.raw_clusters.items() if not names or n in names]

    def current_user(self) -> dict[str, str | None]:
        return dict(self.me)

    def down(self, cluster_name: str, purge: bool = False) -> None:
        name = cluster_name
        self.calls.append(("down", name))
        if name in self.fail_down and name in self.raw_clusters:
            raise SkyError(f"tearing down {name}: cloud API error")
        if name not in self.raw_clusters:
            raise NotFoundError(f"tearing down {name}: Cluster {name!r} does not exist.")
        del self.raw_clusters[name]
        self.jobs.pop(name, None)

    def serve_up(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                 envs: Mapping[str, str], output: io.TextIOBase | None = None,
                 on_request: OnRequest | None = None) -> str:
        name = service_name
        task = skyapi.task_from_config(config, secrets=secrets, envs=envs)
        self._no_cloud(f"starting service {name}")
        self.calls.append(("serve_up", dict(config=config, name=name, secrets=dict(secrets), task=task)))
        request_id = self._request(on_request)
        self._finish(request_id, self.fail_launch)
        self.add_service(name)
        self.add_cluster("sky-serve-controller-f00dcafe", "UP", price_per_hour=0.2)
        return f"http://{self.endpoint_value}"

    def serve_update(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                     envs: Mapping[str, str]) -> None:
        name = service_name
        task = skyapi.task_from_config(config, secrets=secrets, envs=envs)
        self.calls.append(("serve_update", dict(config=config, name=name, task=task)))
        if name not in self.raw_services:
            raise SkyError(f"updating service {name}: Service {name!r} does not exist.")

    def services(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if not self.controller:
            return []
        return [skyapi.service_from_sky(self._service_record(n)) for n in list(self.raw_services)
                if not names or n in names]

    def serve_down(self, service_name: str, purge: bool = False) -> None:
        name = service_name
        self.calls.append(("serve_down", name))
        if not self.controller or name not in self.raw_services:
            raise NotFoundError(f"tearing down service {name}: SkyPilot has no service named {name!r}")
        if name in self.fail_down:
            raise SkyError(f"tearing down service {name}: cloud API error")
        status = self.service_scripts[name].current[0]
        if status in skyapi.status_names().service_broken and not purge:
            raise SkyError(f"tearing down service {name}: it is {status}, and SkyPilot skips failed services "
                           "(their replicas may be left running); run again with --purge to remove it anyway")
        del self.raw_services[name]
        del self.service_scripts[name]

    def job_status(self, cluster_name: str, job_id: int | None = None) -> str | None:
        if cluster_name not in self.raw_clusters:
            raise NotFoundError(f"reading the job status of {cluster_name}: Cluster {cluster_name!r} does not exist.")
        jobs = self.jobs.get(cluster_name) or {}
        if not jobs:
            return None
        script = jobs.get(max(jobs) if job_id is None else job_id)
        return None if script is None else _value(skypilot_state("job", script.advance()[0]))

    def tail_logs(self, cluster_name: str, job_id: int | None = None, *, follow: bool = True,
                  tail: int = 0) -> Iterator[str]:
        if cluster_name not in self.raw_clusters:
            raise NotFoundError(f"reading the log of {cluster_name}: Cluster {cluster_name!r} does not exist.")
        jobs = self.jobs.get(cluster_name) or {}
        script = jobs.get(max(jobs) if job_id is None else job_id) if jobs else None
        if script is None:
            return iter([])
        if follow:  # to the end of the job, as SkyPilot's follow does
            while not skypilot_state("job", script.current[0]).is_terminal() and script.at < len(script.steps) - 1:
                script.advance()
        lines = script.lines_so_far()
        return iter(lines[-tail:] if tail else lines)

    def serve_logs(self, service_name: str, replica_id: int, *, follow: bool = True,
                   tail: int = 0) -> Iterator[str]:
        if not self.controller or service_name not in self.raw_services:
            raise NotFoundError(f"reading the log of {service_name} replica {replica_id}: SkyPilot has no "
                                f"service named {service_name!r}")
        lines = self.replica_logs.get((service_name, replica_id), [])
        return iter(lines[-tail:] if tail else lines)

    def request_status(self, request_id: str) -> str | None:
        return self.requests.get(request_id)

    def cancel_request(self, request_id: str) -> str | None:
        self.calls.append(("cancel", request_id))
        if self.requests.get(request_id) in skyapi.status_names().request_active:
            self.requests[request_id] = skyapi.status_names().request_cancelled
        return self.requests.get(request_id)

    def kubernetes_unreachable(self, context: str | None) -> str | None:
        infra = f"kubernetes/{context}" if context else next(
            (i for i in self.infra if i.split("/")[0] == "kubernetes"), "kubernetes")
        if infra in self.unreachable:
            return f"asking Kubernetes context {context or '(default)'} for its nodes: {self.unreachable[infra]}"
        if infra not in self.infra:
            return (f"asking Kubernetes context {context or '(default)'} for its nodes: Failed to load Kubernetes "
                    f"configuration for {context or '(current-context)'!r}.")
        return None

    def serve_controller_unplaceable(self) -> str | None:
        return self.controller_unplaceable

    def enabled_infra(self) -> list[str]:
        return list(self.infra)

    def enabled_clouds(self) -> list[str]:
        return sorted({i.split("/")[0] for i in self.infra})


def _request_status(name: str) -> Any:
    """SkyPilot's RequestStatus member (KeyError for a state SkyPilot does not have)."""
    from sky.server.requests.requests import RequestStatus

    return RequestStatus[name]


def _value(status: Any) -> str | None:
    return None if status is None else str(getattr(status, "value", status))


_: SkyClient = FakeSky()  # mypy: a FakeSky method that drifts from the seam's Protocol fails the type check

__all__ = ["FakeSky", "Script", "ME", "GptossSkyError", "skypilot_state"]
