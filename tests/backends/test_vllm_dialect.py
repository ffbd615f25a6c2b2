"""The remote backend against a server on 127.0.0.1 that answers as vLLM's ``/v1/rerank`` does.

vLLM (``vllm serve Qwen/Qwen3-Reranker-0.6B --hf_overrides ...``) speaks the Jina / Cohere
shape: results sorted best first, each with its ``document``, a sigmoid ``relevance_score``, an
``id``, and errors as ``{"object": "error", "message": ...}``. Unknown body fields only draw a
warning in vLLM's log, so the server here records them and the test asserts there are none.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rerankit import BadRequestError, Reranker
from tests.backends.http_server import JSONHandler, serving

VLLM_FIELDS = {"model", "query", "documents", "top_n", "truncate_prompt_tokens", "priority"}
DOCS = ["protein folding in cells", "a bread recipe", "cells fold proteins", "", "folding"]


class VLLMServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(JSONHandler):
    server: VLLMServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        if self.path != "/v1/rerank":
            return self._send(404, {"detail": "Not Found"})
        documents = body["documents"]
        if len(documents) > 3:  # as vLLM answers a request over --max-model-len
            message = "This model's maximum context length is 100 tokens."
            return self._send(
                400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
            )
        words = set(body["query"].split())
        logits = [sum(w in words for w in d.split()) - 0.5 for d in documents]
        order = sorted(range(len(documents)), key=lambda i: -logits[i])[: body.get("top_n")]
        results = [
            {
                "index": i,
                "document": {"text": documents[i]},
                "relevance_score": 1 / (1 + math.exp(-logits[i])),
            }
            for i in order
        ]
        tokens = sum(len(d.split()) for d in documents) + len(words)
        self._send(
            200,
            {
                "id": "rerank-0123456789abcdef",
                "model": body["model"],
                "usage": {"total_tokens": tokens},
                "results": results,
            },
        )


@pytest.fixture
def vllm() -> Iterator[VLLMServer]:
    with serving(VLLMServer()) as server:
        yield server


def _client(url: str, **settings: Any) -> Reranker:
    return Reranker(
        "Qwen/Qwen3-Reranker-0.6B",
        backend="jina",
        dialect="vllm",
        base_url=url,
        max_retries=0,
        **{"max_documents_per_request": 3, **settings},
    )


def test_vllm_answers_are_read_in_input_order(vllm: VLLMServer) -> None:
    rr = _client(vllm.url)
    result = rr.rank("protein folding cells", DOCS)
    assert sorted(result.indices) == list(range(len(DOCS)))
    assert result.indices[:2] == [0, 2]
    assert result.scale == "service"
    assert all(0.0 < s < 1.0 for s in result.scores)
    assert result.usage["requests"] == 2.0  # 5 documents, at most 3 per request
    assert result.usage["total_tokens"] > 0
    for body in vllm.bodies:
        assert set(body) <= VLLM_FIELDS, "a field vLLM does not know"
        assert body["model"] == "Qwen/Qwen3-Reranker-0.6B"
        assert body["top_n"] == len(body["documents"])
    assert _client(vllm.url, normalize=True).rank("cells", DOCS).scale == "probability"


def test_vllm_errors_keep_its_message(vllm: VLLMServer) -> None:
    rr = _client(vllm.url, max_documents_per_request=10)
    with pytest.raises(BadRequestError, match="maximum context length is 100 tokens"):
        rr.rank("q", DOCS)


def test_a_local_model_answers_while_vllm_is_down(vllm: VLLMServer, tiny_bert_dir: Path) -> None:
    local = Reranker(str(tiny_bert_dir), backend="cross-encoder")
    rr = _client(vllm.url, fallback=local)
    assert rr.rank("cells", DOCS).backend == "jina"
    vllm.shutdown()
    vllm.server_close()
    result = rr.rank("cells", DOCS)
    assert result.backend == "cross-encoder"
    assert sorted(result.indices) == list(range(len(DOCS)))
