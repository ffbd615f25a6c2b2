"""The ``rerankit`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rerankit.cli import bench, demo, eval, export, info, serve, train
from rerankit.errors import RerankitError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="rerankit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    bench.register(commands)
    demo.register(commands)
    eval.register(commands)
    info.register(commands)
    serve.register(commands)
    export.register(commands)
    train.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rerankit`` script; rerankit's own errors print as one line (exit 2)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        result: int = args.run(args)
    except RerankitError as exc:
        if args.verbose:
            raise
        # One line, even when a library's text inside the message had several.
        message = " ".join(line.strip() for line in str(exc).splitlines())
        print(f"rerankit {args.command}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    return result
