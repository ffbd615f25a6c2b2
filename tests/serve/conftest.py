"""Serving fixtures: the app on a real 127.0.0.1 port, and a tiny local model to serve."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from rerankit import Reranker
from rerankit.serve.app import ServeSettings, create_app


@contextmanager
def serving(rerankers: dict[str, Reranker], settings: ServeSettings) -> Iterator[str]:
    """Run the app with uvicorn on 127.0.0.1 in a thread; stop it (draining) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rerankers, settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="session")
def local(tiny_bert_dir: Path) -> Reranker:
    return Reranker(str(tiny_bert_dir), device="cpu")
