"""Run first stages and rerankers over a retrieval set, timing every retrieval and reranking.

First stages read the documents' text (``RetrievalSet.corpus``); rerankers get what
``RetrievalSet.documents`` gives, image documents (``Document(image=...)``) included, so an
image corpus needs a reranker that takes images (:func:`check_rerankers` says so up front).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.eval.data import RetrievalSet
from rerankit.eval.dense import DenseRetriever
from rerankit.eval.first_stage import BM25, Ranking, load_run, reciprocal_rank_fusion
from rerankit.registry import canonical_name, infer_backend, load_backend_class
from rerankit.reranker import Reranker, best_first

FIRST_STAGES = ("bm25", "dense", "hybrid")  # any other name is a run file
BM25_PARAMETERS = {"k1": 0.9, "b": 0.4}


@dataclass
class SystemRun:
    """One system's rankings and costs over every query.

    A first stage has ``first_stage=None`` and says what it is in ``retriever``; a reranker names
    the first stage whose candidates it reranked and keeps each scored candidate's ``scores``.
    """

    name: str
    config: dict[str, Any] | None
    rankings: dict[str, list[str]]
    latencies_ms: list[float] = field(default_factory=list)
    pairs: int = 0
    usage: dict[str, float] = field(default_factory=dict)
    backend: str | None = None
    first_stage: str | None = None
    retriever: dict[str, Any] | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: str | None = None
    remote: bool = False
    device: str | None = None
    processes: int = 1  # model copies that produced the timings (Ray actors)
    # Latencies of real calls at each candidate depth, on a subsample (empty: not measured).
    depth_latencies_ms: dict[int, list[float]] = field(default_factory=dict)

    @property
    def latency(self) -> dict[str, float]:
        """p50 / p95 / mean per-query latency in milliseconds."""
        return latency_summary(self.latencies_ms)

    @property
    def pairs_per_second(self) -> float:
        total = sum(self.latencies_ms) / 1000
        return self.pairs / total if total > 0 else 0.0


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    """p50 / p95 / mean of latencies in milliseconds (zeros when there are none)."""
    values = sorted(latencies_ms)
    if not values:
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0}
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {"p50": statistics.median(values), "p95": p95, "mean": statistics.fmean(values)}


@dataclass(frozen=True)
class DenseSettings:
    """The dense retriever of the ``dense`` and ``hybrid`` first stages."""

    model: str
    query_prefix: str | None = None
    passage_prefix: str | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class FusionSettings:
    """Reciprocal-rank fusion of BM25 and dense for the ``hybrid`` first stage."""

    k: float = 60
    weights: tuple[float, float] = (1.0, 1.0)  # BM25, dense


def first_stage_runs(
    data: RetrievalSet,
    stages: list[str],
    *,
    candidates: int,
    dense: DenseSettings | None = None,
    fusion: FusionSettings = FusionSettings(),
    progress: bool = False,
) -> list[SystemRun]:
    """One run per first stage: ``bm25``, ``dense``, ``hybrid`` or a run file's path.

    BM25 and the dense index are built once and shared by the stages that use them; a hybrid
    query's latency is BM25's plus dense's plus the fusion (run one after the other).
    """
    retrievers = _Retrievers(data, dense, progress)
    return [
        _retrieve(data, *retrievers.stage(stage, candidates, fusion), candidates=candidates)
        for stage in stages
    ]


def first_stage_run(
    data: RetrievalSet, *, candidates: int
) -> tuple[SystemRun, dict[str, list[str]]]:
    """BM25 over the corpus, keeping ``candidates`` documents per query, and its rankings."""
    result = first_stage_runs(data, ["bm25"], candidates=candidates)[0]
    return result, result.rankings


def _retrieve(
    data: RetrievalSet,
    name: str,
    search: Callable[[str, str], Ranking],
    retriever: dict[str, Any],
    *,
    candidates: int,
) -> SystemRun:
    """Time ``search`` on every query; keep its first ``candidates`` corpus documents."""
    result = SystemRun(name=name, config=None, rankings={}, retriever=retriever)
    for qid, query in data.queries.items():
        started = time.perf_counter()
        ranking = search(qid, query)
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        known = dict.fromkeys(d for d, _ in ranking if d in data.corpus)  # runs may repeat ids
        result.rankings[qid] = list(known)[:candidates]
    return result


class _Retrievers:
    """BM25 and the dense index, each built on first use and shared between first stages."""

    def __init__(self, data: RetrievalSet, dense: DenseSettings | None, progress: bool) -> None:
        self.data = data
        self.dense_settings = dense
        self.progress = progress
        self._bm25: BM25 | None = None
        self._dense: DenseRetriever | None = None

    def bm25(self) -> BM25:
        if self._bm25 is None:
            self._bm25 = BM25(self.data.corpus, **BM25_PARAMETERS)
        return self._bm25

    def dense(self) -> DenseRetriever:
        if self._dense is None:
            settings = self.dense_settings
            if settings is None:
                raise ConfigurationError(
                    "the dense and hybrid first stages need a sentence-transformers model: pass "
                    "dense=DenseSettings(model=...) (--dense-model on the command line)"
                )
            self._dense = DenseRetriever(
                self.data.corpus,
                settings.model,
                query_prefix=settings.query_prefix,
                passage_prefix=settings.passage_prefix,
                cache_dir=settings.cache_dir,
                progress=self.progress,
            )
        return self._dense

    def stage(
        self, stage: str, k: int, fusion: FusionSettings
    ) -> tuple[str, Callable[[str, str], Ranking], dict[str, Any]]:
        """The row name, a search function (query id, text) and what the retriever is."""
        if stage == "bm25":
            bm25 = self.bm25()
            return (
                "BM25",
                lambda qid, query: bm25.search(query, k),
                {"kind": "bm25", **BM25_PARAMETERS},
            )
        if stage == "dense":
            dense = self.dense()
            return (
                "dense",
                lambda qid, query: dense.search(query, k),
                {"kind": "dense", **dense.describe()},
            )
        if stage == "hybrid":
            bm25, dense = self.bm25(), self.dense()
            weights = list(fusion.weights)

            def fused(qid: str, query: str) -> Ranking:
                lists = [bm25.search(query, k), dense.search(query, k)]
                return reciprocal_rank_fusion(lists, k=fusion.k, weights=weights)

            retriever = {
                "kind": "hybrid",
                "fusion": "reciprocal rank",
                "k": fusion.k,
                "weights": {"BM25": fusion.weights[0], "dense": fusion.weights[1]},
                "dense_model": dense.name,
            }
            return "hybrid", fused, retriever
        run = load_run(stage)
        return (
            Path(stage).name,
            lambda qid, query: run.get(qid, []),
            {"kind": "run file", "path": stage},
        )


def rerank_run(
    data: RetrievalSet,
    name: str,
    config: RerankerConfig,
    candidates: dict[str, list[str]],
    *,
    first_stage: str = "BM25",
    progress: bool = False,
) -> SystemRun:
    """Rerank every query's candidates with one configuration; the model loads before timing.

    Every candidate is scored and kept in ``scores`` (a configured ``score_threshold`` still
    drops documents); the configured ``top_k`` cuts ``rankings`` afterwards, so shallower
    candidate depths can be derived from the same pass.
    """
    from tqdm.auto import tqdm

    reranker = Reranker.from_config(config)
    result = SystemRun(
        name=name,
        config=config.to_dict(),
        rankings={},
        backend=reranker.backend_name,
        first_stage=first_stage,
        scale=reranker.backend.scale,
        remote=reranker.backend.remote,
        device=_device(reranker),
    )
    queries = list(data.queries.items())
    try:
        if queries:  # warm-up, untimed: lazy initialisation and first-call costs
            qid, query = queries[0]
            reranker.score(query, data.documents(candidates[qid][:2]) or [""])
        for qid, query in tqdm(queries, desc=name, disable=not progress, leave=False):
            ids = candidates[qid]
            documents = data.documents(ids)  # image documents are read when they are scored
            started = time.perf_counter()
            ranked = reranker.rank(query, documents, top_k=len(ids) or None)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.pairs += len(ids)
            result.scores[qid] = {ids[item.index]: item.score for item in ranked}
            result.rankings[qid] = [ids[item.index] for item in ranked][: config.top_k]
            for key, value in ranked.usage.items():
                result.usage[key] = result.usage.get(key, 0.0) + value
    finally:
        reranker.close()
    return result


def time_depths(
    data: RetrievalSet,
    config: RerankerConfig,
    candidates: dict[str, list[str]],
    depths: list[int],
    *,
    queries: int,
) -> dict[int, list[float]]:
    """Latency of real calls on the first ``queries`` queries at each candidate depth.

    Each depth gets a fresh reranker (loaded and warmed up untimed), so no document embedding
    cached at one depth makes another look faster.
    """
    sample = list(data.queries.items())[:queries]
    latencies: dict[int, list[float]] = {}
    for depth in depths:
        with Reranker.from_config(config) as reranker:
            if sample:
                reranker.score(sample[0][1], ["an untimed warm-up passage"])
            latencies[depth] = []
            for qid, query in sample:
                documents = data.documents(candidates[qid][:depth])
                started = time.perf_counter()
                reranker.rank(query, documents, top_k=len(documents) or None)
                latencies[depth].append((time.perf_counter() - started) * 1000)
    return latencies


def rerank_run_on_ray(
    data: RetrievalSet,
    name: str,
    config: RerankerConfig,
    candidates: dict[str, list[str]],
    *,
    first_stage: str = "BM25",
    actors: int = 2,
) -> SystemRun:
    """Rerank every query with Ray Data actors; latencies are the amortised time per query.

    Ray Data rows carry texts: a corpus with image documents is refused.
    """
    check_rerankers(data, {}, ray=True)
    import ray

    from rerankit.ray import rerank_dataset

    rows = [
        {"qid": qid, "query": query, "candidates": [data.corpus[d] for d in candidates[qid]]}
        for qid, query in data.queries.items()
    ]
    started = time.perf_counter()
    out = rerank_dataset(ray.data.from_items(rows), config, concurrency=actors).take_all()
    per_query = (time.perf_counter() - started) * 1000 / max(len(rows), 1)
    result = SystemRun(
        name=name,
        config=config.to_dict(),
        rankings={},
        backend="ray",
        first_stage=first_stage,
        processes=actors,
    )
    for row in out:
        ids = candidates[row["qid"]]
        result.rankings[row["qid"]] = [ids[int(i)] for i in row["ranking"]]
        result.scores[row["qid"]] = {d: float(s) for d, s in zip(ids, row["scores"], strict=True)}
        result.latencies_ms.append(per_query)
        result.pairs += len(ids)
    return result


def check_rerankers(
    data: RetrievalSet, configs: dict[str, RerankerConfig], *, ray: bool = False
) -> None:
    """Refuse, before any work, rerankers of text only for a corpus with image documents.

    Only the backend class is looked up (no model loads); a remote backend whose service cannot
    take images (a text-only dialect) says so on its untimed warm-up call. Reranking on Ray
    Data (``ray``) passes texts only, so it is refused for such a corpus too.
    """
    if not data.images:
        return
    if ray:
        raise ConfigurationError(
            f"{data.name} has {len(data.images)} image documents and reranking on Ray Data "
            "passes texts only; run without --ray to rank the images"
        )
    for name, config in configs.items():
        backend = infer_backend(config.model) if config.backend is None else config.backend
        backend_class = load_backend_class(canonical_name(backend))
        if not backend_class.accepts_images:
            raise ConfigurationError(
                f"{data.name} has {len(data.images)} image documents and reranker {name!r} "
                f"(backend {backend_class.name!r}) ranks text only; use a backend that takes "
                "images (backend=vlm, or backend=jina with jina-reranker-m0), or drop the "
                "corpus's image fields to rerank the text alone"
            )


def reranked(
    candidates: list[str],
    scores: dict[str, float],
    *,
    depth: int | None = None,
    top_k: int | None = None,
) -> list[str]:
    """The reranked list had only the first ``depth`` candidates been scored.

    Sorted by score, ties in first-stage order, as :meth:`Reranker.rank` sorts; candidates
    without a score (below a configured threshold) are left out.
    """
    pool = [d for d in candidates[:depth] if d in scores]
    return [pool[i] for i in best_first([scores[d] for d in pool])][:top_k]


def _device(reranker: Reranker) -> str | None:
    """Where a local model runs (``cpu``, ``cuda:0``), for the capacity projection."""
    device = getattr(reranker.backend, "device", None)
    return None if device is None else str(device)
