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
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import model_factory  # noqa: E402  (after sys.path)

DATA = ROOT.parent / "shared" / "data" / "scifact"
Scorer = Callable[[str, list[str]], object]


def candidate_sets(n_queries: int, n_candidates: int) -> list[tuple[str, list[str]]]:
    """Seeded samples of real passages (title + abstract, variable length) per real query."""
    corpus = model_factory.read_corpus_texts(DATA, limit=10_000)
    with (DATA / "queries.jsonl").open(encoding="utf-8") as lines:
        queries = [json.loads(line)["text"] for line in lines][:n_queries]
    rng = random.Random(0)
    return [(q, rng.sample(corpus, n_candidates)) for q in queries]


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


def pairs_per_second(score: Scorer, sets: list[tuple[str, list[str]]]) -> float:
    score(*sets[0])  # warm-up
    started = time.perf_counter()
    for query, docs in sets:
        score(query, docs)
    return sum(len(d) for _, d in sets) / (time.perf_counter() - started)


def memory_probe(model_dir: Path, n: int) -> None:
    """Child process: rerank ``n`` long passages and print peak RSS before/after in MiB."""
    from rerankit import Reranker

    corpus = model_factory.read_corpus_texts(DATA, limit=10_000)
    rng = random.Random(1)
    passages = [" ".join(" ".join(rng.sample(corpus, 3)).split()[:320]) for _ in range(n)]
    rr = Reranker(str(model_dir), device="cpu")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = rr.rank("What causes antibiotic resistance?", passages)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
