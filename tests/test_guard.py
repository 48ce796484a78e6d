"""The key on every route: launcher/node/guard.py in front of real servers on 127.0.0.1.

The apps expose the engines' real route lists (tests/fixtures/*-routes.txt, made by make_routes.py from
vLLM 0.32.0's own app and SGLang 0.5.23's source); the guard is added the way each engine gets it on the
node: `app.add_middleware(Guard)` (what vLLM's --middleware does with a class) and, for SGLang,
`python -m gptoss_guard sglang.launch_server ...` in a subprocess. Requests go over real sockets (httpx,
curl, a raw WebSocket handshake).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from engineapp import ENGINES, KEY, Served, concrete, engine_app, routes

from launcher.node import guard, render
from launcher.plan import catalog, recipes


@pytest.fixture(params=sorted(ENGINES))
def guarded(request, monkeypatch):
    monkeypatch.setenv("GPTOSS_KEY_ENV", "GPTOSS_TEST_KEY")
    monkeypatch.setenv("GPTOSS_TEST_KEY", KEY)
    app = engine_app(request.param)
    app.add_middleware(guard.Guard)  # what vLLM's --middleware does with a class
    with Served(app) as served:
        served.engine = request.param
        yield served


def _http_routes(engine):
    return [(m, concrete(p)) for m, p in routes(engine) if m not in ("WEBSOCKET", "MOUNT")] + \
           [("GET", p) for m, p in routes(engine) if m == "MOUNT"]


def test_route_lists_hold_the_paths_the_engines_leave_open():
    vllm = {p for _, p in routes("vllm")}
    sglang = {p for _, p in routes("sglang")}
    assert {"/invocations", "/tokenize", "/detokenize", "/metrics", "/v1/chat/completions", "/health"} <= vllm
    assert {"/metrics", "/health_generate", "/ready", "/v1/chat/completions", "/health"} <= sglang


def test_every_route_refuses_a_request_without_the_key(guarded):
    http_routes = _http_routes(guarded.engine)
    assert len(http_routes) > 30
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for method, path in http_routes:
            if (method, path) in (("GET", "/health"), ("HEAD", "/health")):
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                            {"Authorization": f"Basic {KEY}"}, {"X-Api-Key": KEY}):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.status_code)
                assert KEY not in response.text


def test_every_route_answers_with_the_key(guarded):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for method, path in _http_routes(guarded.engine):
            for scheme in ("Bearer", "bearer"):
                response = client.request(method, path, headers={"Authorization": f"{scheme} {KEY}"})
                assert response.status_code == 200, (method, path, response.status_code)


def test_only_the_health_path_is_open_and_it_reveals_nothing(guarded):
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.content == b""
        assert client.head("/health").status_code == 200
        for method, path in (("POST", "/health"), ("GET", "/health/"), ("GET", "/healthz"),
                             ("GET", "/health_generate"), ("GET", "/ready"), ("GET", "/metrics"),
                             ("GET", "/nonexistent"), ("GET", "//v1/models"), ("OPTIONS", "/v1/models"),
                             ("GET", "/v1/../metrics")):
            assert client.request(method, path).status_code == 401, (method, path)


def _ws_handshake(port: int, path: str, headers: dict[str, str]) -> int:
    """A raw WebSocket upgrade request; returns the HTTP status the server answers."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


def test_websocket_routes_need_the_key_too(guarded):
    paths = [p for m, p in routes(guarded.engine) if m == "WEBSOCKET"]
    assert paths or guarded.engine == "vllm"
    for path in paths or ["/v1/realtime"]:
        assert _ws_handshake(guarded.port, concrete(path), {}) in (401, 403)
        assert _ws_handshake(guarded.port, concrete(path), {"Authorization": "Bearer nope"}) in (401, 403)
        if paths:
            assert _ws_handshake(guarded.port, concrete(path), {"Authorization": f"Bearer {KEY}"}) == 101


def test_the_guard_refuses_to_start_without_a_key(monkeypatch):
    monkeypatch.setenv("GPTOSS_KEY_ENV", "GPTOSS_TEST_KEY")
    monkeypatch.delenv("GPTOSS_TEST_KEY", raising=False)
    with pytest.raises(RuntimeError, match="GPTOSS_TEST_KEY is empty"):
        guard.Guard(engine_app("vllm"))


def _rendered_run(engine: str) -> str:
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, engine=engine)
    return render.render_config(cat, render.Deployment(name="gptoss-x", recipes=(recipe,)))["run"]


def test_the_watchdogs_own_curl_reads_metrics_through_the_guard(guarded, tmp_path):
    """The run script's header-file line and its /metrics curl line, run by bash and real curl."""
    run = _rendered_run("vllm")
    header_line = next(line for line in run.splitlines() if "auth-header)" in line)
    curl_line = next(line for line in run.splitlines() if line.strip().startswith("seen=$(curl")).strip()
    assert "127.0.0.1:8000/metrics" in curl_line and "-H @" in curl_line
    local_curl = curl_line.replace("127.0.0.1:8000", f"127.0.0.1:{guarded.port}")
    script = f"mkdir -p ~/gptoss-sky\n{header_line}\n{local_curl}\n" \
             'echo "seen=[$seen]"\nstat -c %a ~/gptoss-sky/auth-header\n'
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VLLM_API_KEY": KEY}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "seen=[ 0.0 7.0]" in out.stdout and out.stdout.strip().endswith("600")
    # Without the header file the same curl gets nothing: the guard is what it passes.
    (tmp_path / "gptoss-sky" / "auth-header").write_text("Authorization: Bearer wrong\n")
    out = subprocess.run(["bash", "-c", f'{local_curl}\necho "seen=[$seen]"'], capture_output=True, text=True,
                         env=env, timeout=30)
    assert "seen=[]" in out.stdout


def _sglang_auth():
    """SGLang 0.5.23's own auth decision (sglang/srt/utils/auth.py, which imports nothing heavy)."""
    path = importlib.metadata.distribution("sglang").locate_file("sglang/srt/utils/auth.py")
    spec = importlib.util.spec_from_file_location("sglang_auth", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sglang_auth"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sglangs_own_key_check_leaves_metrics_and_health_variants_open():
    """Why SGLang needs the guard too: its --api-key lets these through without any key."""
    auth = _sglang_auth()
    for path in ("/metrics", "/health_generate", "/ready"):
        decision = auth.decide_request_auth(method="GET", path=path, authorization_header=None, api_key="k",
                                            admin_api_key=None, auth_level=auth.AuthLevel.NORMAL)
        assert decision.allowed, path


FAKE_SGLANG = {
    "sglang/__init__.py": "",
    "sglang/srt/__init__.py": "",
    "sglang/srt/entrypoints/__init__.py": "",
    # Stands in for SGLang's http_server module: the module-level app, with SGLang's real route list.
    "sglang/srt/entrypoints/http_server.py": """
        import sys
        sys.path.insert(0, {tests!r})
        from engineapp import engine_app
        app = engine_app("sglang")
    """,
    # Stands in for sglang.launch_server: parses its argv and serves the app (SGLang runs uvicorn in-process).
    "sglang/launch_server.py": """
        import sys
        if __name__ == "__main__":
            import uvicorn
            from sglang.srt.entrypoints.http_server import app
            port = int(sys.argv[sys.argv.index("--port") + 1])
            print("launch_server argv:", sys.argv[1:], flush=True)
            uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    """,
}


def test_sglang_started_through_the_guard_refuses_every_route_without_the_key(tmp_path):
    """`python -m gptoss_guard sglang.launch_server ARGS` (the rendered program) with the file setup writes."""
    for rel, text in FAKE_SGLANG.items():
        path = tmp_path / "fake" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text.format(tests=str(Path(__file__).parent))))
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "gptoss_guard.py").write_text(render.guard_source() + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = _rendered_run("sglang")
    program = re.search(r"\n    (python -m gptoss_guard sglang\.launch_server) --model-path", argv).group(1).split()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{tmp_path / 'guard'}:{tmp_path / 'fake'}",
           "GPTOSS_KEY_ENV": "SGLANG_API_KEY", "SGLANG_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, *program[1:], "--model-path", "m", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "SGLang stand-in did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=10) as client:
            for method, path in _http_routes("sglang"):
                if path != "/health":
                    assert client.request(method, path).status_code == 401, (method, path)
            assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
            assert client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "launch_server argv: ['--model-path', 'm', '--port'" in out
    assert KEY not in out


def test_sglang_through_the_guard_will_not_start_without_a_key(tmp_path):
    (tmp_path / "gptoss_guard.py").write_text(render.guard_source() + "\n")
    out = subprocess.run([sys.executable, "-m", "gptoss_guard", "sglang.launch_server"], capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path),
                                         "GPTOSS_KEY_ENV": "SGLANG_API_KEY"}, timeout=30)
    assert out.returncode != 0 and "SGLANG_API_KEY is empty" in out.stderr
