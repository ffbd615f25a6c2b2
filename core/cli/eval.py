"""``rerankit eval``: first stages vs rerankers on a BEIR folder, quality and cost side by side."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.cli.spec import check_options, joined, parse_spec
from rerankit.config import RerankerConfig, load_configs
from rerankit.errors import ConfigurationError
from rerankit.eval.analysis import AnalysisSettings
from rerankit.eval.data import load_beir
from rerankit.eval.report import build_report, markdown, write_outputs
from rerankit.eval.runner import (
    FIRST_STAGES,
    DenseSettings,
    FusionSettings,
    check_rerankers,
    first_stage_runs,
    rerank_run,
    rerank_run_on_ray,
    time_depths,
)


def register(commands: Any) -> None:
    """Add the ``eval`` sub-command."""
    parser = commands.add_parser(
        "eval",
        help="evaluate rerankers on a BEIR folder: nDCG, MRR, recall, latency, cost",
        epilog="Backend options and their types: rerankit info.",
    )
    parser.add_argument(
        "data",
        type=Path,
        help='folder with corpus.jsonl, queries.jsonl, qrels.tsv; a corpus line\'s "image" '
        "(a path relative to the corpus file, or absolute) makes it an image document, which "
        "rerankers that take images rank (first stages read its text)",
    )
    parser.add_argument(
        "--reranker",
        action="append",
        default=[],
        metavar="SPEC",
        help="name=...,model=...,backend=...,KEY=VALUE (repeatable): config fields and backend "
        "options, values as text (trust_remote_code=false, providers='[\"A\"]'); "
        "`rerankit info` lists every backend's options",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML/JSON file: {rerankers: [config, ...]}, {models: {name: config}} or a list",
    )
    parser.add_argument(
        "--first-stage",
        action="append",
        metavar="STAGE",
        help="bm25 (the default), dense, hybrid or a run file (TREC or qid/docid/score TSV); "
        "repeatable or comma-separated (bm25,dense,hybrid): every reranker reranks every stage",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        help="candidates per query (default: 100, or the deepest of --depths)",
    )
    parser.add_argument("--max-queries", type=int, help="first N judged queries only")
    parser.add_argument("--out", type=Path, help="output folder (default: rerankit-eval/<set>)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--ray", type=int, metavar="ACTORS", help="rerank with Ray Data, ACTORS model copies"
    )
    dense = parser.add_argument_group("dense and hybrid first stages")
    dense.add_argument(
        "--dense-model", metavar="MODEL", help="sentence-transformers model name or folder"
    )
    dense.add_argument(
        "--dense-query-prefix", metavar="TEXT", help="prepended to queries (E5: 'query: ')"
    )
    dense.add_argument(
        "--dense-passage-prefix", metavar="TEXT", help="prepended to documents (E5: 'passage: ')"
    )
    dense.add_argument(
        "--cache-dir",
        type=Path,
        help="corpus embeddings cache (default: $RERANKIT_CACHE/embeddings or "
        "~/.cache/rerankit/embeddings)",
    )
    dense.add_argument(
        "--rrf-k", type=float, default=60.0, help="reciprocal-rank fusion constant (default 60)"
    )
    dense.add_argument(
        "--rrf-weights",
        default="1,1",
        metavar="BM25,DENSE",
        help="weights of the two rankings in the fusion (default 1,1)",
    )
    decide = parser.add_argument_group("decision support")
    decide.add_argument(
        "--depths",
        metavar="D1,D2,...",
        help="candidate depths for the depth curve (e.g. 10,20,50,100), from one scoring pass",
    )
    decide.add_argument(
        "--depth-timing-queries",
        type=int,
        default=20,
        metavar="N",
        help="time real calls at each depth on the first N queries (default 20); 0 estimates "
        "latency from the full pass's pairs per second",
    )
    decide.add_argument(
        "--target-recall",
        type=float,
        default=0.9,
        help="share of the judged-relevant documents in the top-k a score cut-off keeps",
    )
    decide.add_argument(
        "--top-k", type=int, default=10, help="the top-k the score cut-off works in (default 10)"
    )
    decide.add_argument(
        "--qps", type=float, help="peak queries per second to project processes and API cost at"
    )
    decide.add_argument(
        "--worst", type=int, default=5, help="most hurt queries listed per reranker (default 5)"
    )
    decide.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write report.json / report.md / the plots, print the tables."""
    rerankers = _rerankers(args.config, args.reranker)
    stages = _stages(args.first_stage)
    analysis = _analysis(args)
    candidates = _candidates(args.candidates, analysis.depths)
    dense, fusion = _dense(args, stages)
    if args.depth_timing_queries < 0:
        raise ConfigurationError(
            f"--depth-timing-queries must be >= 0, got {args.depth_timing_queries}"
        )
    # Ray's latencies are amortised over actors: depth latencies are estimated from them too.
    timed = args.depth_timing_queries if analysis.depths and not args.ray else 0
    data = load_beir(args.data, max_queries=args.max_queries)
    check_rerankers(data, rerankers, ray=bool(args.ray))  # image documents need image rerankers
    progress = not args.no_progress and sys.stderr.isatty()
    first_stages = first_stage_runs(
        data, stages, candidates=candidates, dense=dense, fusion=fusion, progress=progress
    )
    systems = []
    for stage in first_stages:
        systems.append(stage)
        for name, config in rerankers.items():
            if args.ray:
                reranked = rerank_run_on_ray(
                    data, name, config, stage.rankings, first_stage=stage.name, actors=args.ray
                )
            else:
                reranked = rerank_run(
                    data, name, config, stage.rankings, first_stage=stage.name, progress=progress
                )
                if timed:
                    reranked.depth_latencies_ms = time_depths(
                        data, config, stage.rankings, list(analysis.depths), queries=timed
                    )
            systems.append(reranked)
    settings = {
        "data": str(args.data),
        "first_stages": stages,
        "candidates": candidates,
        "max_queries": args.max_queries,
        "ray_actors": args.ray,
        "dense": None if dense is None else {**asdict(dense), "cache_dir": _text(dense.cache_dir)},
        "fusion": asdict(fusion),
        "depths": list(analysis.depths),
        "depth_timing_queries": timed,
        "target_recall": analysis.target_recall,
        "cutoff_top_k": analysis.cutoff_top_k,
        "qps": analysis.qps,
        "seed": analysis.seed,
        "worst": analysis.worst,
        "rerankers": [{"name": n, **c.to_dict()} for n, c in rerankers.items()],
        "image_documents": len(data.images),
        "image_only_documents": data.image_only,  # first stages cannot retrieve these
    }
    report = build_report(data, systems, settings=settings, analysis=analysis)
    paths = write_outputs(report, args.out or Path("rerankit-eval") / data.name)
    print(markdown(report))
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _stages(values: list[str] | None) -> list[str]:
    """``--first-stage`` values, split at commas; bm25 when none is given."""
    stages = [v.strip() for value in values or ["bm25"] for v in value.split(",") if v.strip()]
    for stage in stages:
        if stage not in FIRST_STAGES and not Path(stage).is_file():
            raise ConfigurationError(
                f"--first-stage {stage!r} is neither one of {', '.join(FIRST_STAGES)} nor a "
                "run file that exists"
            )
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise ConfigurationError(f"--first-stage repeats {', '.join(repeated)}; give each once")
    if not stages:
        raise ConfigurationError("--first-stage is empty; give bm25, dense, hybrid or a run file")
    return stages


def _analysis(args: argparse.Namespace) -> AnalysisSettings:
    depths = () if args.depths is None else _depth_list(args.depths)
    if not 0 < args.target_recall <= 1:
        raise ConfigurationError(
            f"--target-recall must be in (0, 1], got {args.target_recall}; e.g. 0.9"
        )
    for flag, value in (("--top-k", args.top_k), ("--worst", args.worst)):
        if value <= 0:
            raise ConfigurationError(f"{flag} must be > 0, got {value}")
    if args.qps is not None and not (math.isfinite(args.qps) and args.qps > 0):
        raise ConfigurationError(f"--qps must be a number > 0, got {args.qps}")
    return AnalysisSettings(
        depths=depths,
        target_recall=args.target_recall,
        cutoff_top_k=args.top_k,
        qps=args.qps,
        seed=args.seed,
        worst=args.worst,
    )


def _depth_list(text: str) -> tuple[int, ...]:
    try:
        depths = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ConfigurationError(
            f"--depths takes whole numbers separated by commas, e.g. 10,20,50,100; got {text!r}"
        ) from None
    if not depths or depths[0] <= 0:
        raise ConfigurationError(f"--depths must be numbers > 0, e.g. 10,20,50,100; got {text!r}")
    return tuple(depths)


def _candidates(candidates: int | None, depths: tuple[int, ...]) -> int:
    """``--candidates``, else the deepest depth, else 100; never fewer than the deepest depth."""
    if candidates is None:
        return max(depths, default=100)
    if candidates <= 0:
        raise ConfigurationError(f"--candidates must be > 0, got {candidates}")
    if depths and candidates < depths[-1]:
        raise ConfigurationError(
            f"--depths go up to {depths[-1]} but --candidates is {candidates}: raise --candidates "
            "or drop the deeper depths"
        )
    return candidates


def _dense(
    args: argparse.Namespace, stages: list[str]
) -> tuple[DenseSettings | None, FusionSettings]:
    """The dense model and fusion settings; a dense or hybrid stage needs --dense-model."""
    if not args.rrf_k > 0:
        raise ConfigurationError(f"--rrf-k must be > 0, got {args.rrf_k}; 60 is the usual value")
    try:
        weights = [float(w) for w in args.rrf_weights.split(",")]
    except ValueError:
        weights = []
    if len(weights) != 2 or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ConfigurationError(
            f"--rrf-weights takes two numbers >= 0, BM25's then dense's, e.g. 1,1; "
            f"got {args.rrf_weights!r}"
        )
    fusion = FusionSettings(k=args.rrf_k, weights=(weights[0], weights[1]))
    if not {"dense", "hybrid"} & set(stages):
        return None, fusion
    if args.dense_model is None:
        raise ConfigurationError(
            "--first-stage dense and hybrid need --dense-model: a sentence-transformers model "
            "name or folder, e.g. sentence-transformers/all-MiniLM-L6-v2"
        )
    require("sentence_transformers", extra="dense", purpose="the dense first stage")
    dense = DenseSettings(
        model=args.dense_model,
        query_prefix=args.dense_query_prefix,
        passage_prefix=args.dense_passage_prefix,
        cache_dir=args.cache_dir,
    )
    return dense, fusion


def _rerankers(config: Path | None, specs: list[str]) -> dict[str, RerankerConfig]:
    """--config's rerankers, then each --reranker; every option is checked before any work."""
    rerankers = joined(
        {} if config is None else load_configs(config, extra="eval"),
        # Labelled by position, not by the spec's text, which may hold an API key.
        *(
            load_configs(parse_spec(spec, flag="--reranker"), label=f"--reranker {position}")
            for position, spec in enumerate(specs, 1)
        ),
    )
    check_options(rerankers)
    for reranker in rerankers.values():
        reranker.to_dict()  # the report records every config: a literal API key fails now
    return rerankers
