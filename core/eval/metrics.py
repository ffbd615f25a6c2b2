"""Quality metrics from ``ir-measures`` and paired significance tests from SciPy."""

from __future__ import annotations

import math
from typing import Any

from rerankit._optional import require

METRICS = ("nDCG@10", "RR@10", "R@10", "R@100")


def per_query(
    rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` for every query in ``rankings`` (0 when nothing found)."""
    ir_measures: Any = require("ir_measures", extra="eval", purpose="rerankit eval's metrics")
    measures = [ir_measures.parse_measure(m) for m in METRICS]
    judged = [ir_measures.Qrel(q, d, g) for q, docs in qrels.items() for d, g in docs.items()]
    run = [
        ir_measures.ScoredDoc(q, d, float(len(ids) - rank))
        for q, ids in rankings.items()
        for rank, d in enumerate(ids)
    ]
    values: dict[str, dict[str, float]] = {m: dict.fromkeys(rankings, 0.0) for m in METRICS}
    for metric in ir_measures.iter_calc(measures, judged, run):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    return values


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def paired_t_test(baseline: dict[str, float], system: dict[str, float]) -> float | None:
    """Two-sided p-value of a paired t-test over the shared queries (None if undefined)."""
    stats: Any = require("scipy.stats", extra="eval", purpose="significance tests")
    shared = sorted(set(baseline) & set(system))
    a = [baseline[q] for q in shared]
    b = [system[q] for q in shared]
    if len(shared) < 2 or a == b:
        return None
    p = float(stats.ttest_rel(b, a).pvalue)
    return None if math.isnan(p) else p


def paired_bootstrap_ci(
    baseline: dict[str, float],
    system: dict[str, float],
    *,
    seed: int = 0,
    resamples: int = 10_000,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean per-query difference (system - baseline).

    Queries are resampled with replacement, pairs kept together; the same ``seed`` gives the same
    interval. None with fewer than two shared queries.
    """
    stats: Any = require("scipy.stats", extra="eval", purpose="bootstrap confidence intervals")
    np: Any = require("numpy", extra="eval", purpose="bootstrap confidence intervals")
    shared = sorted(set(baseline) & set(system))
    if len(shared) < 2:
        return None
    differences = np.array([system[q] - baseline[q] for q in shared])
    if np.ptp(differences) == 0:  # every resample has the same mean
        return float(differences[0]), float(differences[0])
    interval = stats.bootstrap(
        (differences,),
        np.mean,
        n_resamples=resamples,
        batch=1000,  # resamples held in memory at once: 1000 x queries
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)
