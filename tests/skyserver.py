"""A real SkyPilot API server for the tests: isolated HOME and SKY_RUNTIME_DIR, offline, on a free port.

Started once per test session by the `sky_server` fixture (tests/conftest.py) with `sky api start`, and
stopped with `sky api stop` at the end, also when a test fails. Its catalog folder is seeded from the
bundled price snapshot (catalogs/prices/v8, common/accelerators.csv included) with no `.md5` beside the
files, so SkyPilot never tries to download a catalog. No cloud is enabled: whatever needs one is answered
by tests/fakesky.py, whose answers on the no-cloud cases are checked against this server. The server's
PATH has an `rsync` shim (RSYNC_SHIM) so that requests on a fake-enabled cloud reach SkyPilot's placement
and retry logic (e.g. a SkyServe controller that cannot be placed) instead of stopping at "rsync is required".
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "catalogs" / "prices" / "v8"
# What must not leak from the developer's or CI's environment into the server or its clients.
CLEARED = ("SKYPILOT_DISABLE_LOCAL_API_SERVER", "SKYPILOT_API_SERVER_ENDPOINT", "SKYPILOT_CONFIG",
           "SKYPILOT_PROJECT_CONFIG", "SKYPILOT_USER_ID", "SKYPILOT_USER", "SKYPILOT_DEBUG")


def sky_executable() -> str:
    """The `sky` entry point of the interpreter running the tests (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("sky")
    found = str(beside) if beside.exists() else shutil.which("sky")
    if not found:
        raise RuntimeError("the `sky` command (skypilot) is not installed beside this Python")
    return found


def queue_manager_port(api_port: int) -> int:
    """The internal request-queue port a SkyPilot API server on `api_port` also binds (SkyPilot 0.14's
    mp_queue.get_queue_manager_port: it moves with the API server's port, modulo 10,000)."""
    from sky.server import common
    from sky.server.requests.queues import mp_queue

    offset = api_port - common.DEFAULT_SERVER_PORT
    if offset == 0:
        return mp_queue.DEFAULT_QUEUE_MANAGER_PORT
    return 50000 + (mp_queue.DEFAULT_QUEUE_MANAGER_PORT - 50000 + offset) % 10000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port for an API server whose queue port is free too: on a shared machine another process
    (another suite's server) may hold the queue port, and the server would then fail to start."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if _bindable(queue_manager_port(port)):
            return port
    raise RuntimeError("no free port whose SkyPilot queue port is free too, in 50 tries")


def seed_catalogs(runtime_dir: Path) -> Path:
    """Copy the bundled snapshot to where SkyPilot reads its catalogs ($SKY_RUNTIME_DIR/.sky/catalogs/v8)."""
    target = runtime_dir / ".sky" / "catalogs" / "v8"
    if not target.exists():
        shutil.copytree(SNAPSHOT, target)
    if not (target / "common" / "accelerators.csv").is_file():
        raise RuntimeError(f"{SNAPSHOT} has no common/accelerators.csv: the server would try to download it")
    return target


def sky_env(home: Path, port: int, base: dict | None = None) -> dict[str, str]:
    """Environment for a process that talks to (or is) the isolated server on `port`. Its temporary files go
    under home/tmp: SkyPilot leaves some behind (a cancelled request's sky-tmp* folder, the wheel it builds, a
    controller's copy of the config), and they go with the home."""
    env = dict(os.environ if base is None else base)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    for name in CLEARED:
        env.pop(name, None)
    for name in list(env):
        if name.lower().endswith("_proxy"):
            env.pop(name)  # loopback traffic must go direct
    env.update(HOME=str(home), SKY_RUNTIME_DIR=str(home), SKYPILOT_API_SERVER_LOCAL_PORT=str(port),
               PYTHONUNBUFFERED="1", TMPDIR=str(home / "tmp"))
    return env


@dataclass
class SkyServer:
    """A running isolated API server."""

    home: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / ".sky" / "api_server" / "server.log"

    def env(self) -> dict[str, str]:
        return sky_env(self.home, self.port)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


RSYNC_SHIM = """#!/bin/sh
# Test device: SkyPilot checks `rsync --version` before provisioning anything. With it, a launch on a
# fake-enabled cloud gets as far as SkyPilot's own placement and retry logic (and no further: there is
# no network and no real credential, so nothing is ever synced or created).
[ "$1" = "--version" ] && { echo "rsync  version 3.2.7  protocol version 31 (gptoss-sky test shim)"; exit 0; }
echo "rsync test shim: refusing $*" >&2; exit 1
"""


def server_path(home: Path) -> str:
    """PATH for the server: its own bin/ (the rsync shim) first."""
    tools = home / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    shim = tools / "rsync"
    if not shim.exists():
        shim.write_text(RSYNC_SHIM)
        shim.chmod(0o755)
    return f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"


def start(home: Path, timeout: float = 180) -> SkyServer:
    """`sky api start` in an isolated home; raises with the server's log if it does not come up."""
    home.mkdir(parents=True, exist_ok=True)
    seed_catalogs(home)
    server = SkyServer(home, free_port())
    env = server.env() | {"PATH": server_path(home)}
    done = subprocess.run([sky_executable(), "api", "start"], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        stop(server)
        raise RuntimeError(f"`sky api start` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                           f"server log:\n{server.log_tail()}")
    _wait_for_boot_check(server, timeout)
    return server


def _wait_for_boot_check(server: SkyServer, timeout: float) -> None:
    """The server's on-boot `sky check` rewrites the enabled-cloud cache when it ends; wait for it, so a
    test's set_enabled_clouds is not undone behind its back."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "skypilot-server-on-boot-check finished" in server.log.read_text(errors="replace"):
                return
        except OSError:
            pass
        time.sleep(0.5)


def stop(server: SkyServer, timeout: float = 60) -> None:
    """`sky api stop` under the server's own environment (it finds the server by its runtime dir)."""
    subprocess.run([sky_executable(), "api", "stop"], env=server.env(), capture_output=True, text=True,
                   timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def forget_server_url() -> None:
    """Forget the API server URL and health the SDK cached in this process (for its lifetime), so the
    next call reads SKYPILOT_API_SERVER_LOCAL_PORT again."""
    from sky.server import common as server_common

    for cached in (server_common.get_server_url, server_common.is_api_server_local,
                   server_common.get_dashboard_url, server_common.get_api_server_status_response):
        clear = getattr(cached, "cache_clear", None)
        if clear is not None:
            clear()


FAKE_KUBECONFIG = """\
# A clearly fake kubeconfig for tests: no cluster listens on 127.0.0.1:9, the token is not a credential.
apiVersion: v1
kind: Config
clusters:
- name: gptoss-fake-cluster
  cluster: {server: "https://127.0.0.1:9"}
users:
- name: gptoss-fake-user
  user: {token: "not-a-real-token"}
contexts:
- name: gptoss-fake-ctx
  context: {cluster: gptoss-fake-cluster, user: gptoss-fake-user}
current-context: gptoss-fake-ctx
"""

_SET_ENABLED = """
import json, sys
from sky import global_user_state
from sky.clouds import cloud
global_user_state.set_enabled_clouds(json.loads(sys.argv[1]), cloud.CloudCapability.COMPUTE, 'default')
"""


def set_enabled_clouds(server: SkyServer, clouds: list[str], kube_server: str = "https://127.0.0.1:9") -> None:
    """Write `clouds` into the server's enabled-cloud cache (what `sky check` would leave there); for
    kubernetes, also a clearly fake kubeconfig whose one context is `gptoss-fake-ctx`, its cluster at
    `kube_server` (by default a port where nothing listens)."""
    import json

    kubeconfig = server.home / ".kube" / "config"
    if "kubernetes" in clouds:
        kubeconfig.parent.mkdir(exist_ok=True)
        kubeconfig.write_text(FAKE_KUBECONFIG.replace("https://127.0.0.1:9", kube_server))
    elif kubeconfig.exists():
        kubeconfig.unlink()
    done = subprocess.run([sys.executable, "-c", _SET_ENABLED, json.dumps(clouds)], env=server.env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"could not set the server's enabled clouds: {done.stderr[-2000:]}")
