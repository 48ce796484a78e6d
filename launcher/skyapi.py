"""The one module that imports SkyPilot. Everything gptoss-sky asks of SkyPilot goes through here.

`sky` is imported inside functions (it takes seconds and pulls in cloud SDKs), so commands that never
touch SkyPilot stay fast. SkyPilot exceptions are mapped to SkyError / NoCloudError at this seam, and
SDK request ids are resolved here, so callers get plain values. Offline-safe pieces (YAML validation,
catalog reads, the in-process optimizer) are plain functions; the calls that reach a cloud (launch,
status, down, serve) are methods of `SkyClient`, which tests replace with a recording fake.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Mapping, Sequence

from launcher.errors import NoCloudError, RenderError, SkyError, UserError


@contextlib.contextmanager
def map_sky_exceptions(action: str) -> Iterator[None]:
    """Re-raise SkyPilot's exceptions as ours, with what we were doing."""
    try:
        yield
    except (SkyError, NoCloudError, RenderError):
        raise
    except Exception as exc:  # the SDK raises many unrelated types; this is the seam that maps them
        import sky.exceptions as sky_exc

        if isinstance(exc, sky_exc.NoCloudAccessError):
            raise NoCloudError(f"{action}: no cloud is enabled in SkyPilot; run `sky check`") from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SkyError(f"{action}: {message}") from exc


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

PRICED_CLOUDS = ("aws", "gcp", "lambda", "nebius", "runpod", "shadeform", "vast", "verda")


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
    """Clouds enabled in SkyPilot, from its cached `sky check` result (lower-case names)."""
    import sky
    from sky import check as sky_check
    from sky.clouds import cloud as sky_cloud

    with map_sky_exceptions("reading enabled clouds"), _quiet():
        clouds = sky_check.get_cached_enabled_clouds_or_refresh(
            sky_cloud.CloudCapability.COMPUTE, raise_if_no_cloud_access=False)
    del sky
    return [str(c).lower() for c in clouds]


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

class SkyClient:
    """The seam where SkyPilot talks to clouds. Tests substitute a recording fake with these methods."""

    def _task(self, config, secrets, envs):
        return task_from_config(config, secrets=secrets, envs=envs)

    def launch(self, config: Mapping[str, Any], cluster_name: str, *, secrets: Mapping[str, str],
               envs: Mapping[str, str], idle_minutes: int | None, down: bool) -> None:
        import sky

        task = self._task(config, secrets, envs)
        with map_sky_exceptions(f"launching {cluster_name}"):
            request = sky.launch(task, cluster_name=cluster_name, idle_minutes_to_autostop=idle_minutes,
                                 down=down)
            sky.stream_and_get(request)

    def endpoint(self, cluster_name: str, port: int) -> str:
        import sky

        with map_sky_exceptions(f"getting the endpoint of {cluster_name}"):
            endpoints = sky.get(sky.endpoints(cluster_name, port))
        value = endpoints.get(port) or endpoints.get(str(port))  # type: ignore[call-overload]
        if not value:
            raise SkyError(f"{cluster_name} exposes no endpoint on port {port}")
        return value

    def clusters(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        import sky

        with map_sky_exceptions("reading cluster status"):
            records = sky.get(sky.status(list(names) if names else None))
        out = []
        for r in records:
            get = r.get if isinstance(r, dict) else (lambda k, d=None, r=r: getattr(r, k, d))
            handle = get("handle")
            resources = getattr(handle, "launched_resources", None)
            out.append(dict(name=get("name"), status=str(getattr(get("status"), "value", get("status"))),
                            launched_at=get("launched_at"),
                            cloud=str(getattr(resources, "cloud", "") or "").lower() or None,
                            region=getattr(resources, "region", None),
                            price_per_hour=resources.get_cost(3600) * getattr(handle, "launched_nodes", 1)
                            if resources is not None else None))
        return out

    def down(self, cluster_name: str, purge: bool = False) -> None:
        import sky

        with map_sky_exceptions(f"tearing down {cluster_name}"):
            sky.stream_and_get(sky.down(cluster_name, purge=purge))

    def serve_up(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                 envs: Mapping[str, str]) -> str:
        import sky

        task = self._task(config, secrets, envs)
        with map_sky_exceptions(f"starting service {service_name}"):
            _, endpoint = sky.stream_and_get(sky.serve.up(task, service_name))
        return endpoint

    def serve_update(self, config: Mapping[str, Any], service_name: str, *, secrets: Mapping[str, str],
                     envs: Mapping[str, str]) -> None:
        import sky
        from sky.serve import serve_utils

        task = self._task(config, secrets, envs)
        with map_sky_exceptions(f"updating service {service_name}"):
            sky.stream_and_get(sky.serve.update(task, service_name, mode=serve_utils.UpdateMode.ROLLING))

    def services(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        import sky

        with map_sky_exceptions("reading service status"):
            records = sky.get(sky.serve.status(list(names) if names else None))
        out = []
        for r in records:
            replicas = [dict(id=x.get("replica_id"), status=str(getattr(x.get("status"), "value", x.get("status"))),
                             endpoint=x.get("endpoint"), launched_at=x.get("launched_at"),
                             price_per_hour=_replica_price(x.get("handle")))
                        for x in r.get("replica_info", [])]
            out.append(dict(name=r.get("name"), status=str(getattr(r.get("status"), "value", r.get("status"))),
                            endpoint=r.get("endpoint"), replicas=replicas, uptime=r.get("uptime")))
        return out

    def serve_down(self, service_name: str, purge: bool = False) -> None:
        import sky

        with map_sky_exceptions(f"tearing down service {service_name}"):
            sky.stream_and_get(sky.serve.down(service_name, purge=purge))


    # --- the node's progress (contract shared by the live launch view and `logs`) -------------------

    def job_status(self, cluster_name: str, job_id: int | None = None) -> str | None:
        """SkyPilot's state of the cluster's job (latest when job_id is None), e.g. PENDING, SETTING_UP,
        RUNNING, SUCCEEDED, FAILED, FAILED_SETUP, FAILED_DRIVER, CANCELLED; None when there is no job yet."""
        raise NotImplementedError

    def tail_logs(self, cluster_name: str, job_id: int | None = None, *, follow: bool = True,
                  tail: int = 0) -> Iterator[str]:
        """Lines of the cluster job's log (setup and run output, phase markers included), as they come.
        Ends when the job ends (follow) or at the current end of the log (follow=False)."""
        raise NotImplementedError

    def serve_logs(self, service_name: str, replica_id: int, *, follow: bool = True,
                   tail: int = 0) -> Iterator[str]:
        """Lines of one SkyServe replica's log, as `tail_logs`."""
        raise NotImplementedError

    def enabled_infra(self) -> list[str]:
        """Infra the API server can launch on, lower-case ('aws', 'kubernetes', 'ssh', ...), asked of the
        server (so a remote team server works)."""
        raise NotImplementedError


def list_gpu_offers_from_snapshot(accelerator_names: Sequence[str], cloud: str,
                                  snapshot_v8: str) -> list[dict[str, Any]]:
    """Same as list_gpu_offers for one cloud, read by SkyPilot from a bundled snapshot folder.

    In-process (no second interpreter importing SkyPilot again): a private copy of SkyPilot's catalog
    module for `cloud` is executed while SkyPilot's catalog folder points at `snapshot_v8`, so its own
    reader (`read_catalog`, `list_accelerators`, GCP's host-VM pricing) reads the snapshot files. The
    snapshot has no `.meta/*.md5`, so SkyPilot treats it as user-modified and never fetches over it;
    sys.modules and SkyPilot's own catalog folder are left as they were.
    """
    import importlib.util
    import math
    import re

    from sky.catalog import common
    from sky.utils import accelerator_registry  # noqa: F401  bound to SkyPilot's own folder, not the snapshot

    pattern = "^(?:" + "|".join(re.escape(n) for n in accelerator_names) + ")$"
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
                module._user_df = module._default_df  # pylint: disable=protected-access
            found = module.list_accelerators(gpus_only=True, name_filter=pattern, region_filter=None,
                                             quantity_filter=None, case_sensitive=False, all_regions=True,
                                             require_price=True)
    except SkyError:
        raise
    except Exception as exc:  # pandas/CSV errors come as many types; say which file, never a class name
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable or incomplete file"
        raise SkyError(f"cannot read the bundled price snapshot {where}: {detail}") from exc
    finally:
        common._ABSOLUTE_VERSIONED_CATALOG_DIR = saved  # pylint: disable=protected-access
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


