"""gptoss-sky against a real SkyPilot 0.14 API server (no cloud): the commands a new user runs first,
stdout that stays JSON (API server auto-start included), enabled infra as the server sees it, who owns
what, and SkyPilot's messages kept whole.

The commands run as real processes (`python -m launcher.cli`), so stdout is the process's own fd 1,
with nothing in between that could hide what SkyPilot prints there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import skyserver
from fakesky import FakeSky

from launcher.errors import NoCloudError, NotFoundError, SkyError
from launcher.sky import skyapi, state

ROOT = Path(__file__).resolve().parents[1]
TWO_LINES = "Failed to get AWS user identity.\nTo fix: run `aws configure`"


def gptoss(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_json_document(stdout: str):
    """stdout parses as exactly one JSON document (json.loads refuses trailing text)."""
    return json.loads(stdout)


def client_env(home: Path, port: int, **extra: str) -> dict:
    env = skyserver.sky_env(home, port)
    env.update(GPTOSS_SKY_HOME=str(home / "gptoss-sky"), **extra)
    return env


def first_commands_of_a_new_user(env: dict) -> None:
    """status --json and down --all -y --json succeed with one JSON document each; serve with no enabled
    cloud fails with exit 2 naming `sky check`, prints nothing on stdout and leaves nothing behind."""
    status = gptoss(["status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert one_json_document(status.stdout) == []
    down = gptoss(["down", "--all", "-y", "--json"], env)
    assert down.returncode == 0, down.stderr
    removed = one_json_document(down.stdout)
    assert removed["removed"] == [] and removed["controllers_stopped"] == []
    serve = gptoss(["serve", "20b", "-y"], env)
    assert serve.returncode == 2, serve.stdout + serve.stderr
    assert "sky check" in serve.stderr and "Traceback" not in serve.stderr
    assert serve.stdout == ""
    assert not list((Path(env["GPTOSS_SKY_HOME"]) / "deployments").glob("*.json"))


def test_a_new_user_against_a_running_api_server(sky_server, tmp_path):
    env = client_env(tmp_path / "client", sky_server.port, SKYPILOT_DISABLE_LOCAL_API_SERVER="1")
    first_commands_of_a_new_user(env)


def test_a_new_user_whose_first_command_starts_the_api_server(tmp_path):
    """No server running: the first SDK call starts one (and says so, on stderr). Stopped at the end."""
    home = tmp_path / "fresh"
    home.mkdir()
    skyserver.seed_catalogs(home)  # offline: the server must not try to download catalogs
    server = skyserver.SkyServer(home, skyserver.free_port())
    env = client_env(home, server.port)
    assert "SKYPILOT_DISABLE_LOCAL_API_SERVER" not in env
    try:
        status = gptoss(["status", "--json"], env)
        assert status.returncode == 0, status.stderr
        assert one_json_document(status.stdout) == []
        assert "API server" in status.stderr  # SkyPilot's start-up banner went to stderr
        first_commands_of_a_new_user(env)
    finally:
        skyserver.stop(server)


def test_the_test_servers_port_leaves_its_queue_port_free_as_skypilot_computes_it(monkeypatch):
    """A test server fails to start if another process holds its queue port (seen on a shared machine)."""
    from sky.server.requests.queues import mp_queue

    port = skyserver.free_port()
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(port))
    assert skyserver.queue_manager_port(port) == mp_queue.get_queue_manager_port()
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", "46580")  # SkyPilot's default port
    assert skyserver.queue_manager_port(46580) == mp_queue.get_queue_manager_port()


def test_enabled_clouds_and_infra_are_the_api_servers(sky_server):
    """The client asks the server (a team server's clouds count), with Kubernetes contexts named as
    SkyPilot names them. The test process itself has no cloud credentials and no enabled clouds."""
    try:
        skyserver.set_enabled_clouds(sky_server, ["kubernetes", "lambda"])
        assert skyapi.enabled_clouds() == ["kubernetes", "lambda"]
        assert skyapi.SkyPilotClient().enabled_infra() == ["kubernetes/gptoss-fake-ctx", "lambda"]
    finally:
        skyserver.set_enabled_clouds(sky_server, [])
    assert skyapi.enabled_clouds() == [] and skyapi.SkyPilotClient().enabled_infra() == []


def test_current_user_is_who_the_server_records_as_owner(sky_server):
    """The owner of what this client launches is the user the server attributes its requests to."""
    from sky.client import sdk

    client = skyapi.SkyPilotClient()
    me = client.current_user()
    client.clusters()  # one request, attributed by the server
    requests = sdk.api_status(all_status=True, limit=50)
    owners = {getattr(r, "user_id", None) or r.get("user_id") for r in requests}
    assert me["user_hash"] in owners and me["user_name"]


def test_sky_output_never_reaches_stdout_even_when_the_sdk_prints_there(sky_server, capfd):
    """SkyPilot's logger and console are bound to stdout at import; the seam points them at stderr."""
    from sky import sky_logging
    from sky.utils import rich_console_utils

    skyapi.SkyPilotClient().clusters()  # the first call routes SkyPilot's output
    sky_logging.init_logger("sky.test").info("SkyPilot log line")
    rich_console_utils.get_console().print("SkyPilot console line")
    out, err = capfd.readouterr()
    assert out == ""
    assert "SkyPilot log line" in err and "SkyPilot console line" in err


def test_skypilot_messages_are_kept_whole_without_colour_codes():
    """The remedy is often on the next line (e.g. the install command): never cut to the first line."""
    import sky.exceptions as sky_exc

    raw = ("Failed to provision on AWS.\n\x1b[1mTo fix: pip install \"skypilot[aws]\"\x1b[0m\n"
           "Then run: sky check aws")
    with pytest.raises(SkyError) as info:
        with skyapi.map_sky_exceptions("launching gptoss-x"):
            raise sky_exc.ResourcesUnavailableError(raw)
    assert str(info.value) == ("launching gptoss-x: Failed to provision on AWS.\n"
                               "To fix: pip install \"skypilot[aws]\"\nThen run: sky check aws")
    with pytest.raises(NoCloudError, match="(?s)run `sky check`.*Cloud access is not set up. Run: sky check"):
        with skyapi.map_sky_exceptions("launching gptoss-x"):
            raise sky_exc.NoCloudAccessError("Cloud access is not set up. Run: \x1b[1msky check\x1b[0m")
    with pytest.raises(NotFoundError):
        with skyapi.map_sky_exceptions("tearing down gptoss-x"):
            raise sky_exc.ClusterDoesNotExist("Cluster 'gptoss-x' does not exist.")


def test_the_cli_prints_a_multi_line_skypilot_message_whole_on_stderr(monkeypatch):
    import sky.exceptions as sky_exc
    from click.testing import CliRunner

    from launcher.cli import cli

    class Failing(FakeSky):
        def clusters(self, names=None):
            with skyapi.map_sky_exceptions("reading cluster status"):
                raise sky_exc.CloudUserIdentityError(TWO_LINES)

    Failing().install(monkeypatch)
    state.save(state.Record(name="gptoss-a", kind="cluster", model="gpt-oss-20b", served_model="openai/gpt-oss-20b",
                            key_path="/nonexistent", created=0))
    result = CliRunner(mix_stderr=False).invoke(cli, ["status", "--json"])
    assert result.exit_code == 1
    assert "reading cluster status: Failed to get AWS user identity.\nTo fix: run `aws configure`" in result.stderr
    assert json.loads(result.stdout) == {"error": f"reading cluster status: {TWO_LINES}", "exit_code": 1}  # whole
    assert "Traceback" not in result.stderr


def test_log_lines_come_whole_as_the_sdk_writes_them_and_errors_follow_them():
    """tail_logs/serve_logs adapt SkyPilot's write-to-a-stream log calls into an iterator of lines."""
    def sdk_call(out):
        out.write("gptoss-sky phase install 1700000000\npartial ")
        out.write("line\nlast line without newline")

    assert list(skyapi._stream_lines("reading a log", sdk_call)) == [
        "gptoss-sky phase install 1700000000", "partial line", "last line without newline"]

    def failing(out):
        out.write("one line\n")
        import sky.exceptions as sky_exc
        raise sky_exc.ClusterDoesNotExist("Cluster 'gptoss-x' does not exist.")

    lines = skyapi._stream_lines("reading the log of gptoss-x", failing)
    assert next(lines) == "one line"
    with pytest.raises(NotFoundError, match="reading the log of gptoss-x: Cluster 'gptoss-x' does not exist."):
        next(lines)


def test_plan_and_dry_run_need_no_api_server_and_say_why_every_cloud_is_shown():
    """Enabled clouds are asked of the API server; with none reachable (CI: auto-start disabled), pricing
    and dry runs still work on the catalog and say why."""
    from clitools import invoke

    result = invoke("up", "20b", "--dryrun", "-y")
    assert result.exit_code == 0, result.stderr
    assert "could not ask the API server" in result.stderr and "sky api login" in result.stderr
