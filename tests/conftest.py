"""Test isolation: no test touches the real ~/.sky, ~/.config/gptoss-sky, a cloud or an API server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GPTOSS_SKY_HOME", str(home / "gptoss-sky"))
    monkeypatch.setenv("SKY_RUNTIME_DIR", str(home))
    # Any accidental SDK call fails fast instead of starting an API server.
    monkeypatch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
    monkeypatch.delenv("GPTOSS_SKY_DEBUG", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    yield home
