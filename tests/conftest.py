"""Test isolation: no test touches the real ~/.sky, ~/.config/gptoss-sky, a cloud or an API server;
plus one fake vLLM server per session for the endpoint checks (faults reset per test)."""

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
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GPTOSS_SKY_HOME", str(home / "gptoss-sky"))
    monkeypatch.setenv("SKY_RUNTIME_DIR", str(home))
    # Any accidental SDK call fails fast instead of starting an API server.
    monkeypatch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
    # No proxies (loopback traffic must go direct), no stray keys.
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in (
                "GPTOSS_SKY_API_KEY", "OPENAI_API_KEY", "VLLM_API_KEY", "GPTOSS_SKY_DEBUG"):
            monkeypatch.delenv(name, raising=False)
    yield home


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
