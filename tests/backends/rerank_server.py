"""A real Jina-shaped rerank server on 127.0.0.1 for fault tests, driven by a script of faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rerankit import Reranker, Secret
from tests.backends.http_server import FAST, JSONHandler, ScriptedServer, serving

# Each scripted step is one of: "ok", ("status", code, retry_after|None), ("slow", seconds),
# "drop", "invalid-json", "missing-index", "duplicate-index". Once the script is used up, every
# request gets ``default_step`` ("ok" unless a test sets another, e.g. a service that is down).


def relevance(query: str, text: str) -> float:
    """The server's scoring rule: shared words, then shorter texts first (deterministic)."""
    words = set(query.lower().split())
    return sum(w in words for w in text.lower().split()) - len(text) / 10_000


def document_text(document: Any) -> str:
    """A document's text as sent: the string, or an object's ``"text"`` (``""`` for an image)."""
    return document if isinstance(document, str) else str(document.get("text", ""))


class RerankServer(ScriptedServer):
    def __init__(self) -> None:
        super().__init__(_Handler, default_step="ok")


class _Handler(JSONHandler):
    server: RerankServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append(body)
            self.server.headers_seen.append(dict(self.headers))
        step = self.server.next_step()
        if step == "drop":
            self.connection.shutdown(2)  # close without any response
            return
        if isinstance(step, tuple) and step[0] == "slow":
            time.sleep(step[1])
        if isinstance(step, tuple) and step[0] == "status":
            _, code, retry_after = step
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            self._send(code, {"detail": f"scripted {code}"}, headers)
            return
        if step == "invalid-json":
            self._send_raw(200, b"<html>not json</html>")
            return
        docs = [document_text(d) for d in body["documents"]]
        results = [
            {"index": i, "relevance_score": relevance(body["query"], d)} for i, d in enumerate(docs)
        ]
        results.reverse()  # the wire order is not the input order
        if step == "missing-index" and results:
            results.pop()
        if step == "duplicate-index" and results:
            results.append(dict(results[0]))
        tokens = sum(len(d.split()) for d in docs) + len(docs) * len(body["query"].split())
        self._send(
            200, {"model": body.get("model"), "usage": {"total_tokens": tokens}, "results": results}
        )


@contextmanager
def running_server(max_seconds: float = 120.0) -> Iterator[RerankServer]:
    """Serve in a thread; stops at exit, or by itself after ``max_seconds``."""
    with serving(RerankServer(), max_seconds) as server:
        yield server


def jina_reranker(server_url: str, model: str, **options: object) -> Reranker:
    """A ``jina`` backend reranker for ``model`` on a test server, with :data:`FAST` settings."""
    return Reranker(
        model,
        backend="jina",
        base_url=server_url,
        api_key=Secret.from_token("local-test-key"),
        **{**FAST, **options},
    )
