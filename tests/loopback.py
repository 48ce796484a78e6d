"""An ASGI app served by uvicorn on a thread, on 127.0.0.1 with a port the OS picks (never a fixed port).

The one way the tests run a real HTTP server; the fake engine, the fake /metrics endpoint and the guard's
route tables all use it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class LoopbackServer:
    def __init__(self, app: Any, **uvicorn_options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        host, self.port = self.sock.getsockname()
        self.url = f"http://{host}:{self.port}"
        options = dict(lifespan="off", log_level="critical", ws="none", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(uvicorn.Config(app, **(options | uvicorn_options)))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
