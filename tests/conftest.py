"""Test isolation: no test touches the real ~/.sky, ~/.config/gptoss-sky or a cloud; SDK calls fail fast
unless a test asks for `sky_server`, the session's real SkyPilot API server (isolated, offline, no cloud).
Each test reads SkyPilot's catalogs from its own folder, whichever test imported SkyPilot first.
Plus one fake vLLM server per session for the endpoint checks (faults reset per test), and a private copy of
catalogs/ for the tests that edit it. The run's temporary files all live in one folder of its own ($TMPDIR),
removed when the run passes; a file a test leaves there fails the run."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

import seeds  # noqa: E402
import skyserver  # noqa: E402
from openai_server import FakeServer  # noqa: E402

_RUN_TMP: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """$TMPDIR becomes a folder of this run's (pytest's tmp_path, tempfile and every process a test starts,
    SkyPilot's API server included, write there), so a run leaves the machine's /tmp as it found it."""
    folder = Path(tempfile.mkdtemp(prefix="gptoss-sky-tests-"))
    _RUN_TMP.update(folder=folder, before=os.environ.get("TMPDIR"), status=None)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # tempfile caches the folder it chose first


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _RUN_TMP["status"] = exitstatus


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's folder when it passed; after a failure keep it (failed tests' tmp_path) and say where."""
    folder = _RUN_TMP.get("folder")
    if folder is None:
        return
    before = _RUN_TMP["before"]
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None
    if _RUN_TMP["status"] == 0:
        shutil.rmtree(folder, ignore_errors=True)
    elif folder.exists():
        print(f"this run's temporary files, kept: {folder}", file=sys.stderr)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_in_tmpdir() -> Iterator[None]:
    """Fails the run if a test leaves anything in $TMPDIR beside pytest's own folders (which end with the run):
    what a test writes belongs in its tmp_path, and what a process it starts writes, in that process's own
    folder. Set up before any other session fixture, so it looks after they have all ended."""
    yield
    left = sorted(p.name for p in _RUN_TMP["folder"].iterdir() if not p.name.startswith("pytest-of-"))
    if left:
        pytest.fail(f"left in $TMPDIR ({_RUN_TMP['folder']}) by this run: {', '.join(left)}", pytrace=False)


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


def _bound_to_another_catalog_folder(module, before: str, folder: str) -> bool:
    """A module-level catalog frame (its CSV path is fixed when the module runs) outside `folder`, or a path
    string under `before`, the folder SkyPilot used until now."""
    from sky.catalog.common import LazyDataFrame

    for value in vars(module).values():
        if isinstance(value, LazyDataFrame) and not value._filename.startswith(folder + os.sep):
            return True
        if isinstance(value, str) and value.startswith(before + os.sep):
            return True
    return False


@pytest.fixture(autouse=True)
def skypilot_catalog_folder(isolated_env):
    """SkyPilot binds its catalog folder ($SKY_RUNTIME_DIR/.sky/catalogs/v8) when `sky.catalog.common` is first
    imported, so without this every later test would read the catalogs of whichever test imported it first.
    Re-points each copy at this test's folder: `common._ABSOLUTE_VERSIONED_CATALOG_DIR`, and the modules that
    bind a path under it at import (each `sky.catalog.<cloud>_catalog`'s frames, vSphere's CSV paths,
    `sky.utils.accelerator_registry`'s tables), re-run as SkyPilot's own import runs them."""
    common = sys.modules.get("sky.catalog.common")
    if common is None:  # not imported yet: the first import, in this test, reads this test's folder
        yield
        return
    from sky.skylet import constants, runtime_utils
    from sky.utils import annotations

    before = common._ABSOLUTE_VERSIONED_CATALOG_DIR
    folder = runtime_utils.get_runtime_dir_path(os.path.join(".sky/catalogs", constants.CATALOG_SCHEMA_VERSION))
    common._ABSOLUTE_VERSIONED_CATALOG_DIR = folder
    for name, module in list(sys.modules.items()):
        if (name.startswith("sky.") and module is not None and module is not common
                and _bound_to_another_catalog_folder(module, before, folder)):
            importlib.reload(module)
    annotations.clear_request_level_cache()  # frames read in an earlier test
    yield


def _clear_catalog_caches() -> None:
    from launcher.plan import catalog, startup, throughput

    catalog.load.cache_clear()
    catalog._load_price_snapshot.cache_clear()
    startup.load.cache_clear()
    throughput._data.cache_clear()


@pytest.fixture
def catalogs(tmp_path, monkeypatch) -> Iterator[Path]:
    """A private copy of catalogs/ that every command reads (GPTOSS_SKY_CATALOGS); nothing cached survives it."""
    root = tmp_path / "catalogs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "catalogs", root)
    monkeypatch.setenv("GPTOSS_SKY_CATALOGS", str(root))
    _clear_catalog_caches()
    yield root
    _clear_catalog_caches()


@pytest.fixture
def edit(catalogs: Path) -> Callable[[str, Callable[[Any], Any]], Any]:
    """edit(name, change): change(data) on one file of the `catalogs` copy (YAML or JSON), written back; the
    data written is returned."""

    def change(name: str, how: Callable[[Any], Any]) -> Any:
        path = catalogs / name
        as_json = path.suffix == ".json"
        data = json.loads(path.read_text()) if as_json else yaml.safe_load(path.read_text())
        how(data)
        path.write_text(json.dumps(data) if as_json else yaml.safe_dump(data, sort_keys=False))
        _clear_catalog_caches()
        return data

    return change


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


@pytest.fixture
def seeded(isolated_env, monkeypatch):
    """SkyPilot's catalog folder (this test's) holds a Lambda catalog (seeds.LAMBDA_ROWS) and accelerators.csv;
    Lambda is enabled as SkyPilot's own tests do."""
    import sky
    from fakesky import FakeSky
    from sky import check as sky_check

    from launcher.sky import skyapi

    seeds.seed_lambda(isolated_env)
    # The in-process optimizer reads enabled clouds as SkyPilot's own tests fake them; the client asks
    # the API server (skyapi.enabled_clouds), answered here by the fake.
    monkeypatch.setattr(sky_check, "get_cached_enabled_clouds_or_refresh", lambda *a, **k: [sky.clouds.Lambda()])
    monkeypatch.setattr(skyapi, "enabled_clouds", FakeSky(enabled_infra=["lambda"]).enabled_clouds)
    return isolated_env


@pytest.fixture
def openai_ok():
    """A tiny real HTTP server on 127.0.0.1 that answers /health and /v1/models like vLLM."""
    import http.server
    import json
    import threading

    models = json.dumps({"data": [{"id": "openai/gpt-oss-20b"}, {"id": "openai/gpt-oss-120b"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body, code = b"", 200
            elif self.path == "/v1/models" and self.headers.get("Authorization", "").startswith("Bearer "):
                body, code = models, 200
            else:
                body, code = b'{"error": "Unauthorized"}', 401
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
