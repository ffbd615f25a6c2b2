"""Decision numbers for one reranker on one first stage: depth, cut-off, wins and losses, cost.

Each function works on the candidates and scores of one scoring pass over the deepest candidate
list and returns a JSON-safe dict for the report; nothing here calls a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rerankit.eval.metrics import mean, paired_bootstrap_ci, per_query
from rerankit.eval.runner import latency_summary, reranked

# Two per-query values closer than this are a tie (float noise, not a change).
TIE = 1e-9
SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = 30
DEPTH_METRICS = ("nDCG@10", "R@10")
RANK_SCALE = "rank"


@dataclass(frozen=True)
class AnalysisSettings:
    """What the decision numbers are computed for (``rerankit eval``'s flags)."""

    depths: tuple[int, ...] = ()
    tolerance: float = 0.01  # "within 1% of the best nDCG@10", relative
    target_recall: float = 0.9
    cutoff_top_k: int = 10
    qps: float | None = None
    seed: int = 0
    resamples: int = 10_000
    worst: int = 5


def depth_curve(
    candidates: dict[str, list[str]],
    scores: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    depths: tuple[int, ...],
    *,
    top_k: int | None = None,
    measured_ms: dict[int, list[float]] | None = None,
    pairs_per_second: float = 0.0,
    tolerance: float = 0.01,
) -> dict[str, Any]:
    """nDCG@10, R@10 and latency per query at each depth, from one pass over the deepest list.

    At depth ``d`` only the first-stage top ``d`` keep their scores, re-sorted. Latency is
    ``measured`` (real calls at each depth, when ``measured_ms`` has them) or ``estimated``
    (pairs per query divided by the pairs per second of the full pass).
    """
    points: list[dict[str, Any]] = []
    ndcg: dict[int, float] = {}
    for depth in depths:
        rankings = {
            q: reranked(ids, scores[q], depth=depth, top_k=top_k) for q, ids in candidates.items()
        }
        values = per_query(rankings, qrels)
        ndcg[depth] = mean(values["nDCG@10"])
        pairs = mean({q: float(min(depth, len(ids))) for q, ids in candidates.items()})
        if measured_ms:
            latency = latency_summary(measured_ms[depth])
        else:
            latency = {"mean": 1000 * pairs / pairs_per_second if pairs_per_second else 0.0}
        points.append(
            {
                "depth": depth,
                "metrics": {m: mean(values[m]) for m in DEPTH_METRICS},
                "pairs_per_query": pairs,
                "latency_ms": latency,
            }
        )
    best = max(ndcg.values(), default=0.0)
    return {
        "latency": "measured" if measured_ms else "estimated",
        "timed_queries": len(next(iter(measured_ms.values()))) if measured_ms else 0,
        "points": points,
        "best_depth": min((d for d in depths if ndcg[d] == best), default=None),
        "tolerance": tolerance,
        "smallest_depth_within_tolerance": min(
            (d for d in depths if ndcg[d] >= (1 - tolerance) * best), default=None
        ),
    }


def cutoff(
    candidates: dict[str, list[str]],
    scores: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    *,
    scale: str | None,
    target_recall: float,
    top_k: int,
) -> dict[str, Any]:
    """The highest score threshold that keeps ``target_recall`` of the judged-relevant documents
    the reranker puts in its top ``top_k`` (pooled over queries), and how many documents it keeps.
    """
    settings = {"scale": scale, "target_recall": target_recall, "top_k": top_k}
    if scale == RANK_SCALE:
        reason = "listwise scores are an order (scale 'rank'), not scores: cut with top_k"
        return {**settings, "applies": False, "reason": reason}
    if scale is None:
        reason = "the score scale is unknown (Ray runs do not report it): run without --ray"
        return {**settings, "applies": False, "reason": reason}
    tops = {q: reranked(ids, scores[q], top_k=top_k) for q, ids in candidates.items()}
    relevant = sorted(
        (scores[q][d] for q, top in tops.items() for d in top if d in qrels.get(q, {})),
        reverse=True,
    )
    if not relevant:
        reason = f"no judged-relevant document in any top {top_k}"
        return {**settings, "applies": False, "reason": reason}
    # round(): 0.9 * 10 is 9.000000000000002 in floating point, which must not need 10.
    needed = max(1, math.ceil(round(target_recall * len(relevant), 9)))
    threshold = relevant[needed - 1]
    kept = {q: [d for d in top if scores[q][d] >= threshold] for q, top in tops.items()}
    judged = {q: len(qrels.get(q, {})) for q in candidates}
    return {
        **settings,
        "applies": True,
        "threshold": threshold,
        "relevant_in_top_k": len(relevant),
        "relevant_kept": sum(1 for s in relevant if s >= threshold),
        "recall_kept": sum(1 for s in relevant if s >= threshold) / len(relevant),
        "documents_in_top_k_per_query": mean({q: float(len(t)) for q, t in tops.items()}),
        "documents_kept_per_query": mean({q: float(len(k)) for q, k in kept.items()}),
        "queries_with_nothing_kept": sum(1 for k in kept.values() if not k),
        "judged_recall_before": mean(_recall(tops, qrels, judged)),
        "judged_recall_after": mean(_recall(kept, qrels, judged)),
    }


def _recall(
    rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]], judged: dict[str, int]
) -> dict[str, float]:
    return {
        q: sum(1 for d in ids if d in qrels.get(q, {})) / judged[q] if judged[q] else 0.0
        for q, ids in rankings.items()
    }


def wins_and_losses(
    baseline: dict[str, float], system: dict[str, float], *, seed: int, resamples: int
) -> dict[str, Any]:
    """Per-query wins / ties / losses of ``system`` over ``baseline`` and a bootstrap 95% CI."""
    shared = [q for q in baseline if q in system]
    differences = [system[q] - baseline[q] for q in shared]
    interval = paired_bootstrap_ci(baseline, system, seed=seed, resamples=resamples)
    return {
        "queries": len(shared),
        "wins": sum(1 for d in differences if d > TIE),
        "ties": sum(1 for d in differences if abs(d) <= TIE),
        "losses": sum(1 for d in differences if d < -TIE),
        "mean_difference": sum(differences) / len(differences) if differences else 0.0,
        "ci95": None if interval is None else list(interval),
        "bootstrap": {"method": "percentile", "resamples": resamples, "seed": seed},
    }


def worst_queries(
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    first_stage: dict[str, list[str]],
    system: dict[str, list[str]],
    baseline_values: dict[str, float],
    system_values: dict[str, float],
    *,
    count: int,
) -> list[dict[str, Any]]:
    """The ``count`` queries whose nDCG@10 reranking lowered most, with where the first
    relevant document was before and after (rank from 1; None: not in the list).
    """
    hurt = sorted(
        (system_values[q] - baseline_values[q], q)
        for q in baseline_values
        if q in system_values and system_values[q] - baseline_values[q] < -TIE
    )
    return [
        {
            "query_id": q,
            "query": queries[q],
            "difference": difference,
            "nDCG@10": {"first_stage": baseline_values[q], "reranked": system_values[q]},
            "first_relevant_rank": {
                "first_stage": _first_relevant(first_stage.get(q, []), qrels.get(q, {})),
                "reranked": _first_relevant(system.get(q, []), qrels.get(q, {})),
            },
        }
        for difference, q in hurt[:count]
    ]


def _first_relevant(ranking: list[str], judged: dict[str, int]) -> int | None:
    return next((rank for rank, d in enumerate(ranking, 1) if judged.get(d, 0) > 0), None)


def traffic(
    *,
    qps: float,
    remote: bool,
    pairs_per_query: float,
    pairs_per_second: float,
    usage_per_query: dict[str, float],
    processes: int = 1,
    device: str | None = None,
) -> dict[str, Any]:
    """What serving ``qps`` queries per second takes at the evaluated depth.

    Local backends: the processes like the measured one (its device, its threads) needed, at the
    measured pairs per second per process and full utilisation. API backends: tokens, requests
    and cost per day (``qps`` around the clock) and per 30-day month.
    """
    if remote:
        per_day = qps * SECONDS_PER_DAY
        tokens = usage_per_query.get("total_tokens")
        cost = usage_per_query.get("cost")
        requests = usage_per_query.get("requests")
        return {
            "kind": "api",
            "qps": qps,
            "tokens_per_query": tokens,
            "tokens_per_day": None if tokens is None else tokens * per_day,
            "requests_per_second": None if requests is None else requests * qps,
            "cost_per_query": cost,
            "cost_per_day": None if cost is None else cost * per_day,
            "cost_per_month": None if cost is None else cost * per_day * DAYS_PER_MONTH,
        }
    per_process = pairs_per_second / processes / pairs_per_query if pairs_per_query else 0.0
    return {
        "kind": "local",
        "qps": qps,
        "device": device,
        "pairs_per_query": pairs_per_query,
        "pairs_per_second_per_process": pairs_per_second / processes,
        "queries_per_second_per_process": per_process,
        # round(): a float quotient a hair above a whole number must not add a process.
        "processes": math.ceil(round(qps / per_process, 9)) if per_process else None,
    }
