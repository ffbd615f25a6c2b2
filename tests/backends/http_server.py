"""What every fake HTTP server of the tests shares: JSON answers, and serving in a thread."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Server = TypeVar("Server", bound=ThreadingHTTPServer)

# Client settings for talking to these servers: short timeouts and backoffs, so fault tests
# with retries take milliseconds.
FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "timeout": 2.0,
    "connect_timeout": 1.0,
}


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps the test output quiet."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(code, json.dumps(payload).encode(), headers)

    def _send_raw(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving(server: Server, max_seconds: float = 120.0) -> Iterator[Server]:
    """Serve ``server`` in a thread; stops at exit, or by itself after ``max_seconds``."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    watchdog = threading.Timer(max_seconds, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield server
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class ScriptedServer(ThreadingHTTPServer):
    """A server on 127.0.0.1 that plays a script of steps (faults, answers), then a default.

    It records every request body and its headers; ``handler`` answers each request.
    """

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], default_step: Any) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.script: deque[Any] = deque()
        self.default_step: Any = default_step
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out close their end; that is the point of the test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_step(self) -> Any:
        with self.lock:
            return self.script.popleft() if self.script else self.default_step
