"""Deployment lifecycle: plan -> render -> launch -> wait -> smoke; scale, status, endpoint, down.

Talks to SkyPilot only through a `SkyClient` (launcher.sky.seam; injected, so tests pass FakeSky), and
keeps a local record per deployment (launcher.sky.state) written *before* anything is launched, so an
interrupted or failed launch is always visible to `status` and removable with `down`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from launcher.errors import (
    ApiServerUnreachableError,
    EndpointError,
    GptossSkyError,
    InterruptedLaunch,
    LaunchFailedError,
    NotFoundError,
    RequestStalledError,
    SkyError,
    StateError,
    UnknownDeploymentError,
    UserError,
)
from launcher.node import render
from launcher.plan.catalog import Catalog, Model
from launcher.plan.offers import Plan
from launcher.plan.recipes import Recipe
from launcher.sky import state
from launcher.sky import watch as watch_mod
from launcher.sky.seam import SkyClient
from launcher.sky.skyapi import status_names

Progress = Callable[[str], None]
LB_TIMEOUT_S = 600  # a READY service's load balancer answers within this, or something is wrong


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
                   ondemand_fallback: bool = False, cache: str | None = None) -> render.Deployment:
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
        target_qps=target_qps, ondemand_fallback=ondemand_fallback, cache=cache,
        title=f"{model.name} as {name} on the cheapest available of: {gpus}",
    )


def name_taken(name: str) -> str | None:
    """Why `name` cannot be launched from this client (it has a record, maybe corrupt), or None."""
    if state.exists(name):
        return f"a deployment named {name} already exists; pick another --name or `gptoss-sky down {name}` first"
    if state.has_key(name):
        return state.orphan_key_message(name)
    return None


def _check_free(client: SkyClient, name: str, service: bool) -> None:
    taken = name_taken(name)
    if taken:
        raise UserError(taken)
    live = client.services([name]) if service else client.clusters([name])
    if any(item.get("name") == name for item in live):
        raise UserError(f"SkyPilot already has a {'service' if service else 'cluster'} named {name}; "
                        "gptoss-sky will not touch it: pick another --name")


def check_pinned_infra(client: SkyClient | None, infra: str | None) -> None:
    """Before any waiting, what `--infra` pins and SkyPilot would only find out slowly: a cloud that
    cannot open the engine's port (UserError, offline), a Kubernetes context the API server cannot reach
    (SkyError, SkyPilot's own words, in one bounded request; only with a client)."""
    from launcher.sky import skyapi

    if not infra:
        return
    cloud, region, _ = skyapi.parse_infra(infra)
    why = skyapi.missing_feature(cloud, "open_ports")
    if why:
        raise UserError(f"--infra {infra}: {why} The engine's port must be reachable: pick another --infra")
    if cloud == "kubernetes" and client is not None:
        reason = client.kubernetes_unreachable(region)
        if reason:
            reason = " ".join(reason.split())
            raise SkyError(f"--infra {infra}: the SkyPilot API server cannot reach this Kubernetes context: "
                           f"{reason}. Next: `kubectl get nodes --context {region or '<context>'}` on the API "
                           "server's host, then `sky check kubernetes`")


def check_kubernetes_answers(client: SkyClient) -> None:
    """With no --infra, SkyPilot's optimizer asks every enabled Kubernetes context about each GPU
    spelling of the task, and waits out a dead one each time (measured on a local API server: 448
    requests to a refusing context, minutes for one that times out) before it tries anything else or
    reports "no cloud is enabled". Ask each context once now and, if one cannot be reached, say so with
    SkyPilot's cause and the next command (SkyError, exit 1) before anything is launched."""
    enabled = client.enabled_infra()
    kube = {i: i.partition("/")[2] or None for i in enabled if i.split("/")[0] == "kubernetes"}
    reasons = {infra: client.kubernetes_unreachable(ctx) for infra, ctx in kube.items()}
    dead = [infra for infra, reason in reasons.items() if reason]
    if not dead:
        return
    cause = " ".join(str(reasons[dead[-1]]).split())
    if len(dead) == len(enabled):
        which = "it" if len(kube) == 1 else "any of its contexts"
        raise SkyError(f"the only infra SkyPilot has enabled is Kubernetes, and the API server cannot reach "
                       f"{which}: {cause}. Next: `kubectl get nodes` on the API server's host, then "
                       "`sky check kubernetes`")
    answering = [i for i in enabled if i not in dead]
    names = ", ".join(kube[infra] or "(default)" for infra in dead)
    raise SkyError(f"the SkyPilot API server cannot reach Kubernetes context {names}: {cause}. SkyPilot would "
                   f"wait on it for every GPU spelling before trying {', '.join(answering)}. Next: `kubectl get "
                   f"nodes --context {kube[dead[0]] or '<context>'}` on the API server's host, then `sky check "
                   f"kubernetes`; or launch on what answers: --infra {answering[0]}")


def check_controller_placeable(client: SkyClient) -> None:
    """A service needs a SkyServe controller first; with nowhere to place it SkyPilot retries every 30 s for
    ever. Say so before serve.up is sent (UserError, exit 2: the API server's setup, as 'no cloud is
    enabled'), with the next command; nothing is recorded or launched."""
    why = client.serve_controller_unplaceable()
    if why:
        raise UserError(f"no enabled infra can host the SkyServe controller a service needs ({why}). Next: "
                        "enable a cloud or Kubernetes cluster that can (`sky check`), or launch one cluster "
                        "without SkyServe with `gptoss-sky up`")


def dry_run_checks(client: SkyClient | None, infra: str | None,
                   cache: str | None) -> tuple[list[str], list[str]]:
    """What a dry run checked beyond SkyPilot's task parser, and what it cannot check without launching:
    (checked, not checked), said as such, never called valid. A region or zone the cloud's catalog lacks
    was refused already (plan.offers.check_region_zone); a Kubernetes context the API server has not
    enabled is refused here (UserError), asked of the server when `client` is given and one answers."""
    from launcher.plan import offers
    from launcher.sky import skyapi

    checked = ["SkyPilot's task parser accepts the YAML"]
    unchecked = ["whether SkyPilot can provision it (credentials, quota, capacity)"]
    if infra:
        cloud, region, zone = skyapi.parse_infra(infra)
        if cloud == "kubernetes":
            _dry_run_context(client, infra, region, checked, unchecked)
        elif cloud in ("ssh", "slurm"):
            unchecked.append(f"--infra {infra} ({cloud} is in no catalog)")
        elif region or zone:
            where = offers.check_region_zone(infra, (cloud, region, zone))
            if where is None:
                unchecked.append(f"--infra {infra} (no {cloud} catalog here)")
            else:
                checked.append(f"{cloud} region {region} is in {where}" if region else f"{cloud} zone {zone}")
                if zone and cloud == "aws":
                    unchecked.append(f"zone {zone} (AWS names zones per account)")
                elif zone:
                    checked.append(f"zone {zone} is in {region}")
    if cache:
        unchecked.append(f"whether {cache} exists and can be mounted (only its form is checked)")
    return checked, unchecked


def _dry_run_context(client: SkyClient | None, infra: str, context: str | None, checked: list[str],
                     unchecked: list[str]) -> None:
    name = context or "(default)"
    if client is None:
        unchecked.append(f"Kubernetes context {name}")
        return
    try:
        enabled = client.enabled_infra()
    except ApiServerUnreachableError:
        unchecked.append(f"Kubernetes context {name} (no SkyPilot API server answered)")
        return
    contexts = [i for i in enabled if i.split("/")[0] == "kubernetes"]
    if (f"kubernetes/{context}" not in contexts) if context else not contexts:
        raise UserError(f"--infra {infra}: the SkyPilot API server has no enabled Kubernetes context {name}; "
                        f"enabled: {', '.join(contexts) or 'none'}. Next: add it to the API server's kubeconfig, "
                        "then `sky check kubernetes`")
    checked.append(f"Kubernetes context {name} is enabled on the API server")
    unchecked.append(f"whether Kubernetes context {name} answers")


def launch(catalog: Catalog, client: SkyClient, model: Model, deployment: render.Deployment, *,
           progress: Progress, ready_timeout: float = 3600, smoke: Callable | None = None,
           observer: watch_mod.Observer | None = None, poll: float | None = None,
           envs: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
           on_interrupt: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Launch one cluster (or service), watch the node until the model answers, smoke-test it.

    envs/secrets: the user's --env/--secret, handed to SkyPilot as its env and secret overrides.

    SkyPilot's request id is saved in the record as soon as the API server has it. On Ctrl-C while that
    request still runs, `on_interrupt(request_id)` decides: True (also when not given) cancels it, False
    leaves it running; either way InterruptedLaunch (exit 130) says which.

    `observer` sees every phase, state and log line (the live view); a failed setup, job, replica or
    engine raises LaunchFailedError within `poll` seconds, with the cause and the last log lines.
    """
    config = render.render_config(catalog, deployment)
    name = deployment.name
    secret = deployment.recipes[0].engine.api_key_env
    _check_free(client, name, deployment.service)
    if deployment.service:
        check_controller_placeable(client)
    check_pinned_infra(client, deployment.infra)
    if not deployment.infra:
        check_kubernetes_answers(client)
    record = state.Record(name=name, kind="service" if deployment.service else "cluster", model=model.name,
                          served_model=model.served_names[0], key_path=str(state.key_path(name)),
                          created=state.now(), gpus=[r.accelerator for r in deployment.recipes], config=config,
                          secret_name=secret, port=deployment.recipes[0].engine.port, sky_called=False,
                          user_envs=dict(envs or {}), user_secrets=sorted(secrets or {}))
    # The record comes first and exclusively: a second `up` of this name stops here, and a crash or
    # Ctrl-C from now on leaves a record that `status` shows and `down` removes.
    state.claim(record)
    try:
        path = state.new_key(name)
    except BaseException:
        with contextlib.suppress(GptossSkyError):
            state.unclaim(name)  # nothing was launched and no key was made: leave no record either
        raise
    try:
        key = state.read_key(path, name)
    except BaseException:
        with contextlib.suppress(GptossSkyError):
            state.remove(name)  # our own fresh key: nothing was launched, leave no orphan
        raise
    envs = {**(envs or {}), "GPTOSS_IDLE_MINUTES": str(deployment.idle_minutes)}
    secrets = {**(secrets or {}), secret: key}
    poll = watch_mod.POLL_S if poll is None else poll
    saved = {"phases": 0}

    def observe(w: watch_mod.Watch, event: str) -> None:
        if event == "phase":  # keep the timeline in the record, so `status --json` shows it mid-launch
            current = w.phases()
            if len(current) != saved["phases"]:
                saved["phases"] = len(current)
                state.save(replace(record, phases=current))
        if observer is not None:
            observer(w, event)

    def remember(request_id: str) -> None:
        nonlocal record
        record = replace(record, request_id=request_id)
        state.save(record)
        progress(f"SkyPilot request {request_id} (its log: `sky api logs {request_id}`)")

    view = watch_mod.Watch(name, record.kind, observe)
    served = model.served_names[0]
    try:
        if deployment.service:
            progress(f"Starting service {name} (replicas provision, install the engine, download weights)...")
            record = _mark_sky_called(record)
            view.begin("controller")
            endpoint = normalize_endpoint(client.serve_up(config, name, secrets=secrets, envs=envs,
                                                          on_request=remember))
            view.begin("replicas")
            _wait_service_ready(client, name, view, ready_timeout, poll)
            view.begin("answering")
            progress(f"Waiting for {endpoint} to answer...")
            # READY means a replica passed SkyServe's probe: the load balancer follows within seconds
            wait_until_answering(endpoint, key, served, min(ready_timeout, LB_TIMEOUT_S), view.set_note,
                                 interval=min(poll, 5.0))
        else:
            progress(f"Launching cluster {name}: provisioning, setup (engine, weights), then the server...")
            record = _mark_sky_called(record)
            view.begin("provision")
            idle = deployment.idle_minutes
            job_id = client.launch(config, name, secrets=secrets, envs=envs,
                                   idle_minutes=1 if idle else None, down=bool(idle), on_request=remember)
            job_id = job_id if isinstance(job_id, int) and not isinstance(job_id, bool) else None
            endpoint = normalize_endpoint(client.endpoint(name, record.port))
            with httpx.Client(timeout=10) as http:
                watch_mod.watch_cluster(client, name, job_id, lambda: _probe(http, endpoint, key, served), view,
                                        ready_timeout, poll)
            view.begin("answering")
    except (GptossSkyError, KeyboardInterrupt) as exc:
        view.finish()
        raise _launch_stopped(client, replace(record, phases=view.phases()), exc, on_interrupt) from exc
    record = replace(record, state="up", phases=view.phases())
    state.save(record)
    result: dict[str, Any] = {"name": name, "kind": record.kind, "endpoint": endpoint,
                              "model": record.served_model, "key_path": record.key_path}
    if smoke is not None:
        view.begin("smoke")
        result["smoke"] = smoke(endpoint, key, record.served_model)
    view.finish()
    record = replace(record, phases=view.phases())
    state.save(record)
    result["phases"] = record.phases
    return result


def _mark_sky_called(record: state.Record) -> state.Record:
    """Saved before SkyPilot is asked: from here on the cluster/service may exist (the API server keeps
    working on a request even when this client is interrupted)."""
    record = replace(record, sky_called=True)
    state.save(record)
    return record


def _launch_stopped(client: SkyClient, record: state.Record, exc: BaseException,
                    on_interrupt: Callable[[str], bool] | None = None) -> GptossSkyError:
    """Record how the launch ended and say what is left and how to remove it: SkyPilot's request is
    cancelled or left running (Ctrl-C: as the user chose; a stalled request: cancelled), and the hint
    says "may still exist" only when SkyPilot may have made something."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    with contextlib.suppress(GptossSkyError, OSError):
        state.save(replace(record, state="interrupted" if interrupted else "failed"))
    name = record.name
    reason = "interrupted" if interrupted else str(exc)
    if not record.sky_called:
        message = (f"{name} did not start ({reason}) before SkyPilot was asked for anything, so nothing "
                   f"exists; `gptoss-sky down {name}` removes its record")
        return InterruptedLaunch(message) if interrupted else SkyError(message)
    request = _end_request(client, record, interrupted, on_interrupt,
                           stalled=isinstance(exc, RequestStalledError))
    left = _anything_left(client, record)
    if left is False and not request.get("running"):
        hint = (f"SkyPilot left nothing running for it; `gptoss-sky down {name}` removes its record and key")
    else:
        hint = (f"The {record.kind} may still exist and bill: check `gptoss-sky status {name}`, remove it with "
                f"`gptoss-sky down {name}`")
    said = f" {request['said']}." if request.get("said") else ""
    if interrupted:
        return InterruptedLaunch(f"{name}: interrupted.{said} {hint}")
    if isinstance(exc, RequestStalledError):
        return SkyError(f"{name} did not come up: {exc.cause}.{said} {hint}; "
                        f"SkyPilot's whole log: `sky api logs {exc.request_id}`")
    if isinstance(exc, LaunchFailedError):
        tail = "\n".join(f"  {line}" for line in exc.log_tail) or "  (the log is empty)"
        return LaunchFailedError(f"{name} did not come up: {exc.cause}.{said} {hint}\n"
                                 f"Last {len(exc.log_tail)} log lines:\n{tail}",
                                 cause=exc.cause, log_tail=exc.log_tail, phases=record.phases)
    return SkyError(f"{name} did not come up ({reason}).{said} {hint}")


def _end_request(client: SkyClient, record: state.Record, interrupted: bool, on_interrupt: Callable[[str], bool] | None,
                 stalled: bool) -> dict[str, Any]:
    """After a launch stopped: cancel its SkyPilot request (stalled, or Ctrl-C and the user chose so) or
    leave it running; {"running": bool, "said": what happened, in words}."""
    rid = record.request_id
    if rid is None or not (interrupted or stalled):
        return {}
    try:
        status = client.request_status(rid)
    except GptossSkyError:
        return {"running": True, "said": f"SkyPilot request {rid} could not be asked about: it may still run "
                                         f"(`sky api cancel {rid}` ends it)"}
    if status not in status_names().request_active:
        return {"running": False, "said": f"SkyPilot request {rid} had already ended ({status or 'unknown'})"}
    cancel = True
    if interrupted and on_interrupt is not None:
        try:
            cancel = bool(on_interrupt(rid))
        except (KeyboardInterrupt, EOFError):  # a second Ctrl-C at the question: the default, cancel
            cancel = True
    if not cancel:
        return {"running": True, "said": f"SkyPilot request {rid} was left running, as asked (`sky api cancel "
                                         f"{rid}` ends it; `gptoss-sky down {record.name}` cancels it and tears "
                                         "down what it made)"}
    try:
        after = client.cancel_request(rid)
    except GptossSkyError as cancel_exc:
        return {"running": True, "said": f"cancelling SkyPilot request {rid} failed ({cancel_exc}); "
                                         f"`sky api cancel {rid}` ends it"}
    why = "it was retrying for ever" if stalled else "as asked"
    if after in status_names().request_active:
        return {"running": True, "said": f"SkyPilot request {rid} is still {after} after cancelling it"}
    if after != status_names().request_cancelled:
        return {"running": False, "said": f"SkyPilot request {rid} had already ended ({after or 'unknown'})"}
    return {"running": False, "said": f"gptoss-sky cancelled SkyPilot request {rid} ({why})"}


def _anything_left(client: SkyClient, record: state.Record) -> bool | None:
    """Whether SkyPilot lists the deployment's cluster/service (None: it could not be asked)."""
    try:
        query = client.services if record.kind == "service" else client.clusters
        return any(x.get("name") == record.name for x in query([record.name]))
    except GptossSkyError:
        return None


def _wait_service_ready(client: SkyClient, name: str, view: watch_mod.Watch, timeout: float,
                        poll: float = watch_mod.POLL_S) -> None:
    """Until SkyServe says READY; a failed controller, service or replica ends the wait at once."""
    watch_mod.watch_service(client, name, view, timeout, poll)


def _probe(http: httpx.Client, base_url: str, key: str, model: str) -> str | None:
    """None when /health answers and /v1/models (with the key) lists the model; else what was seen."""
    try:
        health = http.get(f"{base_url}/health")
        if health.status_code != 200:
            return f"/health answered {health.status_code} (model loading)"
        models = http.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        if models.status_code == 200 and any(m.get("id") == model for m in models.json().get("data", [])):
            return None
        return f"/v1/models answered {models.status_code}"
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return f"not answering yet ({type(exc).__name__})"


def wait_until_answering(base_url: str, key: str, model: str, timeout: float, progress: Progress,
                         interval: float = 5.0) -> None:
    """Poll /health, then /v1/models with the key, until the served model is listed."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=10) as http:
        while True:
            note = _probe(http, base_url, key, model)
            if note is None:
                return
            if note != last:
                progress(note)
                last = note
            if time.monotonic() >= deadline:
                raise EndpointError(f"{base_url} did not serve {model} within {timeout:.0f} s: {note}")
            time.sleep(interval)


def scale(client: SkyClient, name: str, *, replicas: int | None, min_replicas: int | None,
          max_replicas: int | None, target_qps: float | None) -> dict[str, Any]:
    record = state.load(name)
    if record.kind != "service":
        raise UserError(f"{name} is a single cluster, not a service; only `gptoss-sky serve` deployments scale")
    config = dict(record.config)
    service = config.get("service")
    policy = service.get("replica_policy") if isinstance(service, dict) else None
    if not isinstance(service, dict) or not isinstance(policy, (dict, type(None))):
        raise StateError(f"the record of {name} ({state.record_path(name)}) has no usable service spec; "
                         f"scale it with `sky serve update`, or `gptoss-sky down {name}`")
    service = dict(service)
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
    key = state.read_record_key(record)
    from launcher.sky import skyapi

    # The update replaces the service's task: its --env/--secret go again, or new replicas lack them.
    missing = [n for n in record.user_secrets if not os.environ.get(n)]
    if missing:
        raise UserError(f"{name} was served with --secret {', '.join(missing)}: export "
                        f"{'it' if len(missing) == 1 else 'them'} in this shell so new replicas get "
                        f"{'it' if len(missing) == 1 else 'them'} too")
    secrets = {**{n: os.environ[n] for n in record.user_secrets}, record.secret_name: key}
    skyapi.task_from_config(config, secrets=secrets)  # reject a bad policy before calling out
    client.serve_update(config, name, secrets=secrets, envs=dict(record.user_envs))
    state.save(replace(record, config=config))
    return {"name": name, "replica_policy": policy}


# --- who owns a live deployment (a team shares one SkyPilot API server) -------------------------------

def _current_user(client: SkyClient) -> Any:
    """This client's SkyPilot user (name or id), or None when SkyPilot cannot say."""
    try:
        return client.current_user()
    except GptossSkyError:
        return None


def _owner(live: dict | None) -> Any:
    """Who launched a live cluster/service, as SkyPilot records it (user_name, else user_hash)."""
    if not live:
        return None
    return live.get("owner") or live.get("user_name") or live.get("user_hash")


def _someone_elses(live: dict | None, me: Any) -> bool:
    """True only when both sides are known and differ; unknown ownership is never treated as foreign.
    SkyPilot's user hash decides when both carry one (names can repeat across machines)."""
    if not live or me is None:
        return False
    if isinstance(me, dict):
        for key in ("user_hash", "user_name"):
            if live.get(key) and me.get(key):
                return str(live[key]) != str(me[key])
        mine = {str(v) for v in me.values() if v}
    elif isinstance(me, (list, tuple, set)):
        mine = {str(v) for v in me if v}
    else:
        mine = {str(me)}
    owner = _owner(live)
    return owner is not None and bool(mine) and str(owner) not in mine


# --- status --------------------------------------------------------------------------------------------

NOT_FOUND_HINT = ("SkyPilot does not list it: if it is really gone, `gptoss-sky down {name}` cleans up its "
                  "record and key; if this client points at another API server than the one it was "
                  "launched from, check `sky api info`")


def status(client: SkyClient, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Records joined with live SkyPilot status. Never deletes anything: a deployment SkyPilot does not
    list is shown as "not found" with what to do, and its record and key stay."""
    records, corrupt = state.scan()
    by_name = {r.name: r for r in records}
    broken = {c.name: c for c in corrupt}
    wanted = list(names)
    for name in wanted:
        if name not in by_name and name not in broken:
            raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r} (see `gptoss-sky status`)")
    selected = [by_name[n] for n in wanted if n in by_name] if wanted else records
    bad = [broken[n] for n in wanted if n in broken] if wanted else corrupt
    ours = state.NAME_PREFIX
    me = _current_user(client)

    def live(kind: str, query: Callable[[Any], list[dict]]) -> dict[str, dict]:
        if wanted and not any(r.kind == kind for r in selected):
            return {}  # no need to ask SkyPilot about a kind nobody asked for
        return {x["name"]: x for x in query(None) if str(x.get("name", "")).startswith(ours)}

    clusters = live("cluster", client.clusters)
    services = live("service", client.services)
    rows = []
    now = time.time()
    for record in selected:
        found = (clusters if record.kind == "cluster" else services).get(record.name)
        if found is not None and _someone_elses(found, me):
            rows.append(_row(record, None, now) | {
                "state": "not found", "owner": str(_owner(found)),
                "note": f"the name is now used by {_owner(found)}'s deployment; yours is gone: "
                        f"`gptoss-sky down {record.name}` removes only your record and key"})
            continue
        row = _row(record, found, now)
        pending = _running_request(client, record)
        if pending is not None:
            rid = record.request_id
            row["state"] = f"launching (SkyPilot request {pending})"
            row["request"] = {"id": rid, "status": pending}
            row["note"] = (f"SkyPilot is still working on request {rid} (`sky api logs {rid}`); "
                           f"`gptoss-sky down {record.name}` cancels it and tears down what it made")
        elif found is None:
            if not record.sky_called:
                row["state"] = f"{record.state} (nothing launched)"
                row["note"] = f"`gptoss-sky down {record.name}` removes its record"
            elif record.state == "launching" and now - record.created < 600:
                row["note"] = "SkyPilot does not list it yet"
            else:
                row["state"] = "not found"
                row["note"] = NOT_FOUND_HINT.format(name=record.name)
        rows.append(row)
    for exc in bad:
        rows.append({"name": exc.name, "kind": None, "model": None, "state": "unreadable record",
                     "endpoint": None, "note": str(exc)})
    if not wanted:
        known = set(by_name) | set(broken)
        for name, found in {**clusters, **services}.items():
            if name in known:
                continue
            owner = _owner(found)
            foreign = _someone_elses(found, me)
            whose = f"owned by {owner}, " if foreign else ""
            rows.append({"name": name, "kind": "cluster" if name in clusters else "service", "model": None,
                         "state": f"{found.get('status')} ({whose}no local record)",
                         "owner": str(owner) if owner is not None else None,
                         "endpoint": found.get("endpoint"),
                         "note": None if foreign else f"not launched from this client (or its record was "
                                                      f"forgotten); `gptoss-sky down {name} --force` tears it down"})
    return rows


def _running_request(client: SkyClient, record: state.Record) -> str | None:
    """The state of the deployment's launch request while SkyPilot still works on it, else None."""
    if record.request_id is None or record.state == "up":
        return None
    status = client.request_status(record.request_id)
    return status if status in status_names().request_active else None


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
           "endpoint": None, "replicas": (live or {}).get("replicas"), "note": None, "phases": record.phases}
    if live and live.get("endpoint"):
        row["endpoint"] = normalize_endpoint(live["endpoint"])
    return row


def endpoint(client: SkyClient, name: str) -> str:
    record = state.load(name)
    if record.kind == "service":
        services = client.services([name])
        if not services or not services[0].get("endpoint"):
            raise SkyError(f"service {name} has no endpoint yet (status: "
                           f"{services[0]['status'] if services else 'gone'})")
        return normalize_endpoint(services[0]["endpoint"])
    return normalize_endpoint(client.endpoint(name, record.port))


def connection_for(name: str, client: SkyClient | None = None) -> Connection:
    """Endpoint, key, model and price of a deployment gptoss-sky launched."""
    from launcher.sky import skyapi

    name = state.validate_name(name)
    record = state.load(name)
    key = state.read_record_key(record)  # before any SkyPilot call: a lost key is known at once
    client = client or skyapi.SkyPilotClient()
    price = record.price_per_hour
    if price is None and record.kind == "cluster":  # what SkyPilot actually launched, for bench's $/1M
        price = next((c.get("price_per_hour") for c in client.clusters([name]) if c.get("name") == name), None)
    return Connection(endpoint(client, name), key, record.served_model, price)


# --- down and forget -------------------------------------------------------------------------------------

RECORD_ONLY = "record"  # a target whose cluster/service is not ours to call down on (nothing, or not ours)


def _local(name: str) -> tuple[state.Record | None, bool]:
    """(record, exists): the record when readable; exists is True even for a corrupt one."""
    try:
        return state.load(name), True
    except UnknownDeploymentError:
        return None, False
    except StateError:
        return None, state.exists(name)


def _live(client: SkyClient, name: str, kinds: Sequence[str]) -> tuple[str, dict] | None:
    """(kind, record) of the live cluster or service called `name`, the first of `kinds` SkyPilot lists."""
    for kind in kinds:
        query = client.clusters if kind == "cluster" else client.services
        item = next((x for x in query([name]) if x.get("name") == name), None)
        if item is not None:
            return kind, item
    return None


def recorded_targets(client: SkyClient) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """What `down --all` removes: every deployment this client has a record of (a corrupt one too),
    [(name, kind)] sorted, kind RECORD_ONLY where nothing was launched or the live one is someone else's.
    Also the live gptoss-* clusters/services with no record here, which it leaves alone: [{name, kind,
    owner}] (`down NAME --force` takes one down)."""
    me = _current_user(client)
    records, corrupt = state.scan()
    live: dict[str, tuple[str, dict | None]] = {}
    for kind, query in (("cluster", client.clusters), ("service", client.services)):
        for item in query(None):
            if str(item.get("name", "")).startswith(state.NAME_PREFIX):
                live.setdefault(item["name"], (kind, item))
    targets: dict[str, str] = {}
    for record in records:
        _, theirs = live.get(record.name, (record.kind, None))
        targets[record.name] = RECORD_ONLY if not record.sky_called or _someone_elses(theirs, me) else record.kind
    for exc in corrupt:
        kind, theirs = live.get(exc.name, (RECORD_ONLY, None))
        targets[exc.name] = RECORD_ONLY if _someone_elses(theirs, me) else kind
    unrecorded: list[dict[str, Any]] = [{"name": name, "kind": kind, "owner": _owner(found)}
                                        for name, (kind, found) in sorted(live.items()) if name not in targets]
    return sorted(targets.items()), unrecorded


def named_target(client: SkyClient, name: str, force: bool = False) -> tuple[str, str]:
    """What `down NAME` removes, (name, kind): a deployment this client recorded (RECORD_ONLY when
    nothing was launched or the live one is now someone else's). A live gptoss-* one with no record here
    only with `force`, and never another user's; otherwise an error that touches nothing."""
    record, recorded = _local(name)
    if record is not None and not record.sky_called:
        return name, RECORD_ONLY
    if not recorded and not name.startswith(state.NAME_PREFIX):
        raise UnknownDeploymentError(f"{name!r} was not launched by gptoss-sky (names start with "
                                     f"{state.NAME_PREFIX!r}); nothing was touched")
    me = _current_user(client)
    found = _live(client, name, [record.kind] if record is not None else ["cluster", "service"])
    if found is not None and _someone_elses(found[1], me):
        if not recorded:
            who = _owner(found[1])
            if found[1].get("user_hash") and str(found[1]["user_hash"]) != str(who):
                who = f"{who} (SkyPilot user {found[1]['user_hash']})"
            raise UserError(f"{name} belongs to {who} on the shared SkyPilot API server; "
                            "gptoss-sky will not tear down someone else's deployment")
        return name, RECORD_ONLY  # our record is stale; the live one is theirs
    if recorded:
        return name, found[0] if found else (record.kind if record is not None else RECORD_ONLY)
    if found is None:
        raise UnknownDeploymentError(f"no gptoss-sky deployment named {name!r}; nothing was touched")
    if not force:
        raise UserError(f"{name} is a live SkyPilot {found[0]} with no gptoss-sky record on this machine (launched "
                        f"elsewhere, or its record was forgotten); nothing was touched: `gptoss-sky down {name} "
                        "--force` tears it down")
    return name, found[0]


def down(client: SkyClient, targets: Sequence[tuple[str, str]], purge: bool,
         progress: Progress) -> list[dict[str, Any]]:
    """Tear down every target, whatever happens to the others; one result per target:
    {"name", "kind", "removed": bool, "message"}. A record and key go only when the cluster/service is
    gone (torn down now, or SkyPilot has no such thing), nothing was launched, or --purge."""
    results = []
    for name, kind in targets:
        if kind == RECORD_ONLY:
            record, _ = _local(name)
            why = ("nothing was launched" if record is not None and not record.sky_called
                   else "nothing of it runs as this SkyPilot user")
            results.append(_forget_result(name, kind, why))
            continue
        still = _cancel_launch_request(client, name, progress)
        if still is not None:
            results.append({"name": name, "kind": kind, "removed": False, "message": still})
            continue
        progress(f"Tearing down {kind} {name}...")
        try:
            if kind == "service":
                client.serve_down(name, purge=purge)
            else:
                client.down(name, purge=purge)
            message = "torn down"
        except NotFoundError:
            message = f"SkyPilot has no {kind} {name}: already gone"
        except SkyError as exc:
            if not purge:
                results.append({"name": name, "kind": kind, "removed": False,
                                "message": f"{exc} (record kept; retry, or add --purge to remove it anyway)"})
                continue
            message = f"{exc}; removed anyway (--purge)"
        results.append(_forget_result(name, kind, message))
    return results


def _cancel_launch_request(client: SkyClient, name: str, progress: Progress) -> str | None:
    """Cancel the deployment's launch request if SkyPilot still works on it (it could bring the
    cluster/service up after the teardown); None when none runs any more, else why the record stays."""
    record, _ = _local(name)
    if record is None or _running_request(client, record) is None:
        return None
    rid = str(record.request_id)
    progress(f"Cancelling SkyPilot request {rid} (the launch of {name} is still running)...")
    after = client.cancel_request(rid)
    if after in status_names().request_active:
        return (f"SkyPilot request {rid} is still {after} after cancelling it; record and key kept: "
                f"`gptoss-sky down {name}` again, or `sky api cancel {rid}`")
    return None


def _forget_result(name: str, kind: str, message: str) -> dict[str, Any]:
    try:
        files = state.remove(name)
    except StateError as exc:
        return {"name": name, "kind": kind, "removed": False, "message": f"{message}, but {exc}"}
    suffix = "; record and key removed" if files else ""
    return {"name": name, "kind": kind, "removed": True, "message": message + suffix}


def forget(name: str) -> list[str]:
    """Remove the local record and key of `name` without asking SkyPilot anything (the explicit way to
    drop a record, e.g. of a deployment that lives on another API server)."""
    if not state.exists(name) and not state.key_path(name).exists():
        raise UnknownDeploymentError(f"no gptoss-sky record or key named {name!r}; nothing was touched")
    return state.remove(name)


def idle_serve_controllers(client: SkyClient) -> list[str]:
    """Serve controller clusters left once no service runs (they bill until they stop themselves)."""
    if client.services(None):
        return []
    return [c["name"] for c in client.clusters(None) if str(c.get("name", "")).startswith("sky-serve-controller")]
