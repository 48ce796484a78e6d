"""`logs NAME`: the engine's log through the SkyPilot seam, a cluster's job log or one SkyServe replica's.

Only resolves which log to read (record kind, replica id) and hands back the seam's lines; the CLI
prints them. Imports no click/rich/sky.
"""

from __future__ import annotations

from collections.abc import Iterator

from launcher.errors import NotFoundError, SkyError, UserError
from launcher.sky import skyapi, state
from launcher.sky.seam import SkyClient


def lines(client: SkyClient, name: str, *, follow: bool = False, replica: int | None = None,
          tail: int = 0) -> Iterator[str]:
    """The log lines of deployment `name` (a cluster's latest job, or a service replica's), without newlines.

    A service without --replica reads its first READY replica (else its first one)."""
    record = state.load(name)
    if record.kind == "cluster" and replica is not None:
        raise UserError(f"{name} is a single cluster: --replica applies only to services (`gptoss-sky serve`)")
    try:  # SkyPilot may say the cluster or service is gone when asked, or after some lines
        if record.kind == "cluster":
            source = client.tail_logs(name, None, follow=follow, tail=tail)
        else:
            source = client.serve_logs(name, _replica_id(client, name, replica), follow=follow, tail=tail)
        for line in source:
            yield line.rstrip("\n")
    except NotFoundError as exc:
        raise SkyError(f"{name} is gone from SkyPilot ({exc}); `gptoss-sky down {name}` removes its record "
                       "and key (`status` keeps them)") from exc


def _replica_id(client: SkyClient, name: str, wanted: int | None) -> int:
    services = client.services([name])
    if not services:
        raise SkyError(f"service {name} is gone from SkyPilot; `gptoss-sky down {name}` removes its record and "
                       "key (`status` keeps them)")
    replicas = services[0].get("replicas") or []
    ids = [r.get("id") for r in replicas]
    if wanted is not None:
        if wanted not in ids:
            have = ", ".join(str(i) for i in ids) or "none yet"
            raise UserError(f"service {name} has no replica {wanted}; its replicas: {have}")
        return wanted
    if not replicas:
        raise SkyError(f"service {name} has no replica yet (status {services[0].get('status')}); try again soon")
    ready = [r for r in replicas if r.get("status") == skyapi.status_names().replica_ready]
    return int((ready or replicas)[0]["id"])
