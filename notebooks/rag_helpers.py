"""Shared by the notebooks: a small real retrieval set, a BM25 first stage and nDCG@10."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import bm25s
import ir_measures
from ir_measures import nDCG

DATA = Path(
    os.environ.get("RERANKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def reranker_model() -> str:
    """The reranker the notebooks use: $RERANKIT_MODEL, else a real BGE reranker from the hub."""
    return os.environ.get("RERANKIT_MODEL", "BAAI/bge-reranker-base")


@dataclass
class RetrievalSet:
    """Corpus, queries and graded relevance judgements of one BEIR-layout folder."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @classmethod
    def load(cls, name: str, max_queries: int) -> RetrievalSet:
        folder = DATA / name
        corpus = {}
        for line in (folder / "corpus.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            corpus[row["_id"]] = f"{row.get('title', '')}. {row['text']}".strip(". ")
        queries = {}
        for line in (folder / "queries.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
            if len(queries) == max_queries:
                break
        qrels: dict[str, dict[str, int]] = {}
        for line in list((folder / "qrels.tsv").open(encoding="utf-8"))[1:]:
            query_id, doc_id, grade = line.rstrip("\n").split("\t")
            if query_id in queries:
                qrels.setdefault(query_id, {})[doc_id] = int(grade)
        return cls(corpus, queries, qrels)


class BM25:
    """A bm25s index over a corpus; ``search`` returns (doc_id, score) pairs, best first."""

    def __init__(self, corpus: dict[str, str]) -> None:
        self.ids = list(corpus)
        self.index = bm25s.BM25()
        self.index.index(
            bm25s.tokenize(list(corpus.values()), show_progress=False), show_progress=False
        )

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        tokens = bm25s.tokenize([query], show_progress=False)
        hits, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        return [(self.ids[int(i)], float(s)) for i, s in zip(hits[0], scores[0], strict=True)]


def ndcg10(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Per-query nDCG@10 of ranked doc-id lists, computed by ir-measures."""
    judged = [ir_measures.Qrel(q, d, g) for q, docs in qrels.items() for d, g in docs.items()]
    run = [
        ir_measures.ScoredDoc(q, d, float(len(ids) - rank))
        for q, ids in rankings.items()
        for rank, d in enumerate(ids)
    ]
    scores = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], judged, run)}
    return {q: scores.get(q, 0.0) for q in rankings}
