"""Per-call overhead of each framework adapter over the core ``Reranker.rank`` call.

100 real scifact passages scored once by a tiny real cross-encoder; the timed calls then reuse
those scores (the backend's ``score`` is replaced by a lookup) so that model-time noise does not
swamp the adapters' own work. Core and adapter calls are interleaved and the overhead is the
difference of medians. Run from the repository root:

    python benchmarks/adapter_overhead.py [--rounds 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from haystack import Document as HaystackDocument  # noqa: E402
from langchain_core.documents import Document as LangChainDocument  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from rerankit import Reranker  # noqa: E402
from rerankit.integrations.haystack import RerankitRanker  # noqa: E402
from rerankit.integrations.langchain import RerankitCompressor  # noqa: E402
from rerankit.integrations.llama_index import RerankitPostprocessor  # noqa: E402
from tests import model_factory  # noqa: E402

QUERY = "Which proteins are involved in DNA repair?"


def median_ms(call: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--documents", type=int, default=100)
    args = parser.parse_args()
    model_dir = model_factory.tiny_bert(Path(tempfile.mkdtemp()), num_labels=1)
    texts = [
        t[:200]
        for t in model_factory.read_corpus_texts(
            ROOT.parent / "shared" / "data" / "scifact", limit=args.documents
        )
    ]
    reranker = Reranker(str(model_dir), device="cpu")
    scores = reranker.backend.score(QUERY, texts)
    reranker.backend.score = lambda query, batch: scores  # type: ignore[method-assign]
    k = 10
    lc_docs = [LangChainDocument(page_content=t, metadata={"i": i}) for i, t in enumerate(texts)]
    li_nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts]
    hs_docs = [HaystackDocument(content=t, meta={"i": i}) for i, t in enumerate(texts)]
    compressor = RerankitCompressor(reranker=reranker, top_n=k)
    postprocessor = RerankitPostprocessor(reranker=reranker, top_n=k)
    ranker = RerankitRanker(reranker=reranker, top_k=k)
    calls: dict[str, Callable[[], object]] = {
        "core": lambda: reranker.rank(QUERY, texts, top_k=k),
        "langchain": lambda: compressor.compress_documents(lc_docs, QUERY),
        "llama-index": lambda: postprocessor.postprocess_nodes(li_nodes, QueryBundle(QUERY)),
        "haystack": lambda: ranker.run(query=QUERY, documents=hs_docs),
    }
    for call in calls.values():
        call()  # warm-up
    medians = {name: [] for name in calls}  # type: dict[str, list[float]]
    for _ in range(5):  # interleave so that drift hits every system alike
        for name, call in calls.items():
            medians[name].append(median_ms(call, args.rounds // 5 or 1))
    core = statistics.median(medians["core"])
    print(f"{len(texts)} documents, top {k}, precomputed scores; medians of {args.rounds} calls")
    print(f"{'path':<14}{'ms/call':>10}{'overhead ms':>14}")
    for name, values in medians.items():
        value = statistics.median(values)
        print(f"{name:<14}{value:>10.3f}{value - core:>14.3f}")


if __name__ == "__main__":
    main()
