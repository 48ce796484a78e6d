"""Running the CLI in tests with stdout and stderr kept apart, and with its wait for a deployment short."""

from __future__ import annotations

import functools

from click.testing import CliRunner, Result

from launcher.cli import cli


def invoke(*args: str) -> Result:
    """stdout and stderr kept apart (click 8.1 needs mix_stderr=False; 8.2 always separates)."""
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))


def missed_failures_time_out(monkeypatch, seconds=120):
    """`up`/`serve` wait `seconds` for the deployment instead of an hour: a failure the watch misses ends as
    a timeout, whose cause the tests' cause asserts refuse (so no test times the command itself)."""
    from launcher import lifecycle

    monkeypatch.setattr(lifecycle, "launch", functools.partial(lifecycle.launch, ready_timeout=seconds))
