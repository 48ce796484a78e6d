"""Test isolation: no test touches the real ~/.sky, ~/.config/gptoss-sky or a cloud; SDK calls fail fast
unless a test asks for `sky_server`, the session's real SkyPilot API server (isolated, offline, no cloud).
Plus one fake vLLM server per session for the endpoint checks (faults reset per test)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

import skyserver  # noqa: E402
from openai_server import FakeServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _no_api_server_outside_tests():
    """Module- and session-scoped fixtures run before `isolated_env`: no SDK call of theirs may start an
    API server in the real home or reach a developer's own (SkyPilot caches the URL per process, so the
    port must be the same inside and outside tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
        patch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", "9")
        yield


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GPTOSS_SKY_HOME", str(home / "gptoss-sky"))
    monkeypatch.setenv("SKY_RUNTIME_DIR", str(home))
    # Any accidental SDK call fails fast instead of starting an API server.
    monkeypatch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
    # ... and never reaches a developer's own local API server on SkyPilot's default port.
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", "9")
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


@pytest.fixture(scope="session")
def _sky_server(tmp_path_factory) -> Iterator[skyserver.SkyServer]:
    server = skyserver.start(tmp_path_factory.mktemp("skyserver"))
    try:
        yield server
    finally:
        skyserver.stop(server)


@pytest.fixture
def sky_server(_sky_server, monkeypatch) -> Iterator[skyserver.SkyServer]:
    """The session's real SkyPilot 0.14 API server; this test's SDK calls (this process) go to it.

    The test keeps its own HOME (so it is a user of its own to the server), and keeps
    SKYPILOT_DISABLE_LOCAL_API_SERVER: if the server died, calls fail instead of starting another one.
    """
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(_sky_server.port))
    skyserver.forget_server_url()
    yield _sky_server
    skyserver.forget_server_url()
