"""up, serve, scale: launch a cluster or a service, watch it come up, smoke-test it; resize a service."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import yaml

from launcher import lifecycle
from launcher import phases as phases_mod
from launcher.cli import redact
from launcher.cli._common import (
    json_option,
    money,
    non_negative_int,
    positive_int,
    positive_number,
    print_json,
    stderr,
    stdout,
)
from launcher.cli.launch_view import LaunchView
from launcher.cli.options import launch_options, plan_options
from launcher.cli.planning import priced_plan, print_plan, resolve
from launcher.errors import GptossSkyError, NoCloudError, UserError
from launcher.node import render
from launcher.sky import state

if TYPE_CHECKING:
    from launcher.verify.smoke import SmokeReport


def _launch_common(kind, plan_args, name, image, dryrun, yes, json_, no_smoke, envs=(), secrets=(), **service):
    from launcher.plan import engine_control

    cache = plan_args.pop("cache", None)
    on_interrupt = plan_args.pop("on_interrupt", None)
    cache = render.check_cache_uri(cache) if cache is not None else None  # bad input: before pricing

    catalog, m, _, _ = resolve(**plan_args, quiet=True)
    lifecycle.check_pinned_infra(None, plan_args.get("infra"))  # offline: before pricing, dry runs too
    engine = catalog.engine(plan_args["engine"])
    user_envs = engine_control.parse_envs(envs, engine)
    user_secrets = engine_control.parse_secrets(secrets, engine)
    engine_control.check_no_overlap(user_envs, user_secrets)
    for value in user_secrets.values():
        redact.add(value)  # whatever SkyPilot or the node echoes back
    try:  # before the seconds of pricing
        full_name = state.validate_name(name or f"{kind_prefix(kind)}{m.short}")
    except UserError as exc:
        raise UserError(f"--name: {exc}") from None
    taken = lifecycle.name_taken(full_name)
    if taken and not dryrun:
        raise UserError(taken)
    catalog, m, result = priced_plan(**plan_args)
    spot, infra, optimize = plan_args["spot"], plan_args["infra"], plan_args["optimize"]
    recipes = lifecycle.choose_recipes(result, top_kinds=3 if optimize == "cost-per-token" else None)
    deployment = lifecycle.deployment_for(full_name, recipes, service=kind == "service", image=image, spot=spot,
                                          infra=infra, cache=cache, **service)
    text = render.render_text(catalog, deployment)
    from launcher.sky import skyapi

    skyapi.task_from_config(yaml.safe_load(text), secrets={recipes[0].engine.api_key_env: "dry-run-placeholder"})
    if not json_:
        print_plan(result, 8)
        stderr.print(f"[bold]{full_name}[/]: {m.name} on the cheapest available of "
                     f"{', '.join(r.accelerator for r in recipes)} (SkyPilot fails over in price order).")
    if dryrun:
        if taken:
            stderr.print(f"Note: {taken}", markup=False, soft_wrap=True)
        asks_server = bool(infra) and skyapi.parse_infra(infra)[0] == "kubernetes"
        checked, unchecked = lifecycle.dry_run_checks(skyapi.SkyPilotClient() if asks_server else None, infra,
                                                      cache)
        if json_:
            print_json({"name": full_name, "kind": kind, "dryrun": True, "yaml": text,
                        "envs": user_envs, "secrets": sorted(user_secrets),
                        "offers": [o.to_dict() for o in result.offers[:8]],
                        "checked": checked, "not_checked": unchecked})
        else:
            click.echo(text, nl=False)
            stderr.print(f"Dry run: nothing launched. Checked: {'; '.join(checked)}. Not checked in a dry run: "
                         f"{'; '.join(unchecked)}.", style="dim", markup=False, soft_wrap=True)
        return 0
    if result.no_cloud_enabled:
        raise NoCloudError("no cloud is enabled in SkyPilot, so nothing can be launched: run `sky check` "
                           "(or try --dryrun)")
    first = result.offers[0].price_per_hour
    cost = f"from {money(first)}/hour" if first is not None else "price unknown"
    if not yes and not click.confirm(f"Launch {full_name} ({cost})?", err=True):
        raise click.Abort()
    client = skyapi.SkyPilotClient()
    smoke = None if no_smoke else _SmokeRunner()
    with LaunchView(json_) as view:
        try:
            outcome = lifecycle.launch(catalog, client, m, deployment, progress=view.progress, smoke=smoke,
                                       observer=view.observe, envs=user_envs, secrets=user_secrets,
                                       on_interrupt=_interrupt_choice(on_interrupt, yes, json_, view))
        except GptossSkyError as exc:
            if json_ and not isinstance(exc, UserError):  # the launch failed: the one JSON document says
                # what failed, as the error line on stderr does (bad input: the CLI's {"error"} document)
                print_json({"name": full_name, "kind": kind, "ok": False, "error": str(exc),
                            "cause": getattr(exc, "cause", str(exc)), "log_tail": getattr(exc, "log_tail", []),
                            "phases": getattr(exc, "phases", None) or _recorded_phases(full_name)})
            raise
    return _report_outcome(outcome, smoke, json_)


def _interrupt_choice(flag, yes, json_, view):
    """Ctrl-C with SkyPilot's request still running: True cancels it. --on-interrupt decides; else the
    question on a terminal, and cancel where nobody can answer (-y, --json, no terminal)."""
    import sys

    if flag is not None or yes or json_ or not (sys.stdin.isatty() and stderr.is_terminal):
        return lambda request_id: (flag or "cancel") == "cancel"

    def ask(request_id):
        view.pause()
        return click.confirm(f"Cancel SkyPilot request {request_id}? (no: leave it running on the API server)",
                             default=True, err=True)
    return ask


def _recorded_phases(name):
    try:
        return state.load(name).phases
    except GptossSkyError:
        return []


def _report_outcome(outcome, smoke, json_):
    """Smoke report check by check, then "Ready" only if smoke passed (or was skipped); exit 1 if not."""
    report = outcome.get("smoke")
    smoke_ok = not isinstance(report, dict) or bool(report.get("ok"))
    outcome["ok"] = smoke_ok
    if json_:
        print_json(outcome)
    else:
        if smoke is not None and smoke.report is not None:
            from launcher.cli.verify import print_smoke_report

            print_smoke_report(smoke.report)
        stderr.print(f"[dim]Time: {phases_mod.summary(outcome.get('phases') or [])}[/]")
        if smoke_ok:
            _print_ready(outcome)
    if not smoke_ok:
        name = outcome["name"]
        failed = ", ".join(report.get("failed") or []) or "see the report above"
        stderr.print(f"[red]Smoke test failed[/] ({failed}): {name} is up at {outcome['endpoint']} but does not "
                     f"serve correctly. It stays up and bills: re-check with `gptoss-sky smoke {name}`, "
                     f"remove it with `gptoss-sky down {name}`.")
        return 1
    return 0


def kind_prefix(kind):
    return "" if kind == "cluster" else "svc-"


class _SmokeRunner:
    """The smoke test lifecycle runs once the model answers; keeps the report for printing."""

    def __init__(self) -> None:
        self.report: SmokeReport | None = None

    def __call__(self, endpoint, key, model):
        from launcher.verify import smoke as smoke_mod

        report = self.report = smoke_mod.smoke(endpoint, key, model)
        return report.to_dict()


def _print_ready(outcome):
    url, key_path, model = outcome["endpoint"], outcome["key_path"], outcome["model"]
    stdout.print(f"[bold green]Ready[/]: {outcome['name']} serves {model}")
    stdout.print(f"  endpoint  {url}/v1")
    stdout.print(f"  API key   {key_path} (mode 0600)")
    stdout.print(f"  curl      curl {url}/v1/chat/completions -H \"Authorization: Bearer $(cat {key_path})\" "
                 f"-H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"messages\": "
                 f"[{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'")
    stdout.print(f"  python    OpenAI(base_url=\"{url}/v1\", api_key=open(\"{key_path}\").read().strip())")


@click.command("up")
@plan_options
@click.option("--name", "-c", "--cluster", "name",
              help="Cluster name (gptoss- is prefixed). Default: gptoss-<model>. -c/--cluster as in SkyPilot.")
@click.option("--idle-minutes", "-i", "--idle-minutes-to-autostop", "idle_minutes", type=int, default=60,
              show_default=True, callback=positive_int,
              help="Tear the cluster down after this many minutes without a request.")
@click.option("--down", "down_when_idle", is_flag=True,
              help="Tear down (never stop) when idle: what gptoss-sky always does; accepted as in SkyPilot.")
@click.option("--no-autostop", is_flag=True, help="Keep the cluster until `gptoss-sky down`.")
@launch_options
def up(name, idle_minutes, down_when_idle, no_autostop, image, dryrun, yes, no_smoke, json_, envs, secrets,
       **plan_args):
    """Launch MODEL on the cheapest available GPU that fits, wait until it answers, smoke-test it."""
    if down_when_idle and no_autostop:
        raise UserError("--down tears the cluster down when idle; --no-autostop keeps it: give one")
    return _launch_common("cluster", plan_args, name, image, dryrun, yes, json_, no_smoke, envs, secrets,
                          idle_minutes=0 if no_autostop else idle_minutes)


@click.command("serve")
@plan_options
@click.option("--name", help="Service name (gptoss-svc-<model> by default).")
@click.option("--replicas", type=int, callback=positive_int, help="Fixed number of replicas.")
@click.option("--min-replicas", type=int, callback=non_negative_int, help="Autoscaling lower bound.")
@click.option("--max-replicas", type=int, callback=positive_int, help="Autoscaling upper bound.")
@click.option("--target-qps", type=float, callback=positive_number,
              help="Requests/s per replica before scaling out (with --min/--max-replicas); a saved --profile "
                   "gives the one it measured.")
@click.option("--ondemand-fallback", is_flag=True, help="With --spot: fall back to on-demand replicas.")
@launch_options
def serve(name, replicas, min_replicas, max_replicas, target_qps, ondemand_fallback, image, dryrun, yes, no_smoke,
          json_, envs, secrets, **plan_args):
    """Serve MODEL as a SkyServe service: replicas, autoscaling, spot with on-demand fallback."""
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise UserError("give either --replicas or --min-replicas/--max-replicas, not both")
    if (min_replicas is None) != (max_replicas is None):
        raise UserError("--min-replicas and --max-replicas go together")
    if min_replicas is not None and (min_replicas < 0 or min_replicas > max_replicas):
        raise UserError(f"need 0 <= --min-replicas <= --max-replicas, got {min_replicas} and {max_replicas}")
    if target_qps is not None and min_replicas is None:
        raise UserError("--target-qps sets autoscaling: give it with --min-replicas/--max-replicas "
                        "(with fixed --replicas there is nothing to scale)")
    if ondemand_fallback and not plan_args["spot"]:
        raise UserError("--ondemand-fallback only applies with --spot")
    measured = _saved_target_qps(plan_args["profile"], plan_args["engine"])
    if measured is not None and target_qps is None:  # the saved profile's measured load per replica
        target_qps = measured
        if min_replicas is None:  # a fixed count keeps it, as a policy `scale --min/--max-replicas` autoscales on
            min_replicas = max_replicas = replicas or 1
            replicas = None
    return _launch_common("service", plan_args, name, image, dryrun, yes, json_, no_smoke, envs, secrets,
                          replicas=replicas,
                          min_replicas=min_replicas, max_replicas=max_replicas, target_qps=target_qps,
                          ondemand_fallback=ondemand_fallback)


def _saved_target_qps(profile, engine):
    """A saved profile's target_qps_per_replica; None for a catalog profile (resolve checks the saved file)."""
    from launcher.plan import catalog as catalog_mod
    from launcher.plan import saved_profiles

    builtin = tuple(catalog_mod.load().engine(engine).profiles)
    if profile in builtin:
        return None
    return saved_profiles.load(profile, builtin).target_qps_per_replica


@click.command("scale")
@click.argument("name")
@click.option("--replicas", type=int, callback=positive_int, help="Fixed number of replicas.")
@click.option("--min-replicas", type=int, callback=non_negative_int, help="Autoscaling lower bound.")
@click.option("--max-replicas", type=int, callback=positive_int, help="Autoscaling upper bound.")
@click.option("--target-qps", type=float, callback=positive_number, help="Requests/s per replica before scaling out.")
@json_option
def scale(name, replicas, min_replicas, max_replicas, target_qps, json_):
    """Change a service's replicas (rolling update through SkyServe)."""
    from launcher.sky import skyapi

    name = state.validate_name(name)
    if replicas is not None and (min_replicas is not None or max_replicas is not None or target_qps is not None):
        raise UserError("give either --replicas R, or --min-replicas A --max-replicas B [--target-qps Q], not both")
    if replicas is None and (min_replicas is None or max_replicas is None):
        raise UserError("give --replicas R, or --min-replicas A --max-replicas B [--target-qps Q]")
    if min_replicas is not None and min_replicas > max_replicas:
        raise UserError(f"need 0 <= --min-replicas <= --max-replicas, got {min_replicas} and {max_replicas}")
    result = lifecycle.scale(skyapi.SkyPilotClient(), name, replicas=replicas,
                             min_replicas=min_replicas, max_replicas=max_replicas, target_qps=target_qps)
    print_json(result) if json_ else stdout.print(f"{result['name']}: rolling update to {result['replica_policy']}")
    return 0


COMMANDS = [up, serve, scale]
