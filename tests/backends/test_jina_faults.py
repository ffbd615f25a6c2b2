"""The remote backend against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rerankit import (
    AuthenticationError,
    CircuitOpenError,
    InvalidResponseError,
    RankResult,
    RemoteConnectionError,
    RemoteTimeoutError,
    Reranker,
    Secret,
    ServerError,
)
from tests.backends.http_server import FAST
from tests.backends.rerank_server import (
    RerankServer,
    jina_reranker,
    relevance,
    running_server,
)

QUERY = "protein folding in cells"
DOCS = [
    "cells fold proteins",
    "a recipe for bread",
    "protein folding happens in cells",
    "",
    "folding chairs",
    "cells",
    "protein",
    "a recipe for bread",  # a duplicate text stays a separate document
]


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with running_server() as srv:
        yield srv


def _reranker(server_url: str, **options: object) -> Reranker:
    return jina_reranker(server_url, "jina-reranker-v2-base-multilingual", **options)


def _assert_complete(result: RankResult) -> None:
    """Every document exactly once, with the server's scores, best first."""
    assert sorted(result.indices) == list(range(len(DOCS)))
    for item in result:
        assert item.document is DOCS[item.index]
        assert item.score == pytest.approx(relevance(QUERY, DOCS[item.index]))
    assert result.scores == sorted(result.scores, reverse=True)


def test_429_with_retry_after_is_honoured(server: RerankServer) -> None:
    server.script.extend([("status", 429, 0.3), ("status", 429, 0.3)])
    started = time.perf_counter()
    result = _reranker(server.url).rank(QUERY, DOCS)
    assert time.perf_counter() - started >= 0.6
    _assert_complete(result)
    assert len(server.requests) == 3
    assert server.headers_seen[0]["Authorization"] == "Bearer local-test-key"


def test_500_and_503_bursts_recover(server: RerankServer) -> None:
    server.script.extend([("status", 500, None), ("status", 503, None), ("status", 503, None)])
    _assert_complete(_reranker(server.url, max_retries=3).rank(QUERY, DOCS))
    assert len(server.requests) == 4


async def test_chunked_async_with_a_burst_in_one_chunk(server: RerankServer) -> None:
    server.script.extend(["ok", ("status", 503, None)])
    rr = _reranker(server.url, max_documents_per_request=3, max_concurrency=2)
    result = await rr.arank(QUERY, DOCS)
    _assert_complete(result)
    assert result.usage["requests"] == 3
    await rr.aclose()


def test_slow_response_times_out_then_recovers(server: RerankServer) -> None:
    server.script.append(("slow", 1.0))
    rr = _reranker(server.url, timeout=0.3)
    _assert_complete(rr.rank(QUERY, DOCS))
    server.script.extend([("slow", 1.0)] * 3)
    with pytest.raises(RemoteTimeoutError):
        _reranker(server.url, timeout=0.3, max_retries=1).rank(QUERY, DOCS)


def test_dropped_connection_is_retried(server: RerankServer) -> None:
    server.script.append("drop")
    _assert_complete(_reranker(server.url).rank(QUERY, DOCS))
    server.script.extend(["drop"] * 3)
    with pytest.raises(RemoteConnectionError):
        _reranker(server.url, max_retries=2).rank(QUERY, DOCS)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("invalid-json", "not JSON"),
        ("missing-index", "are missing"),
        ("duplicate-index", "are repeated"),
    ],
)
def test_malformed_answers_are_errors_not_short_lists(
    server: RerankServer, step: str, message: str
) -> None:
    server.script.append(step)
    with pytest.raises(InvalidResponseError, match=message):
        _reranker(server.url).rank(QUERY, DOCS)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fallback_to_a_local_backend_when_the_server_is_down(tiny_bert_dir: Path) -> None:
    local = Reranker(str(tiny_bert_dir), device="cpu")
    rr = Reranker(
        "jina-reranker-v2-base-multilingual",
        backend="jina",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        api_key=Secret.from_token("k"),
        fallback=local,
        max_retries=1,
        **FAST,
    )
    result = rr.rank(QUERY, DOCS, top_k=5)
    assert result.backend == "cross-encoder"
    assert result.indices == local.rank(QUERY, DOCS, top_k=5).indices
    everything = rr.rank(QUERY, DOCS)
    assert sorted(everything.indices) == list(range(len(DOCS)))


def test_rerankit_talks_to_the_same_server_across_calls(server: RerankServer) -> None:
    rr = _reranker(server.url)
    for _ in range(3):
        _assert_complete(rr.rank(QUERY, DOCS))
    assert rr.usage["requests"] == 3
    assert rr.usage["total_tokens"] > 0
    rr.close()


BREAKER: dict[str, Any] = {"max_retries": 0, "failure_threshold": 2, "reset_after": 0.5}


def test_a_trial_answered_401_does_not_leave_the_circuit_open(server: RerankServer) -> None:
    """503s open the circuit, the half-open trial gets a 401, then the service is back."""
    with running_server() as backup:
        rr = Reranker(
            "jina-reranker-v2-base-multilingual",
            backend="jina",
            base_url=server.url,
            api_key=Secret.from_token("local-test-key"),
            fallback=_reranker(backup.url),
            **{**FAST, **BREAKER},
        )
        server.script.extend([("status", 503, None)] * 2 + [("status", 401, None)])
        for _ in range(3):  # two failures open the circuit; the third call is not sent
            _assert_complete(rr.rank(QUERY, DOCS))  # the fallback answers
        assert (len(server.requests), len(backup.requests)) == (2, 3)
        time.sleep(0.55)
        with pytest.raises(AuthenticationError):  # the trial: a wrong key is never hidden
            rr.rank(QUERY, DOCS)
        for _ in range(2):  # the service answered, so it is used again, not the fallback
            _assert_complete(rr.rank(QUERY, DOCS))
        assert (len(server.requests), len(backup.requests)) == (5, 3)


async def test_an_async_trial_answered_401_does_not_leave_the_circuit_open(
    server: RerankServer,
) -> None:
    rr = _reranker(server.url, **BREAKER)
    server.script.extend([("status", 503, None)] * 2 + [("status", 401, None)])
    for _ in range(2):
        with pytest.raises(ServerError):
            await rr.arank(QUERY, DOCS)
    with pytest.raises(CircuitOpenError):
        await rr.arank(QUERY, DOCS)
    await asyncio.sleep(0.55)
    with pytest.raises(AuthenticationError):
        await rr.arank(QUERY, DOCS)
    _assert_complete(await rr.arank(QUERY, DOCS))
    assert len(server.requests) == 4
    await rr.aclose()


async def test_a_cancelled_trial_does_not_leave_the_circuit_open(server: RerankServer) -> None:
    rr = _reranker(server.url, **BREAKER)
    server.script.extend([("status", 503, None)] * 2 + [("slow", 1.5)])
    for _ in range(2):
        with pytest.raises(ServerError):
            await rr.arank(QUERY, DOCS)
    await asyncio.sleep(0.55)
    with pytest.raises(TimeoutError):  # the caller gives up on the trial (a server timeout)
        await asyncio.wait_for(rr.arank(QUERY, DOCS), timeout=0.3)
    _assert_complete(await rr.arank(QUERY, DOCS))
    assert len(server.requests) == 4
    await rr.aclose()
