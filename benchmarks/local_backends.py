"""Local backends side by side, on the same weights and the same real inputs, in one run.

1. FlashRank backend vs FlashRank's own ``Ranker`` on the same ONNX folder, 100 and 500
   candidates, each in a fresh process (pairs/s and peak memory; an out-of-memory is reported).
2. fp32 and int8 ONNX exports (flashrank backend) vs the torch cross-encoder backend vs
   sentence-transformers ``CrossEncoder``; nDCG@10 of fp32 vs int8 on scifact BM25 top-100.
3. The ColBERT backend with and without its document cache, new queries over the same candidates.

The checkpoint is all-MiniLM-L6-v2's real encoder with a seeded one-logit head (no trained
cross-encoder can be downloaded here), so nDCG@10 compares fp32 with int8, not model quality.
Run from the repository root:

    python benchmarks/local_backends.py [--queries 4] [--eval-queries 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DATA,
    CandidateSets,
    candidate_sets,
    model_factory,
    pairs_per_second,
    peak_rss_mib,
)

QUERY_COUNT_FOR_PROBE = 2


def flashrank_probe(system: str, folder: Path, cache: Path, n: int) -> None:
    """Child process: time one system on ``n`` candidates and print JSON with peak memory."""
    sets = candidate_sets(QUERY_COUNT_FOR_PROBE, n)
    if system == "flashrank-Ranker":
        import flashrank
        from flashrank import Ranker, RerankRequest

        flashrank.Config.model_file_map[folder.name] = "model.onnx"
        ranker = Ranker(model_name=folder.name, cache_dir=str(cache), log_level="WARNING")

        def score(query: str, docs: list[str]) -> object:
            passages = [{"id": i, "text": t} for i, t in enumerate(docs)]
            return ranker.rerank(RerankRequest(query=query, passages=passages))
    else:
        from rerankit import Reranker

        score = Reranker(str(folder), backend="flashrank").score  # type: ignore[assignment]
    rate = pairs_per_second(score, sets, warm_up=False)
    print(json.dumps({"pairs_per_second": rate, "peak_rss_mib": peak_rss_mib()}))


def section_flashrank(folder: Path, cache: Path) -> None:
    print("## FlashRank backend vs FlashRank's Ranker (same ONNX folder, fresh process each)\n")
    print(f"{'candidates':>10}  {'system':<20}{'pairs/s':>10}{'peak RSS MiB':>14}")
    for n in (100, 500):
        for system in ("rerankit flashrank", "flashrank-Ranker"):
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--probe",
                    system,
                    "--folder",
                    str(folder),
                    "--cache",
                    str(cache),
                    "--n",
                    str(n),
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if run.returncode != 0:
                reason = (
                    "killed (out of memory?)" if run.returncode < 0 else run.stderr.strip()[-200:]
                )
                print(f"{n:>10}  {system:<20}{'failed':>10}  {reason}")
                continue
            result = json.loads(run.stdout.strip().splitlines()[-1])
            print(
                f"{n:>10}  {system:<20}{result['pairs_per_second']:>10.1f}"
                f"{result['peak_rss_mib']:>14.0f}"
            )
    print()


def section_onnx(
    checkpoint: Path, fp32: Path, int8: Path, sets: CandidateSets, eval_queries: int
) -> None:
    import torch
    from scipy.stats import kendalltau
    from sentence_transformers import CrossEncoder

    from rerankit import Reranker
    from rerankit.config import RerankerConfig
    from rerankit.eval.data import load_beir
    from rerankit.eval.metrics import mean, per_query
    from rerankit.eval.runner import first_stage_run, rerank_run

    print("## ONNX exports vs torch on the same checkpoint\n")
    st = CrossEncoder(str(checkpoint), device="cpu", max_length=512)
    systems = {
        "sentence-transformers CrossEncoder": lambda q, d: st.predict([(q, t) for t in d]),
        "rerankit cross-encoder (torch)": Reranker(str(checkpoint), device="cpu").score,
        "rerankit flashrank fp32 ONNX": Reranker(str(fp32)).score,
        "rerankit flashrank int8 ONNX": Reranker(str(int8)).score,
    }
    rates = {name: pairs_per_second(fn, sets) for name, fn in systems.items()}
    base = rates["sentence-transformers CrossEncoder"]
    print(
        f"torch threads: {torch.get_num_threads()}; "
        f"{len(sets)} queries x {len(sets[0][1])} candidates\n"
    )
    print(f"{'system':<38}{'pairs/s':>10}{'vs ST':>8}")
    for name, rate in rates.items():
        print(f"{name:<38}{rate:>10.1f}{rate / base:>7.2f}x")

    data = load_beir(DATA / "scifact", max_queries=eval_queries)
    _, candidates = first_stage_run(data, candidates=100)
    quality = {}
    rankings = {}
    for name, folder in (("fp32", fp32), ("int8", int8)):
        run = rerank_run(data, name, RerankerConfig(model=str(folder)), candidates)
        quality[name] = mean(per_query(run.rankings, data.qrels)["nDCG@10"])
        rankings[name] = run.rankings
    taus = []
    for qid in data.queries:
        order = {d: i for i, d in enumerate(rankings["fp32"][qid])}
        if len(order) > 1:
            taus.append(
                kendalltau(range(len(order)), [order[d] for d in rankings["int8"][qid]]).statistic
            )
    change = (quality["int8"] - quality["fp32"]) / quality["fp32"] if quality["fp32"] else 0.0
    print(
        f"\nscifact, {len(data.queries)} queries, BM25 top-100: "
        f"nDCG@10 fp32 {quality['fp32']:.4f}, "
        f"int8 {quality['int8']:.4f} ({change:+.2%}); mean Kendall tau of the orders "
        f"{statistics.fmean(taus):.3f}\n"
    )


def section_colbert(sets: CandidateSets) -> None:
    from rerankit import Reranker

    print("## ColBERT backend: document cache on and off\n")
    model = str(model_factory.minilm_dir())
    candidates = sets[0][1]
    queries = [q for q, _ in sets]
    uncached = Reranker(model, backend="colbert", device="cpu")
    cached = Reranker(model, backend="colbert", device="cpu", cache_size=10_000)
    cached.score("warm the cache", candidates)  # first query encodes the documents once
    uncached.score("warm up", candidates[:2])
    timings = {}
    for name, rr in (("uncached", uncached), ("cached", cached)):
        started = time.perf_counter()
        for query in queries:
            rr.score(query, candidates)
        timings[name] = (time.perf_counter() - started) / len(queries) * 1000
    print(f"{len(candidates)} candidates, {len(queries)} new queries over the same candidates")
    print(
        f"uncached {timings['uncached']:.0f} ms/query, cached {timings['cached']:.1f} ms/query: "
        f"{timings['uncached'] / timings['cached']:.0f}x faster\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=4, help="queries for the throughput runs")
    parser.add_argument("--eval-queries", type=int, default=30, help="queries for nDCG@10")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        flashrank_probe(args.probe, args.folder, args.cache, args.n)
        return

    from rerankit.export import export_onnx

    work = Path(tempfile.mkdtemp(prefix="rerankit-bench-"))
    checkpoint = model_factory.minilm_with_head(work / "minilm-ce")
    fp32 = export_onnx(str(checkpoint), work / "fp32")
    int8 = export_onnx(str(checkpoint), work / "int8", quantize="int8")
    cache = work / "flashrank-cache"
    shutil.copytree(fp32, cache / "rerankit-minilm")
    sets = candidate_sets(args.queries, 100)
    section_flashrank(cache / "rerankit-minilm", cache)
    section_onnx(checkpoint, fp32, int8, sets, args.eval_queries)
    section_colbert(candidate_sets(10, 100))


if __name__ == "__main__":
    main()
