"""Run a first stage and rerankers over a retrieval set, timing every reranking call."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from rerankit.config import RerankerConfig
from rerankit.eval.data import RetrievalSet
from rerankit.eval.first_stage import BM25, Ranking
from rerankit.reranker import Reranker


@dataclass
class SystemRun:
    """One system's rankings and costs over every query."""

    name: str
    config: dict[str, Any] | None
    rankings: dict[str, list[str]]
    latencies_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    usage: dict[str, float] = field(default_factory=dict)
    backend: str | None = None

    @property
    def latency(self) -> dict[str, float]:
        """p50 / p95 / mean per-query latency in milliseconds."""
        values = sorted(self.latencies_ms)
        if not values:
            return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        return {"p50": statistics.median(values), "p95": p95, "mean": statistics.fmean(values)}

    @property
    def pairs_per_second(self) -> float:
        total = sum(self.latencies_ms) / 1000
        return self.pairs / total if total > 0 else 0.0


def first_stage_run(
    data: RetrievalSet, *, candidates: int, run: dict[str, Ranking] | None = None
) -> tuple[SystemRun, dict[str, list[str]]]:
    """BM25 over the corpus (or a given run), keeping ``candidates`` documents per query."""
    if run is None:
        retriever = BM25(data.corpus)

        def search(qid: str, query: str) -> Ranking:
            return retriever.search(query, candidates)
    else:

        def search(qid: str, query: str) -> Ranking:
            return run.get(qid, [])

    result = SystemRun(name="BM25" if run is None else "run file", config=None, rankings={})
    for qid, query in data.queries.items():
        started = time.perf_counter()
        ranking = search(qid, query)
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.rankings[qid] = [d for d, _ in ranking if d in data.corpus][:candidates]
    return result, result.rankings


def rerank_run(
    data: RetrievalSet,
    name: str,
    config: RerankerConfig,
    candidates: dict[str, list[str]],
    *,
    progress: bool = False,
) -> SystemRun:
    """Rerank every query's candidates with one configuration; the model loads before timing."""
    from tqdm.auto import tqdm

    reranker = Reranker.from_config(config)
    result = SystemRun(
        name=name, config=config.to_dict(), rankings={}, backend=reranker.backend_name
    )
    queries = list(data.queries.items())
    if queries:  # warm-up, untimed: lazy initialisation and first-call costs
        qid, query = queries[0]
        reranker.score(query, [data.corpus[d] for d in candidates[qid][:2]] or [""])
    try:
        for qid, query in tqdm(queries, desc=name, disable=not progress, leave=False):
            ids = candidates[qid]
            started = time.perf_counter()
            ranked = reranker.rank(query, [data.corpus[d] for d in ids])
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.pairs += len(ids)
            result.rankings[qid] = [ids[item.index] for item in ranked]
            for key, value in ranked.usage.items():
                result.usage[key] = result.usage.get(key, 0.0) + value
    finally:
        reranker.close()
    return result


def rerank_run_on_ray(
    data: RetrievalSet,
    name: str,
    config: RerankerConfig,
    candidates: dict[str, list[str]],
    *,
    actors: int = 2,
) -> SystemRun:
    """Rerank every query with Ray Data actors; latencies are the amortised time per query."""
    import ray

    from rerankit.ray import rerank_dataset

    rows = [
        {"qid": qid, "query": query, "candidates": [data.corpus[d] for d in candidates[qid]]}
        for qid, query in data.queries.items()
    ]
    started = time.perf_counter()
    out = rerank_dataset(ray.data.from_items(rows), config, concurrency=actors).take_all()
    per_query = (time.perf_counter() - started) * 1000 / max(len(rows), 1)
    result = SystemRun(name=name, config=config.to_dict(), rankings={}, backend="ray")
    for row in out:
        ids = candidates[row["qid"]]
        result.rankings[row["qid"]] = [ids[int(i)] for i in row["ranking"]]
        result.latencies_ms.append(per_query)
        result.pairs += len(ids)
    return result
