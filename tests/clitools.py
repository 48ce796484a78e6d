"""Running the CLI in tests with stdout and stderr kept apart."""

from __future__ import annotations

from click.testing import CliRunner, Result

from launcher.cli import cli


def invoke(*args: str) -> Result:
    """stdout and stderr kept apart (click 8.1 needs mix_stderr=False; 8.2 always separates)."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))
