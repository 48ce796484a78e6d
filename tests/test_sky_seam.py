"""The SkyClient Protocol (launcher/sky/seam.py) is what the real client and FakeSky both are.

mypy checks the types (skyapi.py and fakesky.py assign an instance to a SkyClient variable); this test
catches the same drift in the suite: a method of the Protocol that one of them lacks, or takes other
parameters (names, kinds, defaults), fails here.
"""

import inspect

import pytest
from fakesky import FakeSky

from launcher.sky import seam, skyapi

MEMBERS = sorted(name for name, value in vars(seam.SkyClient).items()
                 if callable(value) and not name.startswith("_"))


def parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def shown(function) -> str:
    """A signature without its annotations (mypy checks those): '(self, cluster_name, purge=False)'."""
    sig = inspect.signature(function)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def drift(protocol: type, cls: type) -> list[str]:
    """What `cls` does differently from `protocol`, one line per member."""
    found = []
    for name in sorted(n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")):
        mine = getattr(cls, name, None)
        if mine is None:
            found.append(f"{cls.__name__}.{name} is missing")
        elif parameters(mine) != parameters(getattr(protocol, name)):
            found.append(f"{cls.__name__}.{name}{shown(mine)} is not {name}{shown(getattr(protocol, name))}")
    return found


def test_the_protocol_names_every_call_that_reaches_a_cloud():
    assert MEMBERS == ["cancel_request", "clusters", "current_user", "down", "enabled_infra", "endpoint",
                       "job_status", "kubernetes_unreachable", "launch", "request_status",
                       "serve_controller_unplaceable", "serve_down", "serve_logs", "serve_up", "serve_update",
                       "services", "tail_logs"]


@pytest.mark.parametrize("cls", [skyapi.SkyPilotClient, FakeSky], ids=lambda c: c.__name__)
def test_the_real_client_and_the_fake_take_the_protocols_parameters(cls):
    assert drift(seam.SkyClient, cls) == []


def test_a_drifted_client_is_named():
    """Not vacuous: a missing method, a renamed parameter and another default are each reported."""

    class Drifted:
        def down(self, name, purge=False):  # the Protocol says cluster_name
            return None

        def job_status(self, cluster_name, job_id=0):  # the Protocol's default is None
            return None

    found = drift(seam.SkyClient, Drifted)
    assert "Drifted.down(self, name, purge=False) is not down(self, cluster_name, purge=False)" in found
    assert ("Drifted.job_status(self, cluster_name, job_id=0) is not job_status(self, cluster_name, job_id=None)"
            in found)
    assert "Drifted.enabled_infra is missing" in found
    assert len(found) == len(MEMBERS)
