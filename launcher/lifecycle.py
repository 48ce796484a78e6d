"""Deployment lifecycle: plan -> render -> launch -> wait -> smoke; scale, status, endpoint, down.

Talks to SkyPilot only through a `skyapi.SkyClient` (injected, so tests pass a recording fake), and
keeps a local record per deployment (launcher.state) written *before* anything is launched, so an
interrupted or failed launch is always visible to `status` and removable with `down`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import httpx

from launcher import render, state
from launcher.catalog import Catalog, Model
from launcher.errors import EndpointError, GptossSkyError, SkyError, UnknownDeploymentError, UserError
from launcher.plan import Plan
from launcher.recipes import Recipe

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Connection:
    """How to talk to one deployment's OpenAI-compatible endpoint."""

    base_url: str  # scheme://host:port, no trailing slash, no /v1
    api_key: str
    model: str  # served model name, e.g. "openai/gpt-oss-20b"
    price_per_hour: float | None  # $/hour of the whole deployment when known


def normalize_endpoint(endpoint: str) -> str:
    """'1.2.3.4:8000' or 'http://1.2.3.4:8000/' -> 'http://1.2.3.4:8000'."""
    endpoint = endpoint.strip().rstrip("/")
    if not endpoint:
        raise EndpointError("empty endpoint")
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def choose_recipes(plan: Plan, top_kinds: int | None = None) -> tuple[Recipe, ...]:
    """The GPU choices handed to SkyPilot's optimizer: every priced one (cost), or the best few kinds."""
    chosen: list[Recipe] = []
    for offer in plan.offers:
        if all(r is not offer.recipe for r in chosen):
            chosen.append(offer.recipe)
    if top_kinds:
        chosen = chosen[:top_kinds]
    if not chosen:
        raise UserError(f"no offer for {plan.model} on the clouds priced ({', '.join(plan.clouds)}); "
                        "try --clouds, --gpu or a shorter --context")
    return tuple(chosen)


def deployment_for(name: str, recipes: Sequence[Recipe], *, service: bool, image: bool = False,
                   spot: bool = False, infra: str | None = None, idle_minutes: int = 0,
                   replicas: int | None = None, min_replicas: int | None = None,
                   max_replicas: int | None = None, target_qps: float | None = None,
                   ondemand_fallback: bool = False) -> render.Deployment:
    model = recipes[0].model
    gpus = ", ".join(r.accelerator for r in recipes)
    if service and replicas is None and min_replicas is None:
        replicas = 1
    if service and min_replicas is not None and target_qps is None and min_replicas != max_replicas:
        raise UserError("--min-replicas/--max-replicas need --target-qps (requests/s per replica) to autoscale")
    return render.Deployment(
        name=name, recipes=tuple(recipes), service=service, image=image, use_spot=True if spot else None,
        infra=infra, idle_minutes=idle_minutes if not service else 0,
        replicas=replicas if service else 1, min_replicas=min_replicas, max_replicas=max_replicas,
        target_qps=target_qps, ondemand_fallback=ondemand_fallback,
        title=f"{model.name} as {name} on the cheapest available of: {gpus}",
    )


def _check_free(client: Any, name: str, service: bool) -> None:
    if state.exists(name):
        raise UserError(f"a deployment named {name} already exists; pick another --name or "
                        f"`gptoss-sky down {name}` first")
    live = client.services([name]) if service else client.clusters([name])
    if any(item.get("name") == name for item in live):
        raise UserError(f"SkyPilot already has a {'service' if service else 'cluster'} named {name}; "
                        "gptoss-sky will not touch it: pick another --name")


def launch(catalog: Catalog, client: Any, model: Model, deployment: render.Deployment, *,
           progress: Progress, ready_timeout: float = 3600, smoke: Callable | None = None) -> dict[str, Any]:
    """Launch one cluster (or service), wait until the model answers, smoke-test it."""
    config = render.render_config(catalog, deployment)
    name = deployment.name
    secret = deployment.recipes[0].engine.api_key_env
    _check_free(client, name, deployment.service)
    key_path = state.new_key(name)
    key = state.read_key(key_path)
    record = state.Record(name=name, kind="service" if deployment.service else "cluster", model=model.name,
                          served_model=model.served_names[0], key_path=str(key_path), created=state.now(),
                          gpus=[r.accelerator for r in deployment.recipes], config=config,
                          secret_name=secret, port=deployment.recipes[0].engine.port)
    state.save(record)  # before launching: a crash or Ctrl-C still leaves a record `down` can use
    envs = {"GPTOSS_IDLE_MINUTES": str(deployment.idle_minutes)}
    try:
        if deployment.service:
            progress(f"Starting service {name} (replicas provision, install vLLM, download weights)...")
            endpoint = normalize_endpoint(client.serve_up(config, name, secrets={secret: key}, envs=envs))
            _wait_service_ready(client, name, progress, ready_timeout)
        else:
            progress(f"Launching cluster {name}: provisioning, setup (vLLM, weights), then the server...")
            idle = deployment.idle_minutes
            client.launch(config, name, secrets={secret: key}, envs=envs,
                          idle_minutes=1 if idle else None, down=bool(idle))
            endpoint = normalize_endpoint(client.endpoint(name, record.port))
        progress(f"Waiting for {endpoint} to load the model and answer...")
        wait_until_answering(endpoint, key, model.served_names[0], ready_timeout, progress)
    except (GptossSkyError, KeyboardInterrupt) as exc:
        state.save(replace(record, state="failed"))
        what = "service" if deployment.service else "cluster"
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        raise SkyError(f"{name} did not come up ({reason}). The {what} may still exist and bill: "
                       f"check `gptoss-sky status {name}`, remove it with `gptoss-sky down {name}`") from exc
    record = replace(record, state="up")
    state.save(record)
    result = {"name": name, "kind": record.kind, "endpoint": endpoint, "model": record.served_model,
              "key_path": str(key_path)}
    if smoke is not None:
        result["smoke"] = smoke(endpoint, key, record.served_model)
    return result


def _wait_service_ready(client: Any, name: str, progress: Progress, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        services = client.services([name])
        status = services[0]["status"] if services else "MISSING"
        if status != last:
            progress(f"service {name}: {status}")
            last = status
        if status == "READY":
            return
        if status in ("FAILED", "FAILED_CLEANUP", "MISSING"):
            raise SkyError(f"service {name} is {status}")
        time.sleep(10)
    raise SkyError(f"service {name} not READY after {timeout:.0f} s")


def wait_until_answering(base_url: str, key: str, model: str, timeout: float, progress: Progress,
                         interval: float = 5.0) -> None:
    """Poll /health, then /v1/models with the key, until the served model is listed."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=10) as http:
        while True:
            try:
                health = http.get(f"{base_url}/health")
                if health.status_code == 200:
                    models = http.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
                    if models.status_code == 200 and any(
                            m.get("id") == model for m in models.json().get("data", [])):
                        return
                    note = f"/v1/models answered {models.status_code}"
                else:
                    note = f"/health answered {health.status_code} (model loading)"
            except (httpx.HTTPError, ValueError) as exc:
                note = f"not answering yet ({type(exc).__name__})"
            if note != last:
                progress(note)
                last = note
            if time.monotonic() >= deadline:
                raise EndpointError(f"{base_url} did not serve {model} within {timeout:.0f} s: {note}")
            time.sleep(interval)


def scale(client: Any, name: str, *, replicas: int | None, min_replicas: int | None,
          max_replicas: int | None, target_qps: float | None) -> dict[str, Any]:
    record = state.load(name)
    if record.kind != "service":
        raise UserError(f"{name} is a single cluster, not a service; only `gptoss-sky serve` deployments scale")
    config = dict(record.config)
    service = dict(config["service"])
    fixed = service.pop("replicas", None)
    policy = dict(service.pop("replica_policy", None) or {})
    if fixed is not None:
        policy.setdefault("min_replicas", fixed)
        policy.setdefault("max_replicas", fixed)
    if replicas is not None:
        min_replicas = max_replicas = replicas
    elif min_replicas is None or max_replicas is None:
        raise UserError("give --replicas R, or --min-replicas A --max-replicas B")
    if min_replicas > max_replicas:
        raise UserError(f"--min-replicas {min_replicas} is above --max-replicas {max_replicas}")
    # Keep the rest of the policy (spot fallback, delays): a replica_policy with min == max is fixed.
    policy.update(min_replicas=min_replicas, max_replicas=max_replicas)
    if target_qps is not None:
        policy["target_qps_per_replica"] = target_qps
    if min_replicas != max_replicas and "target_qps_per_replica" not in policy:
        raise UserError("autoscaling needs --target-qps (requests/s per replica)")
    service["replica_policy"] = policy
    config["service"] = service
    key = state.read_key(record.key_path)
    from launcher import skyapi

    skyapi.task_from_config(config, secrets={record.secret_name: key})  # reject a bad policy before calling out
    client.serve_update(config, name, secrets={record.secret_name: key}, envs={})
    state.save(replace(record, config=config))
    return {"name": name, "replica_policy": policy}


def status(client: Any, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Records joined with live SkyPilot status. Records whose cluster/service is gone are removed."""
    records = {r.name: r for r in state.all_records()}
    wanted = list(names)
    for name in wanted:
        if name not in records:
            raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r} (see `gptoss-sky status`)")
    selected = [records[n] for n in wanted] if wanted else list(records.values())
    ours = state.NAME_PREFIX

    def live(kind: str, query: Callable[[Any], list[dict]]) -> dict[str, dict]:
        if wanted and not any(r.kind == kind for r in selected):
            return {}  # no need to ask SkyPilot about a kind nobody asked for
        return {x["name"]: x for x in query(None) if str(x.get("name", "")).startswith(ours)}

    clusters = live("cluster", client.clusters)
    services = live("service", client.services)
    rows = []
    now = time.time()
    for record in selected:
        live = (clusters if record.kind == "cluster" else services).get(record.name)
        if live is None:
            if record.state != "launching" or now - record.created > 600:
                state.remove(record.name)  # gone from SkyPilot: the record is stale
                rows.append(_row(record, None, now) | {"state": "gone (record removed)"})
                continue
        rows.append(_row(record, live, now))
    recorded = set(records)
    if not wanted:
        for name, live in {**clusters, **services}.items():
            if name not in recorded:
                rows.append({"name": name, "kind": "cluster" if name in clusters else "service",
                             "model": None, "state": f"{live.get('status')} (no local record)",
                             "endpoint": live.get("endpoint")})
    return rows


def _row(record: state.Record, live: dict | None, now: float) -> dict[str, Any]:
    price = (live or {}).get("price_per_hour") or record.price_per_hour
    launched = (live or {}).get("launched_at") or record.created
    uptime = max(0.0, now - launched) if live else 0.0
    replicas = (live or {}).get("replicas") or []
    priced = [r for r in replicas if r.get("price_per_hour")]
    cost = round(price * uptime / 3600, 4) if price else None
    if price is None and priced:  # a service: the sum of its replicas, each billed since it launched
        price = sum(r["price_per_hour"] for r in priced)
        cost = round(sum(r["price_per_hour"] * max(0.0, now - (r.get("launched_at") or launched)) / 3600
                         for r in priced), 4)
    row = {"name": record.name, "kind": record.kind, "model": record.model, "gpus": record.gpus,
           "state": (live or {}).get("status") or record.state, "cloud": (live or {}).get("cloud"),
           "region": (live or {}).get("region"), "price_per_hour": price, "uptime_s": round(uptime),
           "cost_so_far": cost,
           "endpoint": None, "replicas": (live or {}).get("replicas")}
    if live and live.get("endpoint"):
        row["endpoint"] = normalize_endpoint(live["endpoint"])
    return row


def endpoint(client: Any, name: str) -> str:
    record = state.load(name)
    if record.kind == "service":
        services = client.services([name])
        if not services or not services[0].get("endpoint"):
            raise SkyError(f"service {name} has no endpoint yet (status: "
                           f"{services[0]['status'] if services else 'gone'})")
        return normalize_endpoint(services[0]["endpoint"])
    return normalize_endpoint(client.endpoint(name, record.port))


def connection_for(name: str, client: Any | None = None) -> Connection:
    """Endpoint, key, model and price of a deployment gptoss-sky launched."""
    from launcher import skyapi

    client = client or skyapi.SkyClient()
    name = state.validate_name(name)
    record = state.load(name)
    price = record.price_per_hour
    if price is None and record.kind == "cluster":  # what SkyPilot actually launched, for bench's $/1M
        price = next((c.get("price_per_hour") for c in client.clusters([name]) if c.get("name") == name), None)
    return Connection(endpoint(client, name), state.read_key(record.key_path), record.served_model, price)


def down_targets(client: Any, names: Sequence[str], everything: bool) -> list[tuple[str, str]]:
    """Resolve what `down` would remove, before removing anything: [(name, kind)]."""
    records = {r.name: r for r in state.all_records()}
    if everything:
        targets = {n: r.kind for n, r in records.items()}
        for c in client.clusters(None):
            if str(c.get("name", "")).startswith(state.NAME_PREFIX):
                targets.setdefault(c["name"], "cluster")
        for s in client.services(None):
            if str(s.get("name", "")).startswith(state.NAME_PREFIX):
                targets.setdefault(s["name"], "service")
        return sorted(targets.items())
    out = []
    for name in names:
        if name in records:
            out.append((name, records[name].kind))
            continue
        if not name.startswith(state.NAME_PREFIX):
            raise UnknownDeploymentError(f"{name!r} was not launched by gptoss-sky (names start with "
                                         f"{state.NAME_PREFIX!r}); nothing was touched")
        if any(c.get("name") == name for c in client.clusters([name])):
            out.append((name, "cluster"))
        elif any(s.get("name") == name for s in client.services([name])):
            out.append((name, "service"))
        else:
            raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r}; nothing was touched")
    return out


def down(client: Any, targets: Sequence[tuple[str, str]], purge: bool, progress: Progress) -> list[str]:
    removed = []
    for name, kind in targets:
        progress(f"Tearing down {kind} {name}...")
        if kind == "service":
            client.serve_down(name, purge=purge)
        else:
            client.down(name, purge=purge)
        state.remove(name)
        removed.append(name)
    return removed


def idle_serve_controllers(client: Any) -> list[str]:
    """Serve controller clusters left once no service runs (they bill until they stop themselves)."""
    if client.services(None):
        return []
    return [c["name"] for c in client.clusters(None) if str(c.get("name", "")).startswith("sky-serve-controller")]
