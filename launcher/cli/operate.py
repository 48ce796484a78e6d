"""logs and doctor: reading a deployment's engine log, and checking the setup before paying for a launch."""

from __future__ import annotations

import click

from launcher import state
from launcher.cli._common import positive_int


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends or Ctrl-C.")
@click.option("--replica", type=int, callback=positive_int, help="Which replica of a service (default: the first READY).")
@click.option("--tail", type=int, default=0, help="Only the last N lines (0: all).")
def logs(name, follow, replica, tail):
    """Print the engine's log of NAME: a cluster's job log (setup, engine, phase markers) or a service replica's."""
    from launcher import logs as logs_mod
    from launcher import skyapi

    if tail < 0:
        raise click.BadParameter(f"must be 0 or more, got {tail}", param_hint="--tail")
    for line in logs_mod.lines(skyapi.SkyClient(), state.validate_name(name), follow=follow, replica=replica,
                               tail=tail):
        click.echo(line)
    return 0


COMMANDS = [logs]
