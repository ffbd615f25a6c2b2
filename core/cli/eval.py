"""``rerankit eval``: first stage vs rerankers on a BEIR folder, quality and cost side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.eval.data import load_beir
from rerankit.eval.first_stage import load_run
from rerankit.eval.report import build_report, markdown, write_outputs
from rerankit.eval.runner import first_stage_run, rerank_run, rerank_run_on_ray


def register(commands: Any) -> None:
    """Add the ``eval`` sub-command."""
    parser = commands.add_parser(
        "eval", help="evaluate rerankers on a BEIR folder: nDCG, MRR, recall, latency, cost"
    )
    parser.add_argument(
        "data", type=Path, help="folder with corpus.jsonl, queries.jsonl, qrels.tsv"
    )
    parser.add_argument(
        "--reranker",
        action="append",
        default=[],
        metavar="SPEC",
        help="name=...,model=...,backend=...,KEY=VALUE (repeatable)",
    )
    parser.add_argument("--config", type=Path, help="YAML/JSON list of reranker configs")
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
    rerankers = [*_from_file(args.config), *(_from_spec(s) for s in args.reranker)]
    if args.candidates <= 0:
        raise ConfigurationError(f"--candidates must be > 0, got {args.candidates}")
    data = load_beir(args.data, max_queries=args.max_queries)
    run_file = None if args.first_stage == "bm25" else load_run(args.first_stage)
    first, candidates = first_stage_run(data, candidates=args.candidates, run=run_file)
    systems = [first]
    progress = not args.no_progress and sys.stderr.isatty()
    for name, config in rerankers:
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
        "rerankers": [{"name": n, **c.to_dict()} for n, c in rerankers],
    }
    report = build_report(data, systems, settings=settings)
    paths = write_outputs(report, args.out or Path("rerankit-eval") / data.name)
    print(markdown(report))
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def _from_spec(spec: str) -> tuple[str, RerankerConfig]:
    values: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigurationError(
                f"--reranker expects KEY=VALUE pairs, got {part!r} in {spec!r}"
            )
        values[key.strip()] = _value(value.strip())
    return _named(values)


def _from_file(path: Path | None) -> list[tuple[str, RerankerConfig]]:
    if path is None:
        return []
    yaml: Any = require("yaml", extra="eval", purpose="reading --config files")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = loaded.get("rerankers") if isinstance(loaded, dict) else loaded
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigurationError(f"{path} must hold a list of reranker configs (or 'rerankers:')")
    return [_named(dict(item)) for item in items]


def _named(values: dict[str, Any]) -> tuple[str, RerankerConfig]:
    if "model" not in values:
        raise ConfigurationError(f"a reranker config needs model=, got {sorted(values)}")
    name = str(values.pop("name", None) or f"{values.get('backend') or 'auto'}:{values['model']}")
    return name, RerankerConfig.from_kwargs(**values)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
