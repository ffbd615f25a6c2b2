"""The decision numbers on hand-made inputs: fusion, depth, cut-off, wins and losses, cost."""

from __future__ import annotations

import random

import pytest

from rerankit.eval.analysis import cutoff, depth_curve, traffic, wins_and_losses, worst_queries
from rerankit.eval.first_stage import reciprocal_rank_fusion
from rerankit.eval.metrics import paired_bootstrap_ci
from rerankit.eval.runner import reranked


def test_reciprocal_rank_fusion_matches_a_hand_computed_fusion() -> None:
    bm25 = [("a", 12.0), ("b", 9.0), ("c", 3.0)]
    dense = [("c", 0.9), ("d", 0.8), ("a", 0.7)]
    fused = reciprocal_rank_fusion([bm25, dense], k=60)
    # a: ranks 1 and 3; c: 3 and 1 (a tie: a was seen first); b and d: rank 2 once each.
    assert fused == [
        ("a", pytest.approx(1 / 61 + 1 / 63)),
        ("c", pytest.approx(1 / 63 + 1 / 61)),
        ("b", pytest.approx(1 / 62)),
        ("d", pytest.approx(1 / 62)),
    ]
    weighted = reciprocal_rank_fusion([bm25, dense], k=60, weights=[1.0, 2.0])
    assert [d for d, _ in weighted] == ["c", "a", "d", "b"]
    assert dict(weighted)["c"] == pytest.approx(1 / 63 + 2 / 61)
    assert dict(reciprocal_rank_fusion([bm25, dense], k=1))["a"] == pytest.approx(1 / 2 + 1 / 4)


def test_depth_curve_rescores_nothing_and_finds_the_smallest_good_depth() -> None:
    candidates = {"q1": ["a", "b", "c", "d"]}
    scores = {"q1": {"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.5}}
    assert reranked(candidates["q1"], scores["q1"], depth=2) == ["b", "a"]
    assert reranked(candidates["q1"], scores["q1"], depth=3, top_k=2) == ["c", "b"]
    qrels = {"q1": {"c": 1}}
    curve = depth_curve(candidates, scores, qrels, (2, 3, 4), pairs_per_second=10.0)
    assert [p["metrics"]["nDCG@10"] for p in curve["points"]] == [0.0, 1.0, 1.0]
    assert curve["latency"] == "estimated"
    assert [p["latency_ms"]["mean"] for p in curve["points"]] == [200.0, 300.0, 400.0]
    assert curve["best_depth"] == 3
    assert curve["smallest_depth_within_tolerance"] == 3
    measured = depth_curve(
        candidates, scores, qrels, (2, 4), measured_ms={2: [5.0, 7.0, 6.0], 4: [9.0, 11.0, 10.0]}
    )
    assert measured["latency"] == "measured"
    assert measured["timed_queries"] == 3
    assert [p["latency_ms"]["p50"] for p in measured["points"]] == [6.0, 10.0]


def test_cutoff_keeps_the_target_share_of_the_relevant_documents_in_the_top_k() -> None:
    candidates = {"q1": ["a", "b", "c", "d"], "q2": ["x", "y", "z"], "q3": ["m", "n"]}
    scores = {
        "q1": {"a": 0.9, "b": 0.2, "c": 0.8, "d": 0.1},
        "q2": {"x": 0.3, "y": 0.7, "z": 0.5},
        "q3": {"m": 0.6, "n": 0.65},
    }
    qrels = {"q1": {"a": 1, "c": 2}, "q2": {"x": 1}, "q3": {"m": 1}}
    # Relevant documents in each top 2: a (0.9), c (0.8) and m (0.6); x is ranked third.
    cut = cutoff(candidates, scores, qrels, scale="logit", target_recall=0.6, top_k=2)
    assert cut["applies"] is True
    assert cut["threshold"] == 0.8  # keeps 2 of the 3: at least 60%
    assert (cut["relevant_kept"], cut["relevant_in_top_k"]) == (2, 3)
    assert cut["documents_kept_per_query"] == pytest.approx(2 / 3)
    assert cut["documents_in_top_k_per_query"] == 2.0
    assert cut["queries_with_nothing_kept"] == 2
    assert cut["judged_recall_before"] == pytest.approx(2 / 3)
    assert cut["judged_recall_after"] == pytest.approx(1 / 3)
    everything = cutoff(candidates, scores, qrels, scale="logit", target_recall=1.0, top_k=2)
    assert everything["threshold"] == 0.6
    assert everything["documents_kept_per_query"] == pytest.approx(5 / 3)  # a, c; y; n, m
    # 0.9 of 10 is 9 documents, although 0.9 * 10 is a hair above 9 in floating point.
    ten = {f"q{i}": [f"d{i}"] for i in range(10)}
    cut = cutoff(
        ten,
        {q: {ids[0]: float(i)} for i, (q, ids) in enumerate(ten.items())},
        {q: {ids[0]: 1} for q, ids in ten.items()},
        scale="probability",
        target_recall=0.9,
        top_k=10,
    )
    assert (cut["threshold"], cut["relevant_kept"]) == (1.0, 9)
    listwise = cutoff(candidates, scores, qrels, scale="rank", target_recall=0.9, top_k=2)
    assert listwise["applies"] is False
    assert "cut with top_k" in listwise["reason"]


def test_wins_ties_and_losses_add_up_to_the_queries() -> None:
    baseline = {"q1": 0.5, "q2": 0.5, "q3": 1.0, "q4": 0.2, "q5": 0.0}
    system = {"q1": 0.7, "q2": 0.5, "q3": 0.4, "q4": 0.2 + 1e-12, "q5": 0.1}
    outcome = wins_and_losses(baseline, system, seed=0, resamples=2000)
    assert (outcome["wins"], outcome["ties"], outcome["losses"]) == (2, 2, 1)
    assert outcome["wins"] + outcome["ties"] + outcome["losses"] == outcome["queries"] == 5
    assert outcome["mean_difference"] == pytest.approx(-0.06)
    low, high = outcome["ci95"]
    assert low <= outcome["mean_difference"] <= high


def test_bootstrap_ci_is_deterministic_with_a_seed() -> None:
    rng = random.Random(7)
    baseline = {str(i): rng.random() for i in range(60)}
    better = {q: v + 0.1 + rng.gauss(0, 0.05) for q, v in baseline.items()}
    first = paired_bootstrap_ci(baseline, better, seed=3)
    assert first == paired_bootstrap_ci(baseline, better, seed=3)
    assert first != paired_bootstrap_ci(baseline, better, seed=4)
    assert first is not None
    mean_difference = sum(better[q] - baseline[q] for q in baseline) / len(baseline)
    assert first[0] < mean_difference < first[1]
    assert first[0] > 0  # a clear gain: the interval leaves out zero
    assert paired_bootstrap_ci({"a": 1.0}, {"a": 0.0}) is None
    shifted = {q: v + 0.25 for q, v in baseline.items()}
    assert paired_bootstrap_ci(baseline, shifted) == pytest.approx((0.25, 0.25))


def test_worst_queries_say_where_the_first_relevant_document_went() -> None:
    queries = {"q1": "first", "q2": "second", "q3": "third"}
    qrels = {"q1": {"a": 1}, "q2": {"x": 1}, "q3": {"m": 1}}
    first_stage = {"q1": ["a", "b"], "q2": ["x", "y"], "q3": ["n", "m"]}
    system = {"q1": ["b", "a"], "q2": ["y", "z"], "q3": ["m", "n"]}
    before = {"q1": 1.0, "q2": 1.0, "q3": 0.63}
    after = {"q1": 0.63, "q2": 0.0, "q3": 1.0}
    worst = worst_queries(queries, qrels, first_stage, system, before, after, count=5)
    assert [w["query_id"] for w in worst] == ["q2", "q1"]  # q3 improved
    assert worst[0]["query"] == "second"
    assert worst[0]["first_relevant_rank"] == {"first_stage": 1, "reranked": None}
    assert worst[1]["first_relevant_rank"] == {"first_stage": 1, "reranked": 2}
    assert worst[1]["difference"] == pytest.approx(-0.37)
    assert len(worst_queries(queries, qrels, first_stage, system, before, after, count=1)) == 1


def test_traffic_projection_from_known_rates() -> None:
    local = traffic(
        qps=10, remote=False, pairs_per_query=50, pairs_per_second=200, usage_per_query={}
    )
    assert local["queries_per_second_per_process"] == 4.0
    assert local["processes"] == 3  # 10 / 4 = 2.5
    exact = traffic(
        qps=8, remote=False, pairs_per_query=50, pairs_per_second=200, usage_per_query={}
    )
    assert exact["processes"] == 2
    # Ray: 400 pairs/s came from two actors, 200 each.
    actors = traffic(
        qps=8,
        remote=False,
        pairs_per_query=50,
        pairs_per_second=400,
        usage_per_query={},
        processes=2,
    )
    assert (actors["pairs_per_second_per_process"], actors["processes"]) == (200.0, 2)
    usage = {"total_tokens": 1000.0, "cost": 0.00002, "requests": 1.0}
    api = traffic(qps=5, remote=True, pairs_per_query=50, pairs_per_second=0, usage_per_query=usage)
    assert api["tokens_per_day"] == pytest.approx(1000 * 5 * 86_400)
    assert api["cost_per_day"] == pytest.approx(8.64)
    assert api["cost_per_month"] == pytest.approx(8.64 * 30)
    assert api["requests_per_second"] == 5.0
    unpriced = traffic(
        qps=5, remote=True, pairs_per_query=50, pairs_per_second=0, usage_per_query={}
    )
    assert unpriced["cost_per_day"] is None
    assert unpriced["tokens_per_query"] is None
