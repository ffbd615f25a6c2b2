"""The listwise backend through the three framework adapters, on a chat server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from haystack import Document as HaystackDocument
from haystack import Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document as LangChainDocument
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode

from rerankit import InvalidInputError, Reranker, RerankerConfig
from rerankit.integrations.haystack import RerankitRanker
from rerankit.integrations.langchain import RerankitCompressor
from rerankit.integrations.llama_index import RerankitPostprocessor
from tests.backends.chat_server import ChatServer, running_chat_server

QUERY = "which proteins repair DNA?"
# The server orders passages by the number after "score": a known right answer.
PASSAGES = [f"proteins that repair DNA, passage {i}, score {(i * 7) % 12}" for i in range(12)]
RIGHT = sorted(range(12), key=lambda i: -((i * 7) % 12))


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    with running_chat_server(max_seconds=600) as srv:
        yield srv


@pytest.fixture(scope="module")
def config(server: ChatServer) -> RerankerConfig:
    return RerankerConfig(
        model="rank-zephyr-on-vllm", backend="listwise", options={"base_url": server.url}
    )


def test_the_same_order_and_rank_values_through_every_adapter(config: RerankerConfig) -> None:
    core = Reranker.from_config(config).rank(QUERY, PASSAGES, top_k=4)
    assert core.indices == RIGHT[:4]
    assert core.scores == [12.0, 11.0, 10.0, 9.0]  # rank-derived: len(documents) down

    langchain = RerankitCompressor(config=config.to_dict(), top_n=4).compress_documents(
        [LangChainDocument(page_content=t, metadata={"i": i}) for i, t in enumerate(PASSAGES)],
        QUERY,
    )
    llama = RerankitPostprocessor(config=config, top_n=4).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t, metadata={"i": i})) for i, t in enumerate(PASSAGES)],
        query_str=QUERY,
    )
    haystack = RerankitRanker(config=config, top_k=4).run(
        query=QUERY,
        documents=[HaystackDocument(content=t, meta={"i": i}) for i, t in enumerate(PASSAGES)],
    )["documents"]

    assert [d.metadata["i"] for d in langchain] == core.indices
    assert [n.node.metadata["i"] for n in llama] == core.indices
    assert [d.meta["i"] for d in haystack] == core.indices
    assert [d.metadata["relevance_score"] for d in langchain] == core.scores
    assert [n.score for n in llama] == core.scores
    assert [d.score for d in haystack] == core.scores
    assert {d.metadata["rerank_score_scale"] for d in langchain} == {"rank"}
    assert {n.node.metadata["rerank_score_scale"] for n in llama} == {"rank"}
    assert {d.meta["rerank_score_scale"] for d in haystack} == {"rank"}


def test_a_threshold_is_refused_by_every_adapter(config: RerankerConfig) -> None:
    docs = [LangChainDocument(page_content=t) for t in PASSAGES]
    with pytest.raises(InvalidInputError, match="cut with top_k instead"):
        RerankitCompressor(config=config, score_threshold=5.0).compress_documents(docs, QUERY)
    with pytest.raises(InvalidInputError, match="cut with top_k instead"):
        RerankitPostprocessor(config=config, score_threshold=5.0).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in PASSAGES], query_str=QUERY
        )
    with pytest.raises(InvalidInputError, match="cut with top_k instead"):
        RerankitRanker(config=config).run(
            query=QUERY,
            documents=[HaystackDocument(content=t) for t in PASSAGES],
            score_threshold=5.0,
        )


def test_in_a_contextual_compression_retriever(config: RerankerConfig) -> None:
    store = InMemoryVectorStore(embedding=DeterministicFakeEmbedding(size=32))
    store.add_documents([LangChainDocument(page_content=t) for t in PASSAGES])
    base = store.as_retriever(search_kwargs={"k": 8})
    compressor = RerankitCompressor(config=config, top_n=3)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    retrieved = [d.page_content for d in base.invoke(QUERY)]
    got = retriever.invoke(QUERY)
    want = sorted(retrieved, key=lambda t: -int(t.rsplit(" ", 1)[1]))[:3]
    assert [d.page_content for d in got] == want


async def test_in_a_llama_index_query_engine(config: RerankerConfig) -> None:
    index = VectorStoreIndex(
        [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(PASSAGES)],
        embed_model=MockEmbedding(embed_dim=8),
    )
    pp = RerankitPostprocessor(config=config, top_n=3)
    engine = index.as_query_engine(similarity_top_k=12, node_postprocessors=[pp], llm=MockLLM())
    response = await engine.aquery(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [f"n{i}" for i in RIGHT[:3]]


def test_in_a_haystack_bm25_pipeline_and_from_yaml(config: RerankerConfig) -> None:
    store = InMemoryDocumentStore()
    store.write_documents([HaystackDocument(id=f"d{i}", content=t) for i, t in enumerate(PASSAGES)])
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=12))
    pipe.add_component(
        "ranker",
        RerankitRanker(
            model=config.model, backend="listwise", options=dict(config.options), top_k=3
        ),
    )
    pipe.connect("retriever.documents", "ranker.documents")
    inputs = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}
    direct = pipe.run(inputs)["ranker"]["documents"]
    assert [d.id for d in direct] == [f"d{i}" for i in RIGHT[:3]]
    loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["rerankit.*"])
    from_yaml = loaded.run(inputs)["ranker"]["documents"]
    assert [(d.id, d.score) for d in from_yaml] == [(d.id, d.score) for d in direct]
