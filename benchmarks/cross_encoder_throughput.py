"""Cross-encoder throughput: rerankit vs sentence-transformers and AnswerDotAI rerankers.

Same weights, same (query, 100 candidates) sets from ../shared/data/scifact, one run; prints
pairs/second and ratios, the peak memory of reranking 2,000 ~400-token passages, and the time
of ``import rerankit``. Run from the repository root:

    python benchmarks/cross_encoder_throughput.py [--queries 8] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, Scorer, candidate_sets, model_factory, pairs_per_second, peak_rss_mib


def scorers(model_dir: Path, batch_size: int) -> dict[str, Scorer]:
    """Each system loaded once, as a user would call it."""
    from rerankers import Reranker as AnswerDotAIReranker
    from sentence_transformers import CrossEncoder

    from rerankit import Reranker

    ours = Reranker(str(model_dir), device="cpu", batch_size=batch_size)
    st = CrossEncoder(str(model_dir), device="cpu", max_length=512)
    adai = AnswerDotAIReranker(
        str(model_dir), model_type="cross-encoder", device="cpu", batch_size=batch_size, verbose=0
    )
    return {
        "rerankit": ours.score,
        "sentence-transformers": lambda q, d: st.predict(
            [(q, t) for t in d], batch_size=batch_size
        ),
        "rerankers": lambda q, d: adai.rank(query=q, docs=d),
    }


def memory_probe(model_dir: Path, n: int) -> None:
    """Child process: rerank ``n`` long passages and print peak RSS before/after in MiB."""
    from rerankit import Reranker

    corpus = model_factory.read_corpus_texts(DATA / "scifact", limit=10_000)
    rng = random.Random(1)
    passages = [" ".join(" ".join(rng.sample(corpus, 3)).split()[:320]) for _ in range(n)]
    rr = Reranker(str(model_dir), device="cpu")
    before = peak_rss_mib()
    started = time.perf_counter()
    result = rr.rank("What causes antibiotic resistance?", passages)
    elapsed = time.perf_counter() - started
    after = peak_rss_mib()
    tokens = rr.backend.tokenizer(passages[:50], add_special_tokens=False)["input_ids"]  # type: ignore[attr-defined]
    print(
        json.dumps(
            {
                "n": len(result),
                "mean_tokens_first_50": sum(map(len, tokens)) / len(tokens),
                "rss_after_load_mib": round(before),
                "peak_rss_mib": round(after),
                "seconds": round(elapsed, 1),
            }
        )
    )


def peak_memory(model_dir: Path, n: int) -> dict[str, float]:
    """Run :func:`memory_probe` in a fresh process so that peaks do not mix."""
    probe = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-probe",
            "--model",
            str(model_dir),
            "--memory-candidates",
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(probe.stdout.strip().splitlines()[-1])
    return result


def import_time() -> float:
    """Best of five: ``import rerankit`` minus an empty interpreter start, in milliseconds."""

    def best(code: str) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - started)
        return min(runs)

    return (best("import rerankit") - best("pass")) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-candidates", type=int, default=2000)
    parser.add_argument("--model", type=Path, help="cross-encoder folder (default: MiniLM + head)")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_dir = args.model or model_factory.minilm_with_head(Path(tempfile.mkdtemp()))
    if args.memory_probe:
        memory_probe(model_dir, args.memory_candidates)
        return

    import torch
    import transformers

    sets = candidate_sets(args.queries, args.candidates)
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(f"model: {model_dir}; {args.queries} queries x {args.candidates} scifact candidates\n")
    results = {
        name: pairs_per_second(fn, sets) for name, fn in scorers(model_dir, args.batch_size).items()
    }
    ours = results["rerankit"]
    print(f"{'system':<24}{'pairs/s':>10}{'rerankit ratio':>16}")
    for name, rate in results.items():
        print(f"{name:<24}{rate:>10.1f}{ours / rate:>15.2f}x")

    small, large = (peak_memory(model_dir, n) for n in (200, args.memory_candidates))
    for memory in (small, large):
        print(
            f"\n{memory['n']} candidates of ~{memory['mean_tokens_first_50']:.0f} tokens: "
            f"peak RSS {memory['peak_rss_mib']} MiB "
            f"(after model load {memory['rss_after_load_mib']} MiB), {memory['seconds']} s",
            end="",
        )
    print(
        f"\npeak RSS growth from 200 to {large['n']} candidates: "
        f"{large['peak_rss_mib'] - small['peak_rss_mib']} MiB"
    )
    print(f"import rerankit: {import_time():.0f} ms")


if __name__ == "__main__":
    main()
