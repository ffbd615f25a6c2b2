from __future__ import annotations

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import ValidationError

from rerankit import Reranker, RerankerConfig
from rerankit.integrations.langchain import RerankitCompressor
from tests.integrations.conftest import QUERY


def _docs(passages: list[str]) -> list[Document]:
    return [
        Document(page_content=t, metadata={"n": i, "tags": ["x"]}, id=f"d{i}")
        for i, t in enumerate(passages)
    ]


def test_returns_new_sorted_documents_with_scores(reranker: Reranker, passages: list[str]) -> None:
    docs = _docs(passages)
    out = RerankitCompressor(reranker=reranker, top_n=4).compress_documents(docs, QUERY)
    expected = reranker.rank(QUERY, passages, top_k=4)
    assert [d.metadata["n"] for d in out] == expected.indices
    assert [d.metadata["relevance_score"] for d in out] == expected.scores
    for doc in out:
        source = docs[doc.metadata["n"]]
        assert doc is not source
        assert doc.id == source.id
        assert doc.page_content == source.page_content
        assert doc.metadata["tags"] == ["x"]
    assert all("relevance_score" not in d.metadata for d in docs), "caller's metadata changed"


def test_edge_cases(reranker: Reranker, passages: list[str]) -> None:
    compressor = RerankitCompressor(reranker=reranker)
    assert compressor.compress_documents([], QUERY) == []
    (single,) = compressor.compress_documents(_docs(passages[:1]), QUERY)
    assert single.metadata["n"] == 0
    everything = RerankitCompressor(reranker=reranker, top_n=100).compress_documents(
        _docs(passages), QUERY
    )
    assert sorted(d.metadata["n"] for d in everything) == list(range(len(passages)))
    assert len(compressor.compress_documents(_docs(passages), QUERY)) == 3  # LangChain's default


def test_threshold_and_bad_values(reranker: Reranker, passages: list[str]) -> None:
    scores = reranker.score(QUERY, passages)
    cut = sorted(scores)[-2]
    out = RerankitCompressor(reranker=reranker, top_n=10, score_threshold=cut).compress_documents(
        _docs(passages), QUERY
    )
    assert len(out) == sum(s >= cut for s in scores)
    with pytest.raises(ValidationError, match="top_n"):
        RerankitCompressor(reranker=reranker, top_n=0)
    with pytest.raises(ValidationError, match="extra"):
        RerankitCompressor(reranker=reranker, topn=2)  # type: ignore[call-arg]


def test_builds_from_config_dict_and_kwargs(tiny_bert_dir: object, passages: list[str]) -> None:
    cfg = RerankerConfig(model=str(tiny_bert_dir), backend="cross-encoder", device="cpu")
    by_config = RerankitCompressor(config=cfg.to_dict(), top_n=5)
    by_kwargs = RerankitCompressor(model=str(tiny_bert_dir), device="cpu", top_n=5)
    docs = _docs(passages)
    a = by_config.compress_documents(docs, QUERY)
    b = by_kwargs.compress_documents(docs, QUERY)
    assert [d.metadata for d in a] == [d.metadata for d in b]
    keyed = RerankitCompressor(config=cfg, api_key="sk-secret-value", top_n=5)
    assert "sk-secret-value" not in repr(keyed)


async def test_async_matches_sync(reranker: Reranker, passages: list[str]) -> None:
    compressor = RerankitCompressor(reranker=reranker, top_n=5)
    docs = _docs(passages)
    sync = compressor.compress_documents(docs, QUERY)
    result = await compressor.acompress_documents(docs, QUERY)
    assert [d.metadata for d in result] == [d.metadata for d in sync]


def _retriever(passages: list[str]) -> object:
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=32))
    store.add_documents(_docs(passages))
    return store.as_retriever(search_kwargs={"k": 8})


def test_in_contextual_compression_retriever(reranker: Reranker, passages: list[str]) -> None:
    base = _retriever(passages)
    compressor = RerankitCompressor(reranker=reranker, top_n=3)
    pipeline = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    retrieved = base.invoke(QUERY)  # type: ignore[attr-defined]
    got = pipeline.invoke(QUERY)
    expected = reranker.rank(QUERY, [d.page_content for d in retrieved], top_k=3)
    assert [d.page_content for d in got] == [item.text for item in expected]
    assert [d.metadata["relevance_score"] for d in got] == expected.scores


async def test_in_an_lcel_chain(reranker: Reranker, passages: list[str]) -> None:
    compressor = RerankitCompressor(reranker=reranker, top_n=2)
    chain = {"docs": _retriever(passages), "query": RunnablePassthrough()} | RunnableLambda(
        lambda x: compressor.compress_documents(x["docs"], x["query"])
    )
    got = chain.invoke(QUERY)
    assert len(got) == 2
    assert got[0].metadata["relevance_score"] >= got[1].metadata["relevance_score"]
    assert [d.metadata for d in await chain.ainvoke(QUERY)] == [d.metadata for d in got]
