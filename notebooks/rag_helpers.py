"""Shared by the notebooks: the real retrieval set, first stage and metric of ``rerankit eval``.

Nothing is re-implemented here: loading, BM25 and nDCG@10 are ``rerankit.eval``'s, so a
notebook's numbers follow the same rules as the evaluation reports.
"""

from __future__ import annotations

import os
from pathlib import Path

from rerankit.eval.data import RetrievalSet, load_beir
from rerankit.eval.first_stage import BM25
from rerankit.eval.metrics import per_query

__all__ = ["BM25", "DATA", "RetrievalSet", "load_set", "ndcg10", "reranker_model"]

DATA = Path(
    os.environ.get("RERANKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def reranker_model() -> str:
    """The reranker the notebooks use: $RERANKIT_MODEL, else a real BGE reranker from the hub."""
    return os.environ.get("RERANKIT_MODEL", "BAAI/bge-reranker-base")


def load_set(name: str, max_queries: int) -> RetrievalSet:
    """The BEIR folder ``name`` under :data:`DATA`, its first ``max_queries`` judged queries."""
    return load_beir(DATA / name, max_queries=max_queries)


def ndcg10(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Per-query nDCG@10 of ranked doc-id lists, as ``rerankit eval`` reports it."""
    return per_query(rankings, qrels)["nDCG@10"]
