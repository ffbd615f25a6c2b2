"""``rerankit eval``: first stage vs rerankers on a BEIR folder, quality and cost side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rerankit.cli.spec import check_options, joined, parse_spec
from rerankit.config import RerankerConfig, load_configs
from rerankit.errors import ConfigurationError
from rerankit.eval.data import load_beir
from rerankit.eval.first_stage import load_run
from rerankit.eval.report import build_report, markdown, write_outputs
from rerankit.eval.runner import first_stage_run, rerank_run, rerank_run_on_ray


def register(commands: Any) -> None:
    """Add the ``eval`` sub-command."""
    parser = commands.add_parser(
        "eval",
        help="evaluate rerankers on a BEIR folder: nDCG, MRR, recall, latency, cost",
        epilog="Backend options and their types: rerankit info.",
    )
    parser.add_argument(
        "data", type=Path, help="folder with corpus.jsonl, queries.jsonl, qrels.tsv"
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
        "--first-stage", default="bm25", help="'bm25' or a run file (TREC or qid/docid/score TSV)"
    )
    parser.add_argument("--candidates", type=int, default=100, help="candidates per query")
    parser.add_argument("--max-queries", type=int, help="first N judged queries only")
    parser.add_argument("--out", type=Path, help="output folder (default: rerankit-eval/<set>)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--ray", type=int, metavar="ACTORS", help="rerank with Ray Data, ACTORS model copies"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write report.json / report.md / quality_vs_latency.png, print the table."""
    rerankers = _rerankers(args.config, args.reranker)
    if args.candidates <= 0:
        raise ConfigurationError(f"--candidates must be > 0, got {args.candidates}")
    data = load_beir(args.data, max_queries=args.max_queries)
    run_file = None if args.first_stage == "bm25" else load_run(args.first_stage)
    first, candidates = first_stage_run(data, candidates=args.candidates, run=run_file)
    systems = [first]
    progress = not args.no_progress and sys.stderr.isatty()
    for name, config in rerankers.items():
        if args.ray:
            systems.append(rerank_run_on_ray(data, name, config, candidates, actors=args.ray))
        else:
            systems.append(rerank_run(data, name, config, candidates, progress=progress))
    settings = {
        "data": str(args.data),
        "first_stage": args.first_stage,
        "candidates": args.candidates,
        "max_queries": args.max_queries,
        "ray_actors": args.ray,
        "rerankers": [{"name": n, **c.to_dict()} for n, c in rerankers.items()],
    }
    report = build_report(data, systems, settings=settings)
    paths = write_outputs(report, args.out or Path("rerankit-eval") / data.name)
    print(markdown(report))
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


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
