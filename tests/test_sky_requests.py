"""A launch is a SkyPilot request: its id is handed out before any waiting, it can be asked about and
cancelled, and SkyPilot's retry loop ends the wait with its cause. Against the real API server (no cloud):
Lambda is enabled with no credential, and SkyPilot cannot place a SkyServe controller there, so its
serve.up request retries every 30 s for ever: the case that made `gptoss-sky serve` hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import skyserver
import yaml

from launcher.errors import RequestStalledError
from launcher.sky import skyapi

ROOT = Path(__file__).resolve().parents[1]
SERVICE = yaml.safe_load((ROOT / "services" / "20b-any.sky.yaml").read_text())
KEY = {"VLLM_API_KEY": "requests-test-key"}


@pytest.fixture
def lambda_only(sky_server):
    skyserver.set_enabled_clouds(sky_server, ["lambda"])
    try:
        yield sky_server
    finally:
        skyserver.set_enabled_clouds(sky_server, [])


def test_a_controller_that_cannot_be_placed_ends_the_wait_and_its_request_is_listed_then_cancelled(lambda_only):
    client = skyapi.SkyClient()
    ids: list[str] = []
    with pytest.raises(RequestStalledError) as info:
        client.serve_up(SERVICE, "gptoss-req-stall", secrets=KEY, envs={}, on_request=ids.append)
    assert "Host controllers are not supported in Lambda" in info.value.cause, info.value.cause
    assert ids == [info.value.request_id]
    assert "\n" not in str(info.value)
    # Still running on the server (the wait ended, not the request): listed, then cancelled.
    assert client.request_status(ids[0]) in skyapi.REQUEST_ACTIVE
    assert client.cancel_request(ids[0]) == "CANCELLED"
    assert client.request_status(ids[0]) == "CANCELLED"
    assert client.cancel_request(ids[0]) == "CANCELLED"  # nothing left to cancel: it says how it ended
