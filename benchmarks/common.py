"""Shared by the benchmark scripts: paths, real candidate sets and a throughput timer."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rerankit.cli.bench import peak_rss_mib  # noqa: E402, F401  (re-exported for the scripts)
from tests import model_factory  # noqa: E402  (needs ROOT on sys.path)

Scorer = Callable[[str, list[str]], object]
CandidateSets = list[tuple[str, list[str]]]


def candidate_sets(n_queries: int, n_candidates: int, dataset: str = "scifact") -> CandidateSets:
    """Seeded samples of real passages (title + abstract, variable length) per real query."""
    corpus = model_factory.read_corpus_texts(DATA / dataset, limit=100_000)
    with (DATA / dataset / "queries.jsonl").open(encoding="utf-8") as lines:
        queries = [json.loads(line)["text"] for line in lines][:n_queries]
    rng = random.Random(0)
    return [(q, rng.sample(corpus, n_candidates)) for q in queries]


def pairs_per_second(score: Scorer, sets: CandidateSets, *, warm_up: bool = True) -> float:
    """Pairs scored per second over all sets (after one untimed warm-up call)."""
    if warm_up:
        score(*sets[0])
    started = time.perf_counter()
    for query, docs in sets:
        score(query, docs)
    return sum(len(d) for _, d in sets) / (time.perf_counter() - started)
