from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import DeserializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import Secret

from rerankit import Reranker, RerankerConfig
from rerankit.integrations.haystack import RerankitRanker
from tests.integrations.conftest import QUERY


def _docs(passages: list[str]) -> list[Document]:
    return [
        Document(id=f"d{i}", content=t, meta={"n": i}, score=0.5) for i, t in enumerate(passages)
    ]


def test_run_returns_replaced_documents(reranker: Reranker, passages: list[str]) -> None:
    docs = _docs(passages)
    ranker = RerankitRanker(reranker=reranker, top_k=4)
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    expected = reranker.rank(QUERY, passages, top_k=4)
    assert [d.meta["n"] for d in out] == expected.indices
    assert [d.score for d in out] == expected.scores
    assert all(type(d.score) is float for d in out)
    assert all(d.score == 0.5 for d in docs), "caller's documents changed"
    assert [d.id for d in out] == [docs[i].id for i in expected.indices]


def test_run_arguments_and_edge_cases(reranker: Reranker, passages: list[str]) -> None:
    ranker = RerankitRanker(reranker=reranker)
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert len(ranker.run(query=QUERY, documents=_docs(passages[:1]))["documents"]) == 1
    everything = ranker.run(query=QUERY, documents=_docs(passages), top_k=100)["documents"]
    assert sorted(d.meta["n"] for d in everything) == list(range(len(passages)))
    assert len(ranker.run(query=QUERY, documents=_docs(passages), top_k=2)["documents"]) == 2
    no_content = Document(id="empty", content=None, meta={"n": -1})
    assert ranker.run(query=QUERY, documents=[no_content])["documents"][0].id == "empty"
    scores = reranker.score(QUERY, passages)
    cut = sorted(scores)[-3]
    kept = ranker.run(query=QUERY, documents=_docs(passages), score_threshold=cut)["documents"]
    assert len(kept) == sum(s >= cut for s in scores)
    with pytest.raises(ValueError, match="top_k must be > 0, but got 0"):
        ranker.run(query=QUERY, documents=_docs(passages), top_k=0)
    with pytest.raises(ValueError, match="top_k must be > 0, but got 0"):
        RerankitRanker(reranker=reranker, top_k=0)


async def test_run_async_matches_run(reranker: Reranker, passages: list[str]) -> None:
    ranker = RerankitRanker(reranker=reranker, top_k=5)
    sync = ranker.run(query=QUERY, documents=_docs(passages))
    result = await ranker.run_async(query=QUERY, documents=_docs(passages))
    assert result == sync


def test_serialisation_round_trip_and_secrets(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RERANKIT_TEST_KEY", "sk-from-env")
    ranker = RerankitRanker(
        model=str(tiny_bert_dir),
        backend="cross-encoder",
        device="cpu",
        batch_size=8,
        max_length=128,
        normalize=True,
        top_k=3,
        score_threshold=0.0,
        api_key=Secret.from_env_var("RERANKIT_TEST_KEY"),
        options={"max_query_length": 32},
    )
    data = ranker.to_dict()
    assert data["init_parameters"]["api_key"]["env_vars"] == ["RERANKIT_TEST_KEY"]
    assert "sk-from-env" not in str(data)
    again = RerankitRanker.from_dict(data)
    assert again.to_dict() == data
    token = RerankitRanker(model=str(tiny_bert_dir), api_key=Secret.from_token("sk-literal"))
    with pytest.raises(ValueError, match="token"):
        token.to_dict()


def test_warm_up_is_idempotent_and_close_releases(tiny_bert_dir: Path) -> None:
    ranker = RerankitRanker(config=RerankerConfig(model=str(tiny_bert_dir), device="cpu"))
    ranker.warm_up()
    first = ranker._reranker
    ranker.warm_up()
    assert ranker._reranker is first
    ranker.close()
    assert ranker._reranker is None
    assert len(ranker.run(query=QUERY, documents=_docs(["a", "b"]))["documents"]) == 2


def _pipeline(passages: list[str], ranker: RerankitRanker) -> Pipeline:
    store = InMemoryDocumentStore()
    store.write_documents(_docs(passages))
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=8))
    pipe.add_component("ranker", ranker)
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def test_in_a_bm25_pipeline_and_from_yaml(tiny_bert_dir: Path, passages: list[str]) -> None:
    ranker = RerankitRanker(model=str(tiny_bert_dir), device="cpu", top_k=3)
    pipe = _pipeline(passages, ranker)
    inputs = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}
    direct = pipe.run(inputs)["ranker"]["documents"]
    assert len(direct) == 3

    yaml_text = pipe.dumps()
    assert "rerankit.integrations.haystack.RerankitRanker" in yaml_text
    with pytest.raises(DeserializationError):
        Pipeline.loads(yaml_text)  # Haystack 3 refuses modules that are not allow-listed
    loaded = Pipeline.loads(yaml_text, allowed_modules=["rerankit.*"])
    from_yaml = loaded.run(inputs)["ranker"]["documents"]
    assert [(d.id, d.score) for d in from_yaml] == [(d.id, d.score) for d in direct]


def test_the_readme_yaml_loads_and_runs(tiny_bert_dir: Path, passages: list[str]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- haystack-yaml -->\n```yaml\n", 1)[1].split("```", 1)[0]
    yaml_text = block.replace("model: BAAI/bge-reranker-base", f"model: {tiny_bert_dir}")
    assert yaml_text != block
    pipe = Pipeline.loads(yaml_text, allowed_modules=["rerankit.*"])
    pipe.get_component("retriever").document_store.write_documents(_docs(passages))
    out = pipe.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY}})
    assert len(out["ranker"]["documents"]) == 5
