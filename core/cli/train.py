"""``rerankit train DATA --model BASE --out DIR``: fine-tune or distil a cross-encoder reranker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rerankit.cli.spec import check_options, parse_spec
from rerankit.config import load_configs
from rerankit.training.card import eval_spec
from rerankit.training.trainer import (
    EXPORTS,
    JUDGMENT_LOSSES,
    TEACHER_LOSSES,
    TrainSettings,
    train,
)

DEFAULTS = TrainSettings(base="-", out="-")


def register(commands: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = commands.add_parser(
        "train",
        help="fine-tune a reranker on judgments, or distil any rerankit reranker into one",
        description="Mine hard negatives with BM25 (or a run file), label them with judgments "
        "or a teacher reranker, train a one-logit cross-encoder with sentence-transformers' "
        "CrossEncoderTrainer, and write a model folder that Reranker(DIR), CrossEncoder(DIR) "
        "and rerankit export load.",
    )
    parser.add_argument(
        "data",
        type=Path,
        help="BEIR folder of training queries (corpus.jsonl, queries.jsonl, qrels.tsv) or a "
        "JSONL of {query, positive(s), negative(s)} / {query, document, label}",
    )
    parser.add_argument("--model", required=True, help="base checkpoint: an encoder or reranker")
    parser.add_argument("--out", required=True, type=Path, help="output model folder")
    parser.add_argument(
        "--teacher",
        metavar="SPEC",
        help="a rerankit reranker whose scores the student learns: model=...,backend=...,"
        "KEY=VALUE (as in rerankit eval --reranker); scores are cached in OUT/training/",
    )
    parser.add_argument(
        "--loss",
        choices=JUDGMENT_LOSSES + TEACHER_LOSSES,
        help="default: bce on judgments, listnet (listwise KL) with a teacher",
    )
    d = DEFAULTS
    parser.add_argument("--teacher-temperature", type=float, default=d.teacher_temperature)
    parser.add_argument(
        "--teacher-first-stage-weight",
        type=float,
        default=d.teacher_first_stage_weight,
        metavar="W",
        help="a hybrid teacher: add W x the teacher's spread x the first stage's z-score to the "
        "teacher's score of each document in a list (0: the teacher alone)",
    )
    parser.add_argument(
        "--negatives", type=int, default=d.negatives, help="hard negatives per query"
    )
    parser.add_argument(
        "--mine-depth",
        type=int,
        default=d.mine_depth,
        help="first-stage candidates the negatives are drawn from (and validation reranks)",
    )
    parser.add_argument(
        "--first-stage", default="bm25", help="'bm25' or a run file (TREC or qid/docid/score)"
    )
    parser.add_argument("--epochs", type=float, default=d.epochs)
    parser.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="(query, document) pairs per step"
    )
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--warmup", type=float, default=d.warmup, help="fraction of the steps")
    parser.add_argument("--max-length", type=int, default=d.max_length, help="tokens per pair")
    parser.add_argument(
        "--max-windows",
        type=int,
        default=d.max_windows,
        help="cut long documents into the N windows of --max-length a reranker with "
        "max_windows=N reads: each pair trains on the one sharing the most IDF-weighted "
        "query tokens (default 1: the first tokens)",
    )
    parser.add_argument(
        "--validation-queries",
        type=int,
        help="judged training queries held out for validation (default 10%%, at most 100; "
        "0: none, no early stopping)",
    )
    parser.add_argument("--eval-steps", type=int, help="validate every N steps (default: 4/epoch)")
    parser.add_argument(
        "--patience", type=int, default=d.patience, help="validations without gain before stopping"
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--export", choices=EXPORTS, help="also write OUT/onnx-<kind>/ for the flashrank backend"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check every input, train, and say where the model is and how to evaluate it."""
    teacher = None
    if args.teacher is not None:
        configs = load_configs(parse_spec(args.teacher, flag="--teacher"), label="--teacher")
        check_options(configs)
        teacher = next(iter(configs.values())).to_dict()
    settings = TrainSettings(
        base=args.model,
        out=str(args.out),
        loss=args.loss,
        negatives=args.negatives,
        mine_depth=args.mine_depth,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup=args.warmup,
        max_length=args.max_length,
        max_windows=args.max_windows,
        validation_queries=args.validation_queries,
        eval_steps=args.eval_steps,
        patience=args.patience,
        seed=args.seed,
        teacher=teacher,
        teacher_temperature=args.teacher_temperature,
        teacher_first_stage_weight=args.teacher_first_stage_weight,
        run_file=None if args.first_stage == "bm25" else args.first_stage,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    outcome = train(
        args.data,
        settings,
        resume=args.resume,
        overwrite=args.overwrite,
        export=args.export,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    best = [p["ndcg@10"] for p in outcome.curve if "ndcg@10" in p]
    print(
        f"trained {outcome.steps} steps in {outcome.seconds / 60:.1f} min on "
        f"{outcome.train_queries} queries ({outcome.examples} examples)"
        + (f"; best validation nDCG@10 {max(best):.4f}" if best else "")
    )
    if outcome.teacher is not None:
        report = outcome.teacher
        usage = ", ".join(f"{k} {v:g}" for k, v in sorted(report.usage.items()))
        print(
            f"teacher {report.teacher}: {report.scored} pairs scored, {report.cached} from cache"
            + (f" ({usage})" if usage else "")
        )
    print(f"wrote {outcome.out} (model card: {outcome.out / 'README.md'})")
    if outcome.export is not None:
        print(f"wrote {outcome.export}; use it with Reranker({str(outcome.export)!r})")
    print(f"evaluate: rerankit eval TEST_SET --reranker {eval_spec(outcome.out, settings)}")
    return 0
