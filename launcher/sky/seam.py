"""`SkyClient`: what gptoss-sky asks of SkyPilot where a cloud answers, as a typed Protocol.

Callers (lifecycle, watch, logs, the CLI) take a `SkyClient`; `skyapi.SkyPilotClient` is the real one and
tests/fakesky.py's `FakeSky` the stand-in. mypy checks both against this Protocol (skyapi.py and fakesky.py
each assign an instance to a `SkyClient` variable) and tests/test_sky_seam.py compares their signatures with
it at runtime, so the fake cannot drift from the seam unnoticed. The guarantees every implementation keeps
are in SkyPilotClient's docstring. This module imports nothing of SkyPilot (only skyapi does).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

OnRequest = Callable[[str], None]  # gets SkyPilot's request id of a launch before anything waits on it


class SkyClient(Protocol):
    """The calls that reach a cloud through SkyPilot's API server. Records are plain dicts
    (skyapi.cluster_from_sky / service_from_sky); SkyPilot's errors arrive as launcher.errors types."""

    def launch(self, config: Mapping[str, Any], cluster_name: str, *, secrets: Mapping[str, str],
               envs: Mapping[str, str], idle_minutes: int | None, down: bool,
               output: io.TextIOBase | None = None, on_request: OnRequest | None = None) -> int | None:
        """Provision the cluster and submit its job; the job id. The request id goes to `on_request` first."""
        ...

    def endpoint(self, cluster_name: str, port: int) -> str:
        """host:port of the cluster's exposed `port`."""
        ...

    def clusters(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Clusters of every user (names given: only those that exist)."""
        ...

    def current_user(self) -> dict[str, str | None]:
        """{user_hash, user_name} of this client, as cluster and service records name their owner."""
        ...

    def down(self, cluster_name: str, purge: bool = False) -> None:
        """Tear the cluster down (NotFoundError when SkyPilot has none of that name)."""
        ...

    def serve_up(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                 envs: Mapping[str, str], output: io.TextIOBase | None = None,
                 on_request: OnRequest | None = None) -> str:
        """Start a SkyServe service; its endpoint. The request id goes to `on_request` first."""
        ...

    def serve_update(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                     envs: Mapping[str, str]) -> None:
        """Roll the service onto a new task."""
        ...

    def services(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Services of every user (names given: only those that exist); [] without a serve controller."""
        ...

    def serve_down(self, service_name: str, purge: bool = False) -> None:
        """Tear the service down (NotFoundError when SkyPilot has none of that name)."""
        ...

    def job_status(self, cluster_name: str, job_id: int | None = None) -> str | None:
        """SkyPilot's JobStatus name of the cluster's job (latest when job_id is None); None before a job."""
        ...

    def tail_logs(self, cluster_name: str, job_id: int | None = None, *, follow: bool = True,
                  tail: int = 0) -> Iterator[str]:
        """Lines of the cluster job's log as they come."""
        ...

    def serve_logs(self, service_name: str, replica_id: int, *, follow: bool = True,
                   tail: int = 0) -> Iterator[str]:
        """Lines of one replica's log as they come."""
        ...

    def request_status(self, request_id: str) -> str | None:
        """SkyPilot's RequestStatus name of a request (PENDING, WAITING, RUNNING, SUCCEEDED, FAILED,
        CANCELLED); None when the API server does not know it."""
        ...

    def cancel_request(self, request_id: str) -> str | None:
        """Cancel the request if it is still active; its state afterwards, as request_status."""
        ...

    def kubernetes_unreachable(self, context: str | None) -> str | None:
        """Why the API server cannot reach this Kubernetes context (None: the default one); None if it can."""
        ...

    def enabled_infra(self) -> list[str]:
        """Infra the API server can launch on ('aws', 'kubernetes/CTX', 'ssh/POOL', ...)."""
        ...

    def serve_controller_unplaceable(self) -> str | None:
        """Why a new service's SkyServe controller has nowhere to go, in SkyPilot's words; None if it has."""
        ...
