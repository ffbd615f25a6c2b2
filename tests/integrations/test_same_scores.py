"""One config, three frameworks, the core: the same scores for the same inputs."""

from __future__ import annotations

from pathlib import Path

from haystack import Document as HaystackDocument
from langchain_core.documents import Document as LangChainDocument
from llama_index.core.schema import NodeWithScore, TextNode

from rerankit import Reranker, RerankerConfig
from rerankit.integrations.haystack import RerankitRanker
from rerankit.integrations.langchain import RerankitCompressor
from rerankit.integrations.llama_index import RerankitPostprocessor
from tests.integrations.conftest import QUERY


def test_same_scores_through_every_adapter(tiny_bert_dir: Path, passages: list[str]) -> None:
    config = RerankerConfig(model=str(tiny_bert_dir), backend="cross-encoder", device="cpu")
    n = len(passages)
    core = Reranker.from_config(config).rank(QUERY, passages)

    langchain = RerankitCompressor(config=config.to_dict(), top_n=n).compress_documents(
        [LangChainDocument(page_content=t, metadata={"i": i}) for i, t in enumerate(passages)],
        QUERY,
    )
    llama = RerankitPostprocessor(config=config.to_dict(), top_n=n).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t, metadata={})) for t in passages], query_str=QUERY
    )
    haystack = RerankitRanker(config=config.to_dict(), top_k=n).run(
        query=QUERY,
        documents=[HaystackDocument(content=t, meta={"i": i}) for i, t in enumerate(passages)],
    )["documents"]

    assert [d.metadata["i"] for d in langchain] == core.indices
    assert [d.meta["i"] for d in haystack] == core.indices
    assert [d.metadata["relevance_score"] for d in langchain] == core.scores
    assert [nws.score for nws in llama] == core.scores
    assert [d.score for d in haystack] == core.scores
