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


def h100_service(cat, name):
    """A service on one H100 (Lambda's catalog has it, so SkyPilot's optimizer accepts the task)."""
    from launcher import lifecycle
    from launcher.node import render

    recipes = (render.recipes_mod.build(cat, cat.model("20b"), cat.gpu("H100"), 1),)
    return lifecycle.deployment_for(name, recipes, service=True)


@pytest.fixture
def lambda_only(sky_server):
    skyserver.set_enabled_clouds(sky_server, ["lambda"])
    try:
        yield sky_server
    finally:
        skyserver.set_enabled_clouds(sky_server, [])


def test_a_controller_that_cannot_be_placed_ends_the_wait_and_its_request_is_listed_then_cancelled(lambda_only):
    client = skyapi.SkyPilotClient()
    ids: list[str] = []
    with pytest.raises(RequestStalledError) as info:
        client.serve_up(SERVICE, "gptoss-req-stall", secrets=KEY, envs={}, on_request=ids.append)
    assert "Host controllers are not supported in Lambda" in info.value.cause, info.value.cause
    assert ids == [info.value.request_id]
    assert "\n" not in str(info.value)
    # Still running on the server (the wait ended, not the request): listed, then cancelled.
    assert client.request_status(ids[0]) in skyapi.status_names().request_active
    assert client.cancel_request(ids[0]) == "CANCELLED"
    assert client.request_status(ids[0]) == "CANCELLED"
    assert client.cancel_request(ids[0]) == "CANCELLED"  # nothing left to cancel: it says how it ended


def test_ctrl_c_right_after_serve_cancels_the_real_request_and_keeps_record_and_key(lambda_only):
    """lifecycle.launch with the real client; Ctrl-C arrives the moment SkyPilot has the serve.up request
    (the record already names it), which would otherwise retry its controller for ever. The API server
    must show it cancelled; the record and key stay until `down`, which finds nothing left."""
    from launcher import lifecycle
    from launcher.errors import InterruptedLaunch
    from launcher.plan import catalog
    from launcher.sky import state

    class CtrlC(skyapi.SkyPilotClient):
        def serve_controller_unplaceable(self):  # it would refuse Lambda alone before serve.up: this test
            return None  # is about a serve.up request that runs

        def serve_up(self, config, service_name, **kw):
            given = kw.pop("on_request")

            def then_ctrl_c(request_id):
                given(request_id)
                raise KeyboardInterrupt

            return super().serve_up(config, service_name, on_request=then_ctrl_c, **kw)

    cat = catalog.load()
    client = CtrlC()
    asked: list[str] = []
    name = "gptoss-svc-req-cc"
    with pytest.raises(InterruptedLaunch) as info:
        lifecycle.launch(cat, client, cat.model("20b"), h100_service(cat, name), progress=lambda m: None,
                         on_interrupt=lambda rid: asked.append(rid) or True)
    record = state.load(name)
    assert asked == [record.request_id] and record.state == "interrupted"
    assert f"cancelled SkyPilot request {record.request_id}" in str(info.value) and info.value.exit_code == 130
    assert client.request_status(record.request_id) == "CANCELLED"
    assert state.key_path(name).exists()
    results = lifecycle.down(client, [lifecycle.named_target(client, name)], False, lambda m: None)
    assert results[0]["removed"], results
    assert not state.exists(name) and not state.key_path(name).exists()


# --- fail fast on pinned infra SkyPilot would only find out slowly --------------------------------------

def test_plan_on_an_unreachable_kubernetes_context_says_so_in_seconds(sky_server):
    """Was: exit 0 with ten offers; `up` then failed after ~90 s with "no cloud is enabled"."""
    from clitools import invoke

    skyserver.set_enabled_clouds(sky_server, ["kubernetes"])  # its kubeconfig's one context: 127.0.0.1:9
    try:
        result = invoke("plan", "20b", "--infra", "kubernetes/gptoss-fake-ctx")
    finally:
        skyserver.set_enabled_clouds(sky_server, [])
    assert result.exit_code == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot reach this Kubernetes context" in error[0] and "kubectl get nodes" in error[0]
    assert result.stdout == ""


def test_up_with_a_dead_kubernetes_context_beside_lambda_names_it_and_sends_no_launch(sky_server):
    """Was: the launch request asked the dead context about every GPU spelling (448 requests to a refusing
    context, 98 s on this server; minutes for one that times out) before trying Lambda."""
    from clitools import invoke
    from sky.client import sdk

    skyserver.set_enabled_clouds(sky_server, ["kubernetes", "lambda"])  # the context's server: 127.0.0.1:9
    earlier = {r.request_id for r in sdk.api_status(all_status=True)}  # other tests' requests
    try:
        result = invoke("up", "20b", "-y")
        requests = [r.name for r in sdk.api_status(all_status=True) if r.request_id not in earlier]
    finally:
        skyserver.set_enabled_clouds(sky_server, [])
    assert result.exit_code == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot reach Kubernetes context gptoss-fake-ctx" in error[0], error
    assert "--infra lambda" in error[0] and "kubectl get nodes --context gptoss-fake-ctx" in error[0]
    assert not any("launch" in name for name in requests), requests
    assert any("kubernetes_node_info" in name for name in requests), requests


def test_a_kubernetes_context_that_accepts_and_never_answers_is_named_within_the_bound(sky_server, monkeypatch):
    """Was: the one question to the context waited on its server for 63 s (a listener that accepts and says
    nothing), past the 30 s in which a launch must fail with its cause; now it is waited on for
    KUBE_ANSWER_S and then cancelled."""
    import socket
    import threading

    from clitools import invoke
    from sky.client import sdk

    from launcher.sky import skyapi

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:  # a Kubernetes API server that never sends a byte
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    monkeypatch.setattr(skyapi, "KUBE_ANSWER_S", 4.0)
    port = listener.getsockname()[1]
    skyserver.set_enabled_clouds(sky_server, ["kubernetes", "lambda"], kube_server=f"https://127.0.0.1:{port}")
    earlier = {r.request_id for r in sdk.api_status(all_status=True)}
    try:
        result = invoke("up", "20b", "-y")
        asked = [r for r in sdk.api_status(all_status=True) if r.request_id not in earlier]
    finally:
        skyserver.set_enabled_clouds(sky_server, [])
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()
    assert held, "the context's server was never contacted"
    assert result.exit_code == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "gptoss-fake-ctx" in error[0] and "did not answer" in error[0], error
    assert "within 4 s" in error[0] and "--infra lambda" in error[0], error
    node_info = [r for r in asked if "kubernetes_node_info" in r.name]
    assert node_info and all(str(r.status) not in skyapi.status_names().request_active for r in node_info)
    assert not any("launch" in r.name for r in asked)


def test_serve_whose_controller_cannot_be_placed_is_refused_in_seconds_before_serve_up(lambda_only):
    """Was: serve.up sent, then SkyPilot's retry loop every 30 s (ended at its first retry, exit 1, with a
    request to cancel). Lambda cannot host a SkyServe controller; SkyPilot's table says so, asked first."""
    from clitools import invoke
    from sky.client import sdk

    from launcher.sky import state

    earlier = {r.request_id for r in sdk.api_status(all_status=True)}
    result = invoke("serve", "20b", "-y", "--gpu", "H100")
    requests = [r.name for r in sdk.api_status(all_status=True) if r.request_id not in earlier]
    assert result.exit_code == 2, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "can host the SkyServe controller" in error[0], result.stderr
    assert "Host controllers are not supported in Lambda" in error[0] and "gptoss-sky up" in error[0]
    assert not any("serve" in name for name in requests), requests
    assert not state.exists("gptoss-svc-20b") and not state.has_key("gptoss-svc-20b")
