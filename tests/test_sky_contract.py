"""The seam against a real SkyPilot 0.14 API server (isolated, offline, no cloud), and the fake against
the same answers: one test body runs every no-cloud scenario on both FakeSky and the real server.

Each scenario is something SkyPilot answers without a cloud and that gptoss-sky meets on every fresh
machine: nothing launched, a name SkyPilot does not have, no SkyServe controller, no enabled cloud.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fakesky import FakeSky
from launcher import skyapi
from launcher.errors import GptossSkyError, NoCloudError, NotFoundError

ROOT = Path(__file__).resolve().parents[1]
TASK = yaml.safe_load((ROOT / "tasks" / "20b-any.sky.yaml").read_text())
SERVICE = yaml.safe_load((ROOT / "services" / "20b-any.sky.yaml").read_text())
KEY = {"VLLM_API_KEY": "contract-test-key"}
NOPE = "gptoss-contract-nope"

# scenario -> (call, expected): a value, or the gptoss-sky error type the seam maps SkyPilot's to.
SCENARIOS = {
    "status, nothing launched": (lambda c: c.clusters(), []),
    "status of an unknown name": (lambda c: c.clusters([NOPE]), []),
    "down of an unknown cluster": (lambda c: c.down(NOPE), NotFoundError),
    "down --purge of an unknown cluster": (lambda c: c.down(NOPE, purge=True), NotFoundError),
    "endpoint of an unknown cluster": (lambda c: c.endpoint(NOPE, 8000), NotFoundError),
    "serve status, no controller": (lambda c: c.services(), []),
    "serve status of a name, no controller": (lambda c: c.services([NOPE]), []),
    "serve down, no controller": (lambda c: c.serve_down(NOPE), NotFoundError),
    "job status of an unknown cluster": (lambda c: c.job_status(NOPE), NotFoundError),
    "job log of an unknown cluster": (lambda c: list(c.tail_logs(NOPE, follow=False)), NotFoundError),
    "replica log, no controller": (lambda c: list(c.serve_logs(NOPE, 1, follow=False)), NotFoundError),
    "enabled infra, none": (lambda c: c.enabled_infra(), []),
    "launch, no enabled cloud": (lambda c: c.launch(TASK, NOPE, secrets=KEY, envs={}, idle_minutes=None,
                                                    down=False), NoCloudError),
    "serve up, no enabled cloud": (lambda c: c.serve_up(SERVICE, NOPE, secrets=KEY, envs={}), NoCloudError),
    "who am I": (lambda c: sorted(c.current_user()), ["user_hash", "user_name"]),
}


@pytest.fixture(params=["fake", "real"])
def client(request):
    if request.param == "real":
        request.getfixturevalue("sky_server")
        return skyapi.SkyClient()
    return FakeSky(enabled_infra=())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fake_and_real_server_give_the_same_answer(client, scenario, capfd):
    call, expected = SCENARIOS[scenario]
    if isinstance(expected, type):
        with pytest.raises(GptossSkyError) as info:
            call(client)
        assert type(info.value) is expected, str(info.value)
        if expected is NoCloudError:
            assert "run `sky check`" in str(info.value) and "Cloud access is not set up" in str(info.value)
    else:
        assert call(client) == expected
    assert capfd.readouterr().out == ""  # nothing SkyPilot says reaches stdout
