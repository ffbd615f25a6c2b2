"""Ranking invariants of Reranker, on the real cross-encoder backend with a tiny model."""

from __future__ import annotations

import asyncio
import copy
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerankit import Document, InvalidInputError, RankResult, Reranker


@pytest.fixture(scope="module")
def reranker(tiny_bert_dir: Path) -> Reranker:
    return Reranker(str(tiny_bert_dir), backend="cross-encoder", batch_size=4)


def _check_invariants(result: RankResult, docs: list[str | Document], scores: list[float]) -> None:
    indices = result.indices
    assert len(set(indices)) == len(indices), "a document came back twice"
    for item in result:
        assert item.document is docs[item.index]
        assert type(item.score) is float
        assert item.score == scores[item.index]
    keys = [(-item.score, item.index) for item in result]
    assert keys == sorted(keys), "not sorted by score with ties in input order"


texts = st.text(max_size=60)
documents = st.lists(
    st.one_of(
        texts,
        st.builds(
            Document, text=texts, metadata=st.dictionaries(st.text(max_size=5), st.integers())
        ),
    ),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=documents,
    top_k=st.none() | st.integers(min_value=1, max_value=15),
    threshold=st.none() | st.floats(min_value=-0.5, max_value=0.5),
)
def test_ranking_invariants(
    reranker: Reranker, docs: list[str | Document], top_k: int | None, threshold: float | None
) -> None:
    before = copy.deepcopy(docs)
    scores = reranker.score("which passage is relevant?", docs)
    result = reranker.rank(
        "which passage is relevant?", docs, top_k=top_k, score_threshold=threshold
    )
    assert docs == before, "inputs were mutated"
    _check_invariants(result, docs, scores)
    kept = [i for i in range(len(docs)) if threshold is None or scores[i] >= threshold]
    assert len(result) == min(len(kept), top_k if top_k is not None else len(kept))
    if top_k is None:
        assert sorted(result.indices) == kept, "a document was lost"


def test_scores_are_in_input_order(reranker: Reranker, scifact_texts: list[str]) -> None:
    docs = scifact_texts[:20]
    together = reranker.score("protein folding", docs)
    one_by_one = [reranker.score("protein folding", [d])[0] for d in docs]
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(together, one_by_one, strict=True))


def test_duplicates_and_ties_keep_input_order(reranker: Reranker) -> None:
    docs = ["same text", "other", "same text", "same text"]
    result = reranker.rank("q", docs)
    same = [item.index for item in result if item.document == "same text"]
    assert same == [0, 2, 3]
    assert sorted(result.indices) == [0, 1, 2, 3]


def test_empty_and_single_inputs(reranker: Reranker) -> None:
    assert len(reranker.rank("q", [])) == 0
    assert reranker.score("q", []) == []
    single = reranker.rank("", [""])
    assert single.indices == [0]
    assert isinstance(single[0].score, float)


def test_metadata_and_identity_survive(reranker: Reranker) -> None:
    meta = {"source": "wiki", "nested": {"k": [1, 2]}}
    doc = Document(text="doc b", id="b", metadata=meta)
    result = reranker.rank("query", ["doc a", doc], top_k=5)
    (item,) = [r for r in result if r.index == 1]
    assert item.document is doc
    assert item.document.metadata is meta
    assert meta == {"source": "wiki", "nested": {"k": [1, 2]}}


def test_threshold_zero_filters_and_top_k_cuts(reranker: Reranker) -> None:
    docs = [f"passage number {i}" for i in range(10)]
    scores = reranker.score("q", docs)
    threshold = sorted(scores)[5]
    result = reranker.rank("q", docs, score_threshold=threshold)
    assert all(s >= threshold for s in result.scores)
    assert len(result) == sum(s >= threshold for s in scores)
    assert len(reranker.rank("q", docs, top_k=3)) == 3
    zero = reranker.rank("q", docs, score_threshold=0.0)
    assert len(zero) == sum(s >= 0.0 for s in scores)


def test_config_defaults_apply_and_call_arguments_override(tiny_bert_dir: Path) -> None:
    rr = Reranker(str(tiny_bert_dir), top_k=2)
    docs = ["a", "b", "c", "d"]
    assert len(rr.rank("q", docs)) == 2
    assert len(rr.rank("q", docs, top_k=3)) == 3


@pytest.mark.parametrize(
    ("query", "docs", "kwargs", "message"),
    [
        (None, ["a"], {}, "query must be a str"),
        (b"q", ["a"], {}, "query must be a str"),
        ("q", "a single string", {}, "wrap it in a list"),
        ("q", ["a", 3], {}, r"documents\[1\] must be a str or rerankit.Document"),
        ("q", ["a", {"text": "b"}], {}, r"documents\[1\]"),
        ("q", 5, {}, "documents must be a list"),
        ("q", {"a": "text"}, {}, "not a dict \\(only its keys would be ranked\\)"),
        ("q", ["a"], {"top_k": 0}, "top_k must be > 0, but got 0"),
        ("q", ["a"], {"top_k": -2}, "top_k must be > 0"),
        ("q", ["a"], {"top_k": 1.5}, "top_k must be an int"),
        ("q", ["a"], {"score_threshold": float("nan")}, "finite"),
        ("q", ["a"], {"score_threshold": float("-inf")}, "finite"),
    ],
)
def test_bad_input_raises_typed_errors(
    reranker: Reranker, query: object, docs: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        reranker.rank(query, docs, **kwargs)  # type: ignore[arg-type]


async def test_arank_matches_rank_and_does_not_block_the_loop(
    reranker: Reranker, scifact_texts: list[str]
) -> None:
    queries = [f"query {i} about cells" for i in range(6)]
    expected = [reranker.rank(q, scifact_texts, top_k=5) for q in queries]
    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    results = await asyncio.gather(*(reranker.arank(q, scifact_texts, top_k=5) for q in queries))
    elapsed = time.perf_counter() - started
    stop.set()
    await beat
    for got, want in zip(results, expected, strict=True):
        assert got.indices == want.indices
        assert got.scores == pytest.approx(want.scores, abs=1e-6)
    # A blocked loop would tick about once; a free one ticks throughout the scoring.
    assert ticks >= min(10, elapsed / 0.004)
    assert await reranker.ascore(queries[0], scifact_texts[:3]) == pytest.approx(
        reranker.score(queries[0], scifact_texts[:3]), abs=1e-6
    )


def test_rank_many_equals_rank_per_query(reranker: Reranker, scifact_texts: list[str]) -> None:
    docs: list[str | Document] = [Document(text=t, id=str(i)) for i, t in enumerate(scifact_texts)]
    requests = [
        ("cells divide", docs[:7]),
        ("an empty request", []),
        ("protein folding", scifact_texts[3:12]),
        ("cells divide", docs[:7]),
    ]
    many = reranker.rank_many(requests, top_k=4)
    assert len(many) == len(requests)
    for (query, request_docs), got in zip(requests, many, strict=True):
        want = reranker.rank(query, request_docs, top_k=4)
        assert got.indices == want.indices
        assert got.scores == pytest.approx(want.scores, abs=1e-5)
        assert [item.document for item in got] == [item.document for item in want]
    scores = reranker.score_many(requests)
    assert [len(s) for s in scores] == [7, 0, 9, 7]
    assert scores[2] == pytest.approx(reranker.score(*requests[2]), abs=1e-5)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ("q", "list of \\(query, documents\\) pairs"),
        ([("q",)], "request 0 must be a \\(query, documents\\) pair"),
        ([("q", ["a"]), (3, ["a"])], "query must be a str"),
        ([("q", "a single doc")], "wrap it in a list"),
    ],
)
def test_rank_many_rejects_malformed_requests(
    reranker: Reranker, requests: object, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        reranker.rank_many(requests)  # type: ignore[arg-type]


def test_invalid_unicode_is_a_typed_error(reranker: Reranker) -> None:
    with pytest.raises(InvalidInputError, match=r"documents\[1\] holds a lone surrogate"):
        reranker.rank("q", ["fine", "bad \ud800 text"])
    with pytest.raises(InvalidInputError, match="query holds a lone surrogate"):
        reranker.score("\udfff", ["fine"])
