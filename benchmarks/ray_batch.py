"""Ray Data batch reranking throughput with 1 and 2 actors on this machine.

Rows are real scifact claims with 50 real passages each; the model is all-MiniLM-L6-v2's real
encoder with a seeded head; each actor loads it once and gets one CPU. Run from the repository
root:

    python benchmarks/ray_batch.py [--queries 24]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import candidate_sets, model_factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--candidates", type=int, default=50)
    args = parser.parse_args()

    import ray

    from rerankit import RerankerConfig
    from rerankit.ray import rerank_dataset

    model = model_factory.minilm_with_head(Path(tempfile.mkdtemp()) / "minilm-ce")
    config = RerankerConfig(model=str(model), device="cpu")
    rows = [
        {"qid": i, "query": q, "candidates": docs}
        for i, (q, docs) in enumerate(candidate_sets(args.queries, args.candidates))
    ]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        print(f"{len(rows)} queries x {args.candidates} candidates, {os.cpu_count()} CPUs\n")
        print(f"{'actors':>6}{'seconds':>10}{'pairs/s':>10}{'rows back':>11}")
        for actors in (1, 2):
            dataset = ray.data.from_items(rows)
            started = time.perf_counter()
            out = rerank_dataset(dataset, config, concurrency=actors, batch_size=4).take_all()
            elapsed = time.perf_counter() - started
            assert [r["qid"] for r in out] == list(range(len(rows))), "rows lost or reordered"
            pairs = len(rows) * args.candidates
            print(f"{actors:>6}{elapsed:>10.1f}{pairs / elapsed:>10.1f}{len(out):>11}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
