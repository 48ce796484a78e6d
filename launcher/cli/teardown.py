"""down, forget: tear down what gptoss-sky launched, or drop a local record without asking SkyPilot."""

from __future__ import annotations

import click

from launcher import lifecycle
from launcher.cli._common import json_option, print_json, stderr, stdout
from launcher.errors import SkyError, UserError
from launcher.sky import state


def _progress(json_):
    def report(message):
        if not json_:
            stderr.print(f"[dim]{message}[/]")
    return report



@click.command("down")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True,
              help="Every deployment this client has a record of (live gptoss-* ones without a record are "
                   "listed, not touched).")
@click.option("--force", is_flag=True,
              help="With NAME: also a live gptoss-* cluster/service this client has no record of (never "
                   "another user's on a shared API server).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--purge", is_flag=True, help="Remove records even if the cloud reports errors (SkyPilot's --purge too).")
@json_option
def down(names, everything, force, yes, purge, json_):
    """Tear down what gptoss-sky launched: NAME... or --all. Tries every target; exits 1 if one stays."""
    from launcher.sky import skyapi

    if bool(names) == everything:
        raise UserError("give NAME... or --all (not both)")
    if force and everything:
        raise UserError("--force takes a live deployment down by NAME; --all only takes recorded ones")
    wanted = [state.validate_name(n) for n in names]
    client = skyapi.SkyPilotClient()
    unrecorded: list[dict] = []
    if everything:
        targets, unrecorded = lifecycle.recorded_targets(client)
    else:
        targets = [lifecycle.named_target(client, name, force) for name in wanted]
    for item in unrecorded:
        whose = f"{item['owner']}'s " if item.get("owner") else ""
        stderr.print(f"left alone: {whose}{item['kind']} {item['name']} has no gptoss-sky record here; "
                     f"`gptoss-sky down {item['name']} --force` tears it down", markup=False, soft_wrap=True)
    if not targets:
        stderr.print("Nothing to tear down.")
    elif not yes and not click.confirm(f"Tear down {', '.join(n for n, _ in targets)}?", err=True):
        raise click.Abort()
    results = lifecycle.down(client, targets, purge, _progress(json_))
    stopped = []
    if everything and not any(not r["removed"] for r in results):
        for controller in lifecycle.idle_serve_controllers(client):
            if yes or click.confirm(f"No service is left; stop the idle serve controller {controller}?", err=True):
                try:
                    client.down(controller, purge=purge)
                except SkyError as exc:
                    results.append({"name": controller, "kind": "controller", "removed": False, "message": str(exc)})
                    continue
                stopped.append(controller)
    failed = [r for r in results if not r["removed"]]
    if json_:
        print_json({"removed": [r["name"] for r in results if r["removed"]], "controllers_stopped": stopped,
                    "results": results, "unrecorded": unrecorded})
    else:
        for r in results:
            if r["removed"]:
                stdout.print(f"removed {r['name']} ({r['message']})", markup=False)
        for name in stopped:
            stdout.print(f"removed {name}", markup=False)
        for r in failed[:-1]:
            stderr.print(f"not removed: {r['name']}: {r['message']}", markup=False, soft_wrap=True)
    if failed:
        last = failed[-1]
        raise SkyError(f"{len(failed)} of {len(results)} not removed; {last['name']}: {last['message']}"
                       if len(failed) > 1 or len(results) > 1 else f"{last['name']}: {last['message']}")
    return 0


@click.command("forget")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def forget(name, yes, json_):
    """Delete NAME's local record and API key without asking SkyPilot (`down` tears down and forgets)."""
    full = state.validate_name(name)
    if not yes and not click.confirm(f"Forget {full} (its record and API key; anything still running keeps "
                                     "running and billing)?", err=True):
        raise click.Abort()
    removed = lifecycle.forget(full)
    if json_:
        print_json({"forgotten": full, "files": removed})
    else:
        stdout.print(f"forgot {full} ({len(removed)} file(s) removed; SkyPilot was not asked: if it still runs, "
                     f"`sky down {full}` or `sky serve down {full}` stops it)", markup=False)
    return 0



COMMANDS = [down, forget]
