"""Fallback chains to any depth, thresholds across score scales, and the listwise contract."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from rerankit import (
    ConfigurationError,
    InvalidInputError,
    RemoteConnectionError,
    Reranker,
    RerankerConfig,
    Secret,
)
from rerankit.backends.base import Backend
from rerankit.types import Scores

DOCS = ["protein folding in cells", "a bread recipe", "cells", "folding chairs"]
FAST = {"max_retries": 0, "connect_timeout": 0.5, "timeout": 1.0}


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable(fallback: Reranker | None = None, **settings: object) -> Reranker:
    return Reranker(
        "jina-reranker-v2-base-multilingual",
        backend="jina",
        dialect="infinity",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        api_key=Secret.from_token("k"),
        fallback=fallback,
        **{**FAST, **settings},
    )


@pytest.fixture
def local(tiny_bert_dir: Path) -> Reranker:
    return Reranker(str(tiny_bert_dir), backend="cross-encoder")


def test_a_fallbacks_own_fallback_answers(local: Reranker) -> None:
    chain = _unreachable(fallback=_unreachable(fallback=local))
    result = chain.rank("protein folding", DOCS)
    assert result.backend == "cross-encoder"
    assert result.scale == "logit"
    assert sorted(result.indices) == list(range(len(DOCS)))
    assert result.scores == pytest.approx(sorted(local.score("protein folding", DOCS))[::-1])
    assert chain.score_many([("q", DOCS), ("q2", [])]) == [local.score("q", DOCS), []]


async def test_a_fallbacks_own_fallback_answers_async(local: Reranker) -> None:
    chain = _unreachable(fallback=_unreachable(fallback=_unreachable(fallback=local)))
    result = await chain.arank("protein folding", DOCS, top_k=2)
    assert result.backend == "cross-encoder"
    assert len(result) == 2
    assert await chain.ascore("q", DOCS) == local.score("q", DOCS)


def test_an_unreachable_chain_raises_the_last_error() -> None:
    chain = _unreachable(fallback=_unreachable())
    with pytest.raises(RemoteConnectionError):
        chain.rank("q", DOCS)


def test_a_threshold_belongs_to_the_scale_of_the_reranker_that_answers(
    tiny_bert_dir: Path,
) -> None:
    own = Reranker(str(tiny_bert_dir), backend="cross-encoder", score_threshold=1e9)
    # The primary's threshold (a probability) is not applied to the fallback's logits:
    # the fallback's own threshold is, and it drops everything.
    chain = _unreachable(fallback=own, normalize=True, score_threshold=0.5)
    assert len(chain.rank("q", DOCS)) == 0
    assert len(chain.rank("q", DOCS, score_threshold=-1e9)) == 0
    # A fallback without a threshold of its own keeps every document.
    plain = Reranker(str(tiny_bert_dir), backend="cross-encoder")
    chain = _unreachable(fallback=plain, normalize=True, score_threshold=0.99)
    assert len(chain.rank("q", DOCS)) == len(DOCS)
    # On the same scale (both probabilities), the requested threshold carries over.
    same = Reranker(str(tiny_bert_dir), backend="cross-encoder", normalize=True)
    scores = same.score("q", DOCS)
    cut = sorted(scores)[1]
    kept = Reranker.from_backend(_probability_backend(), fallback=same).rank(
        "q", DOCS, score_threshold=cut
    )
    assert kept.backend == "cross-encoder"
    assert sorted(kept.indices) == sorted(i for i, s in enumerate(scores) if s >= cut)
    assert len(kept) == len(DOCS) - 1


class _Unavailable(Backend):
    """A backend on the probability scale whose service is always down."""

    name: ClassVar[str] = "down"
    scale = "probability"

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        raise RemoteConnectionError("down on purpose")


def _probability_backend() -> Backend:
    return _Unavailable(RerankerConfig(model="down"))


class ByLength(Backend):
    """A listwise stand-in: orders texts longest first; records the top_k hint it got."""

    name: ClassVar[str] = "by-length"
    scale = "rank"
    hints: ClassVar[list[int | None]] = []

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(
        self, requests: Sequence[tuple[str, Sequence[str]]], *, top_k: int | None = None
    ) -> list[Scores]:
        self.hints.append(top_k)
        results = []
        for _, texts in requests:
            order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
            values = [0.0] * len(texts)
            for position, index in enumerate(order):
                values[index] = float(len(texts) - position)
            results.append(Scores(values=values))
        return results


def test_listwise_results_are_orders_and_refuse_thresholds() -> None:
    rr = Reranker.from_backend(ByLength(RerankerConfig(model="by-length")))
    result = rr.rank("q", DOCS, top_k=2)
    assert result.scale == "rank"
    assert result.indices == [0, 1]
    assert result.scores == [4.0, 3.0]
    assert ByLength.hints[-1] == 2, "the top_k hint did not reach the backend"
    rr.score("q", DOCS)
    assert ByLength.hints[-1] is None
    with pytest.raises(InvalidInputError, match="listwise"):
        rr.rank("q", DOCS, score_threshold=0.5)
    with pytest.raises(ConfigurationError, match="listwise"):
        Reranker.from_backend(ByLength(RerankerConfig(model="x", score_threshold=1.0)))


async def test_listwise_async_path_gets_the_hint() -> None:
    rr = Reranker.from_backend(ByLength(RerankerConfig(model="by-length")))
    result = await rr.arank("q", DOCS, top_k=3)
    assert result.indices == [0, 1, 3]
    assert ByLength.hints[-1] == 3


def test_async_local_scoring_uses_the_backends_own_worker(local: Reranker) -> None:
    import asyncio
    import threading

    seen: list[str] = []
    original = local.backend.score_many

    def spy(requests: object, *, top_k: int | None = None) -> list[Scores]:
        seen.append(threading.current_thread().name)
        return original(requests, top_k=top_k)  # type: ignore[arg-type]

    local.backend.score_many = spy  # type: ignore[method-assign]
    asyncio.run(local.arank("q", DOCS))
    assert seen
    assert seen[0].startswith("rerankit-cross-encoder")
