"""Hard negatives from the first stage of ``rerankit eval``: BM25 over the corpus, or a run file."""

from __future__ import annotations

import random

from rerankit.eval.first_stage import BM25, Ranking
from rerankit.training.data import TrainingData


def first_stage_candidates(
    data: TrainingData,
    *,
    depth: int,
    run: dict[str, Ranking] | None = None,
    index: BM25 | None = None,
) -> dict[str, list[str]]:
    """Each query's top ``depth`` document ids from BM25 (``index``, built over the corpus when
    not given) or ``run``, best first."""
    if run is not None:
        return {
            q.qid: [d for d, _ in run.get(q.qid, []) if d in data.corpus][:depth]
            for q in data.queries
        }
    index = BM25(data.corpus) if index is None else index
    return {q.qid: [d for d, _ in index.search(q.text, depth)] for q in data.queries}


def first_stage_scores(
    data: TrainingData,
    lists: dict[str, list[str]],
    *,
    run: dict[str, Ranking] | None = None,
    index: BM25 | None = None,
) -> dict[str, list[float]]:
    """The first stage's score of each listed document, per query: BM25 (``index``, built over
    the corpus when not given), or the
    run file's score, where a document the run did not retrieve gets the query's lowest score
    among the run's documents in the corpus (a query the run lacks gets 0 for every document)."""
    if run is not None:
        result: dict[str, list[float]] = {}
        for qid, docs in lists.items():
            scored = {d: s for d, s in run.get(qid, []) if d in data.corpus}
            lowest = min(scored.values(), default=0.0)
            result[qid] = [scored.get(d, lowest) for d in docs]
        return result
    text = {q.qid: q.text for q in data.queries}
    index = BM25(data.corpus) if index is None else index
    return {qid: index.scores(text[qid], docs) for qid, docs in lists.items()}


def sample_negatives(
    data: TrainingData, candidates: dict[str, list[str]], *, count: int, seed: int
) -> dict[str, list[str]]:
    """Up to ``count`` negatives per query: its judged non-relevant documents first, then a seeded
    sample of its first-stage candidates that are not judged relevant, kept in first-stage order.

    Each query has its own generator (seeded by ``seed`` and its id), so adding or removing a
    query never changes another query's negatives.
    """
    negatives: dict[str, list[str]] = {}
    for query in data.queries:
        judged_negative = [d for d, grade in query.judged.items() if grade == 0][:count]
        pool = [
            d
            for d in candidates.get(query.qid, [])
            if d not in query.judged and d not in judged_negative
        ]
        wanted = min(count - len(judged_negative), len(pool))
        picked = set(random.Random(f"{seed}/{query.qid}").sample(pool, wanted))
        negatives[query.qid] = judged_negative + [d for d in pool if d in picked]
    return negatives
