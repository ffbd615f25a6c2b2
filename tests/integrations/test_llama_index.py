from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import Field, ValidationError

from rerankit import Reranker, RerankerConfig
from rerankit.integrations.llama_index import RerankitPostprocessor
from tests.integrations.conftest import QUERY


def _nodes(passages: list[str]) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"n": i}), score=1.0 - i / 100)
        for i, t in enumerate(passages)
    ]


class _Collector(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def test_new_nodes_sorted_with_scores_and_no_mutation(
    reranker: Reranker, passages: list[str]
) -> None:
    nodes = _nodes(passages)
    before = [(n.score, dict(n.node.metadata)) for n in nodes]
    out = RerankitPostprocessor(reranker=reranker, top_n=4).postprocess_nodes(
        nodes, query_str=QUERY
    )
    expected = reranker.rank(
        QUERY, [n.node.get_content(metadata_mode="embed") for n in nodes], top_k=4
    )
    assert [n.node.metadata["n"] for n in out] == expected.indices
    assert [n.score for n in out] == expected.scores
    assert all(o is not n for o in out for n in nodes)
    assert [(n.score, dict(n.node.metadata)) for n in nodes] == before


def test_reads_content_with_embed_metadata(reranker: Reranker) -> None:
    node = TextNode(text="body", metadata={"title": "DNA repair proteins"})
    (out,) = RerankitPostprocessor(reranker=reranker).postprocess_nodes(
        [NodeWithScore(node=node, score=0.5)], query_str=QUERY
    )
    assert out.score == reranker.score(QUERY, [node.get_content(metadata_mode="embed")])[0]
    assert out.score != reranker.score(QUERY, ["body"])[0]


def test_keep_retrieval_score_copies_the_node(reranker: Reranker, passages: list[str]) -> None:
    nodes = _nodes(passages)
    out = RerankitPostprocessor(reranker=reranker, top_n=20, keep_retrieval_score=True)
    for ranked in out.postprocess_nodes(nodes, query_str=QUERY):
        source = nodes[ranked.node.metadata["n"]]
        assert ranked.node.metadata["retrieval_score"] == source.score
        assert "retrieval_score" not in source.node.metadata


def test_edge_cases_and_errors(reranker: Reranker, passages: list[str]) -> None:
    pp = RerankitPostprocessor(reranker=reranker)
    assert pp.postprocess_nodes([], query_str=QUERY) == []
    assert len(pp.postprocess_nodes(_nodes(passages[:1]), query_str=QUERY)) == 1
    everything = RerankitPostprocessor(reranker=reranker, top_n=50).postprocess_nodes(
        _nodes(passages), query_str=QUERY
    )
    assert sorted(n.node.metadata["n"] for n in everything) == list(range(len(passages)))
    with pytest.raises(ValueError, match="Missing query bundle"):
        pp.postprocess_nodes(_nodes(passages))
    with pytest.raises(ValidationError, match="top_n"):
        RerankitPostprocessor(reranker=reranker, top_n=0)
    assert RerankitPostprocessor.class_name() == "RerankitPostprocessor"


def test_events_and_callbacks(reranker: Reranker, passages: list[str]) -> None:
    collector = _Collector()
    get_dispatcher().add_event_handler(collector)
    debug = LlamaDebugHandler()
    pp = RerankitPostprocessor(
        reranker=reranker, top_n=2, callback_manager=CallbackManager([debug])
    )
    try:
        pp.postprocess_nodes(_nodes(passages), QueryBundle(QUERY))
    finally:
        get_dispatcher().event_handlers.remove(collector)
    names = [e.class_name() for e in collector.events]
    assert "ReRankStartEvent" in names
    assert "ReRankEndEvent" in names
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1


async def test_async_matches_sync(reranker: Reranker, passages: list[str]) -> None:
    pp = RerankitPostprocessor(reranker=reranker, top_n=5)
    sync = pp.postprocess_nodes(_nodes(passages), query_str=QUERY)
    result = await pp.apostprocess_nodes(_nodes(passages), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in result] == [(n.node.node_id, n.score) for n in sync]


def test_config_object_dict_and_kwargs(tiny_bert_dir: object, passages: list[str]) -> None:
    cfg = RerankerConfig(model=str(tiny_bert_dir), backend="cross-encoder", device="cpu")
    runs = [
        RerankitPostprocessor(config=cfg, top_n=3),
        RerankitPostprocessor(config=cfg.to_dict(), top_n=3),
        RerankitPostprocessor(model=str(tiny_bert_dir), device="cpu", top_n=3),
    ]
    outputs = [
        [n.score for n in pp.postprocess_nodes(_nodes(passages), query_str=QUERY)] for pp in runs
    ]
    assert outputs[0] == outputs[1] == outputs[2]


def test_in_a_query_engine_and_after_a_retriever(reranker: Reranker, passages: list[str]) -> None:
    index = VectorStoreIndex(
        [TextNode(text=t, id_=f"n{i}", metadata={"n": i}) for i, t in enumerate(passages)],
        embed_model=MockEmbedding(embed_dim=8),
    )
    pp = RerankitPostprocessor(reranker=reranker, top_n=3)
    retrieved = index.as_retriever(similarity_top_k=8).retrieve(QUERY)
    reranked = pp.postprocess_nodes(retrieved, query_str=QUERY)
    expected = reranker.rank(
        QUERY, [n.node.get_content(metadata_mode="embed") for n in retrieved], top_k=3
    )
    assert [n.score for n in reranked] == expected.scores

    engine = index.as_query_engine(similarity_top_k=8, node_postprocessors=[pp], llm=MockLLM())
    response = engine.query(QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in reranked]
