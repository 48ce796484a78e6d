"""logs and doctor: reading a deployment's engine log, and checking the setup before paying for a launch."""

from __future__ import annotations

import click

from launcher.cli._common import json_option, positive_int, print_json, stdout
from launcher.sky import state


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends or Ctrl-C.")
@click.option("--replica", type=int, callback=positive_int,
              help="Which replica of a service (default: the first READY).")
@click.option("--tail", type=int, default=0, help="Only the last N lines (0: all).")
def logs(name, follow, replica, tail):
    """Print the engine's log of NAME: a cluster's job log (setup, engine, phase markers) or a service replica's."""
    from launcher.operate import logs as logs_mod
    from launcher.sky import skyapi

    if tail < 0:
        raise click.BadParameter(f"must be 0 or more, got {tail}", param_hint="--tail")
    name = state.validate_name(name)  # before any SkyPilot request
    for line in logs_mod.lines(skyapi.SkyPilotClient(), name, follow=follow, replica=replica, tail=tail):
        click.echo(line)
    return 0


_COLOUR = {"ok": "green", "warning": "yellow", "problem": "red"}


@click.command("doctor")
@click.option("--engine", type=click.Choice(["vllm", "sglang"]), default="vllm", show_default=True,
              help="Whose driver needs to check.")
@json_option
def doctor(engine, json_):
    """Check what a launch needs: SkyPilot and its API server, enabled infra, catalog age, the state
    directory and key files, the engine's CUDA/driver needs. Exit 2 when this machine's setup has a
    problem, 1 when only a remote API server does."""
    from launcher.operate import doctor as doctor_mod
    from launcher.plan import catalog as catalog_mod
    from launcher.sky import skyapi

    eng = catalog_mod.load().engine(engine)
    checks = doctor_mod.run(eng, lambda: skyapi.SkyPilotClient().enabled_infra())
    if json_:
        print_json([c.to_dict() for c in checks])
    else:
        for c in checks:
            stdout.print(f"[{_COLOUR[c.level]}]{c.level:>7}[/]  [bold]{c.name}[/]: {c.detail}", markup=True)
            if c.fix and c.level != "ok":
                stdout.print(f"{'':>9}fix: {c.fix}", markup=False)
    problems = [c for c in checks if c.level == "problem"]
    if not problems:
        return 0
    return 2 if any(not c.remote for c in problems) else 1  # this machine's setup first: fix that before the server


COMMANDS = [logs, doctor]
