"""Records and keys against a real SkyPilot 0.14 API server (tests/skyserver.py, no cloud): a user whose
cluster autodown removed and whose service never got a controller. `status` keeps both records and keys
and says "not found"; `down NAME` and `down --all` remove them (exit 0), because SkyPilot itself says it
has no such cluster or service."""

from __future__ import annotations

import json
import time

from clitools import invoke

from launcher.sky import state


def _record(name: str, kind: str) -> None:
    key = state.new_key(name)
    state.save(state.Record(name=name, kind=kind, model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path=str(key), created=state.now() - 3600, state="up"))


def _files() -> set[str]:
    root = state.home()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def test_records_skypilot_does_not_have_are_kept_by_status_and_removed_by_down(sky_server):
    _record("gptoss-autodowned", "cluster")
    _record("gptoss-svc-never", "service")
    _record("gptoss-other", "cluster")
    before = _files()
    started = time.monotonic()
    status = invoke("status", "--json", "--no-metrics")
    assert status.exit_code == 0, status.stderr
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert {n: r["state"] for n, r in rows.items()} == {n: "not found" for n in
                                                        ("gptoss-autodowned", "gptoss-svc-never", "gptoss-other")}
    assert "sky api info" in rows["gptoss-autodowned"]["note"]
    assert _files() == before  # status deleted nothing
    one = invoke("down", "autodowned", "-y")
    assert one.exit_code == 0, one.stderr
    assert "already gone" in one.stdout and not state.exists("gptoss-autodowned")
    everything = invoke("down", "--all", "-y", "--json")
    assert everything.exit_code == 0, everything.stderr
    assert sorted(json.loads(everything.stdout)["removed"]) == ["gptoss-other", "gptoss-svc-never"]
    assert _files() == set()
    assert time.monotonic() - started < 120  # quick: no controller means no services, not a wait
