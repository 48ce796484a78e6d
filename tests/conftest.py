"""Shared fixtures: environment isolation and one fake vLLM server per session (faults reset per test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from openai_server import FakeServer  # noqa: E402


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxies (loopback traffic must go direct), no stray keys, private state dir."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("GPTOSS_SKY_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPTOSS_SKY_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def _server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def server(_server: FakeServer) -> Iterator[FakeServer]:
    """The session's fake server with no faults; a test sets `server.config.faults` as it needs."""
    _server.config.reset()
    yield _server
    _server.config.reset()
