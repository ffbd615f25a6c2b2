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


def test_every_adapter_says_what_its_scores_are(tiny_bert_dir: Path, passages: list[str]) -> None:
    from llama_index.core.schema import MetadataMode

    for normalize, scale in ((False, "logit"), (True, "probability")):
        config = RerankerConfig(
            model=str(tiny_bert_dir), backend="cross-encoder", normalize=normalize
        )
        langchain = RerankitCompressor(config=config.to_dict(), top_n=2).compress_documents(
            [LangChainDocument(page_content=t) for t in passages], QUERY
        )
        llama = RerankitPostprocessor(config=config.to_dict(), top_n=2).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in passages], query_str=QUERY
        )
        haystack = RerankitRanker(config=config.to_dict(), top_k=2).run(
            query=QUERY, documents=[HaystackDocument(content=t) for t in passages]
        )["documents"]
        assert {d.metadata["rerank_score_scale"] for d in langchain} == {scale}
        assert {n.node.metadata["rerank_score_scale"] for n in llama} == {scale}
        assert {d.meta["rerank_score_scale"] for d in haystack} == {scale}
        # The scale is for the caller, not text that reaches the LLM or the embedder.
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            assert "rerank_score_scale" not in llama[0].node.get_content(metadata_mode=mode)
        if normalize:
            assert all(0.0 <= d.score <= 1.0 for d in haystack)
