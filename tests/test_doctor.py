"""`doctor`: each thing that would break a launch is found, named, and comes with its fix; exit 1 only
on a problem. The API server checks run SkyPilot's own health probe against loopback addresses."""

from __future__ import annotations

import json
import os

import pytest
from clitools import invoke
from openai_server import unused_url

from launcher.operate import doctor
from launcher.plan import catalog
from launcher.sky import skyapi, state


@pytest.fixture(autouse=True)
def no_local_api_server(monkeypatch):
    """Point SkyPilot's local API server at a free port, so no server another test started answers."""
    port = unused_url().rsplit(":", 1)[1]
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", port)
    monkeypatch.delenv("SKYPILOT_API_SERVER_ENDPOINT", raising=False)
    return port


def _by_name(checks):
    return {c["name"]: c for c in checks}


def test_unreachable_remote_api_server_is_a_problem_with_the_login_fix(monkeypatch):
    url = unused_url()
    monkeypatch.setenv("SKYPILOT_API_SERVER_ENDPOINT", url)
    check = doctor.check_api_server()
    assert check.level == doctor.PROBLEM and url in check.detail and "does not answer" in check.detail
    assert "sky api login" in check.fix


def test_local_api_server_that_may_not_start_is_a_problem(monkeypatch, no_local_api_server):
    monkeypatch.setenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", "1")
    check = doctor.check_api_server()
    assert check.level == doctor.PROBLEM and no_local_api_server in check.detail
    assert "SKYPILOT_DISABLE_LOCAL_API_SERVER" in check.fix


def test_local_api_server_not_running_yet_is_only_a_warning(monkeypatch):
    monkeypatch.delenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", raising=False)
    check = doctor.check_api_server()
    assert check.level == doctor.WARNING and "sky api start" in check.fix
    assert skyapi.skypilot_version() in check.detail


def test_version_skew_is_reported_with_both_versions():
    info = dict(url="http://10.0.0.5:46580", local=False, status="healthy", server_version="0.13.2",
                client_version="0.14.1")
    check = doctor.check_api_server(lambda: info)
    assert check.level == doctor.WARNING and "0.13.2" in check.detail and "skypilot==0.13.2" in check.fix


def test_no_enabled_infra_is_a_problem_with_the_sky_check_fix():
    check = doctor.check_infra(lambda: [])
    assert check.level == doctor.PROBLEM and "sky check" in check.fix
    assert doctor.check_infra(lambda: ["aws", "kubernetes"]).level == doctor.OK


def test_stale_catalogs_are_found_and_fresh_ones_pass(tmp_path):
    now = 1_800_000_000.0
    paths = {c: tmp_path / c / "vms.csv" for c in ("aws", "gcp")}
    for path in paths.values():
        path.parent.mkdir()
        path.write_text("InstanceType,AcceleratorName\n")
    os.utime(paths["aws"], (now - 90 * 86400, now - 90 * 86400))
    os.utime(paths["gcp"], (now - 86400, now - 86400))
    check = doctor.check_catalogs(("aws", "gcp", "lambda"), "2026-11", lambda c: str(paths.get(c, tmp_path / c)), now)
    assert check.level == doctor.WARNING and "aws" in check.detail and "gcp" not in check.detail.split("(")[0]
    assert "vms.csv" in check.fix and "2026-11" in check.detail
    os.utime(paths["aws"], (now, now))
    assert doctor.check_catalogs(("aws", "gcp"), "2026-11", lambda c: str(paths[c]), now).level == doctor.OK


def test_key_file_readable_by_others_is_a_problem_and_exit_2():
    key = state.new_key("gptoss-leaky")
    os.chmod(key, 0o644)
    result = invoke("doctor", "--json")
    checks = _by_name(json.loads(result.stdout))
    assert result.exit_code == 2
    assert checks["key files"]["level"] == "problem" and checks["key files"]["fix"] == f"chmod 600 {key}"
    os.chmod(key, 0o600)
    checks = _by_name(json.loads(invoke("doctor", "--json").stdout))
    assert checks["key files"]["level"] == "ok"


def test_state_directory_that_cannot_be_written_is_a_problem(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("GPTOSS_SKY_HOME", str(blocker / "gptoss-sky"))  # fails even for root
    result = invoke("doctor")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "state directory" in result.stdout and "not writable" in result.stdout
    assert "GPTOSS_SKY_HOME" in result.stdout  # the fix


def test_warnings_alone_exit_0_and_json_is_one_document(monkeypatch):
    monkeypatch.delenv("SKYPILOT_DISABLE_LOCAL_API_SERVER", raising=False)
    real = doctor.check_host_tools  # this test machine may lack rsync: the host-tools check is tested above
    monkeypatch.setattr(doctor, "check_host_tools", lambda local, enabled: real(local, enabled, which=str))
    result = invoke("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    levels = {c["level"] for c in json.loads(result.stdout)}
    assert "problem" not in levels and levels <= {"ok", "warning"}


def test_engine_driver_needs_name_the_images_that_meet_them():
    vllm = catalog.load().engine("vllm")
    check = doctor.check_engine_images(vllm, ["aws", "gcp"])
    assert check.level == doctor.OK and "driver >= 580" in check.detail
    assert "skypilot:custom-gpu-ubuntu-cuda13" in check.detail.split("that do not")[0]
    warned = doctor.check_engine_images(vllm, ["verda"])
    assert warned.level == doctor.WARNING and "verda" in warned.fix
    assert doctor.check_engine_images(catalog.load().engine("sglang"), None).level == doctor.WARNING


def test_infra_is_not_asked_when_the_api_server_is_down():
    asked = []
    checks = doctor.run(catalog.load().engine("vllm"), lambda: asked.append(1) or ["aws"],
                        api_server=lambda: dict(url="http://x:1", local=False, status="unhealthy",
                                                client_version="0.14.1"))
    assert not asked and _by_name([c.to_dict() for c in checks])["enabled infra"]["level"] == "warning"


@pytest.mark.parametrize("enabled, absent, missing", [
    (["aws"], {"rsync"}, ["rsync"]),
    (["kubernetes/ctx", "aws"], {"socat", "nc"}, ["socat", "nc"]),
    (["aws"], {"socat", "nc"}, []),  # no Kubernetes: socat and netcat are not needed
])
def test_tools_skypilot_runs_on_a_local_api_servers_host(enabled, absent, missing):
    which = lambda tool: None if tool in absent else f"/usr/bin/{tool}"  # noqa: E731
    found = doctor.check_host_tools(True, enabled, which=which)
    if missing:
        assert found.level == doctor.PROBLEM and all(t in found.detail for t in missing) and "apt install" in found.fix
        assert "rsync" in found.detail if "rsync" in missing else "rsync" not in found.detail
    else:
        assert found.level == doctor.OK
    remote = doctor.check_host_tools(False, enabled, which=which)
    assert remote.level == doctor.OK and "not checked" in remote.detail
