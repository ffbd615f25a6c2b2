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
