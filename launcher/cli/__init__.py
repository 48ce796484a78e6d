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
from launcher.cli import _common, redact
from launcher.errors import GptossSkyError

EXIT_RULE = """Exit codes, for every command: 0 done; 1 the cloud, SkyPilot or the endpoint failed; 2 the input
or the local setup is wrong (a bad flag or name, no enabled cloud, a damaged state folder, a confirmation
with no standard input to answer it); 130 interrupted (Ctrl-C, or a confirmation answered no)."""


def exit_code(exc: BaseException) -> int | None:
    """The rule above for one failure; None for an exception that is a bug (it keeps its traceback)."""
    if isinstance(exc, click.Abort) and isinstance(exc.__context__, EOFError):
        return 2  # a confirmation with nothing to read it from: give -y
    if isinstance(exc, KeyboardInterrupt | click.Abort):
        return 130
    if isinstance(exc, click.ClickException):  # usage errors, bad parameters, unreadable files: all input
        return 2
    if isinstance(exc, GptossSkyError):
        return exc.exit_code
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, GptossSkyError):  # its own words (an interrupted launch says what became of the request)
        return f"Error: {exc}"
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
        return "Interrupted."  # click turns Ctrl-C inside a command into Abort
    if isinstance(exc, click.Abort) and isinstance(exc.__context__, EOFError):
        return "Error: no answer to the confirmation (standard input is closed); pass -y to skip it"
    if isinstance(exc, click.Abort):
        return "Aborted."
    if isinstance(exc, click.ClickException):
        return f"Error: {exc.format_message()}"
    return f"Error: {exc}"


class _Group(click.Group):
    """Every failure ends as one line on stderr and an exit code by EXIT_RULE, never a traceback; with
    --json, stdout holds one JSON document also then (`{"error": ..., "exit_code": ...}`, unless the
    command printed its own). GPTOSS_SKY_DEBUG=1 re-raises GptossSkyError so the traceback shows.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        _common.reset_json()
        with redact.masking():  # no key or secret in anything printed, whoever said it
            self._main(argv, prog_name, complete_var, **extra)

    def _main(self, argv, prog_name, complete_var, **extra):
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except (Exception, KeyboardInterrupt) as exc:
            code = exit_code(exc)
            if code is None or (isinstance(exc, GptossSkyError) and os.environ.get("GPTOSS_SKY_DEBUG")):
                raise
            click.echo(_message(exc), err=True)
            if (_common.json_wanted() or self._wants_json(argv)) and not _common.json_printed():
                _common.print_json({"error": _message(exc).removeprefix("Error: "), "exit_code": code})
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)

    def _wants_json(self, argv: list[str]) -> bool:
        """`--json` given to a command that has it (a parse error may have stopped before click read it)."""
        words = argv[:argv.index("--")] if "--" in argv else argv
        name = next((w for w in words if not w.startswith("-")), None)
        command = self.commands.get(name) if name else None
        if name is None or command is None or not any(p.name == "json_" for p in command.params):
            return False
        return "--json" in words[words.index(name) + 1:]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gptoss-sky")
def cli() -> None:
    """Deploy gpt-oss-20b / gpt-oss-120b on the cheapest GPU SkyPilot can reach, served by vLLM."""


def _register() -> None:
    from launcher.cli import catalog_cmds, deploying, inspecting, operate, planning, teardown, verify

    for module in (catalog_cmds, planning, deploying, inspecting, teardown, verify, operate):
        for command in module.COMMANDS:
            _common.guard_every_parameter(command)
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="gptoss-sky")
