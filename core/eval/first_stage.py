"""First-stage retrieval: BM25 (bm25s) with tokenisation that needs no spaces, or a run file."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.errors import InvalidInputError

# Scripts written without spaces between words: indexed as character unigrams and bigrams.
_UNSPACED = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
)
_TOKEN = re.compile(rf"[{_UNSPACED}]+|[^\W{_UNSPACED}]+", re.UNICODE)
_IS_UNSPACED = re.compile(rf"[{_UNSPACED}]")

Ranking = list[tuple[str, float]]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; runs of unspaced scripts become character uni- and bigrams."""
    tokens: list[str] = []
    for run in _TOKEN.findall(text.lower()):
        if _IS_UNSPACED.match(run):
            tokens.extend(run)
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            tokens.append(run)
    return tokens


class BM25:
    """A ``bm25s`` index over a corpus; ``search`` returns (doc_id, score), best first."""

    def __init__(self, corpus: dict[str, str], *, k1: float = 0.9, b: float = 0.4) -> None:
        self._bm25s: Any = require("bm25s", extra="eval", purpose="the BM25 first stage")
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build
        self.ids = list(corpus)
        self._positions = {doc: i for i, doc in enumerate(self.ids)}
        self.index = self._bm25s.BM25(k1=k1, b=b)
        self.index.index([tokenize(text) for text in corpus.values()], show_progress=False)

    def search(self, query: str, k: int) -> Ranking:
        tokens = tokenize(query) or [""]
        hits, scores = self.index.retrieve(
            [tokens], k=min(k, len(self.ids)), show_progress=False, n_threads=1
        )
        return [
            (self.ids[int(i)], float(s)) for i, s in zip(hits[0], scores[0], strict=True) if s > 0
        ]

    def scores(self, query: str, ids: Sequence[str]) -> list[float]:
        """The BM25 score of each document in ``ids`` for ``query`` (0 where no query term
        occurs, and for a query without terms)."""
        tokens = tokenize(query)
        if not tokens:
            return [0.0] * len(ids)
        values = self.index.get_scores(tokens)
        return [float(values[self._positions[doc]]) for doc in ids]


def load_run(path: str | Path) -> dict[str, Ranking]:
    """A TREC run (``qid Q0 docid rank score tag``) or TSV (``qid docid score``), best first."""
    runs: dict[str, Ranking] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 6:
            qid, docid, score = parts[0], parts[2], parts[4]
        elif len(parts) == 3:
            qid, docid, score = parts
        else:
            continue
        try:
            value = float(score)
        except ValueError:
            continue  # a header line
        runs.setdefault(qid, []).append((docid, value))
    return {q: sorted(r, key=lambda x: -x[1]) for q, r in runs.items()}


def reciprocal_rank_fusion(
    rankings: list[Ranking], *, k: float = 60, weights: list[float] | None = None
) -> Ranking:
    """Fuse rankings by ``sum(weight / (k + rank))`` (ranks from 1), best first.

    Cormack, Clarke and Buettcher (SIGIR 2009) with ``k=60``; ``weights`` (one per ranking, all
    1 when unset) is the weighted variant. Ties keep the order in which documents were first
    seen, ranking by ranking.
    """
    weights = [1.0] * len(rankings) if weights is None else weights
    if len(weights) != len(rankings):
        raise InvalidInputError(f"{len(weights)} weights for {len(rankings)} rankings")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (doc_id, _) in enumerate(ranking, 1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])
