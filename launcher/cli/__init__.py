"""The `gptoss-sky` command line. Only this package imports click or rich, prints, or picks exit codes.

Command modules register on the `cli` group: catalog_cmds (capacity, render), planning (plan), deploying
(up, serve, scale), inspecting (status, endpoint), teardown (down, forget), verify (smoke, bench, eval) and
operate (logs, doctor); the option sets plan, up and serve share live in options. SkyPilot
is imported lazily inside the commands that need it, so `gptoss-sky --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from launcher import __version__
from launcher.cli import redact
from launcher.errors import GptossSkyError


class _Group(click.Group):
    """Every failure ends as one line on stderr and an exit code, never a traceback.

    Usage errors exit 2 (click's convention), GptossSkyError its own code (UserError 2, others 1),
    Ctrl-C 130. GPTOSS_SKY_DEBUG=1 re-raises GptossSkyError so the traceback shows.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        with redact.masking():  # no key or secret in anything printed, whoever said it
            self._main(args, prog_name, complete_var, **extra)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except GptossSkyError as exc:
            if os.environ.get("GPTOSS_SKY_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gptoss-sky")
def cli() -> None:
    """Deploy gpt-oss-20b / gpt-oss-120b on the cheapest GPU SkyPilot can reach, served by vLLM."""


def _register() -> None:
    from launcher.cli import catalog_cmds, deploying, inspecting, operate, planning, teardown, verify

    for module in (catalog_cmds, planning, deploying, inspecting, teardown, verify, operate):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="gptoss-sky")
