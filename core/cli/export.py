"""``rerankit export MODEL OUTDIR [--quantize int8]``: a FlashRank-style ONNX folder."""

from __future__ import annotations

import argparse
from typing import Any

from rerankit.export import QUANTIZATIONS, export_onnx


def register(commands: Any) -> None:
    """Add the ``export`` sub-command."""
    parser = commands.add_parser(
        "export", help="export a cross-encoder to an ONNX folder for the flashrank backend"
    )
    parser.add_argument("model", help="hub id or folder of a sequence-classification reranker")
    parser.add_argument("outdir", help="folder to write (created if missing)")
    parser.add_argument(
        "--quantize", choices=QUANTIZATIONS, help="dynamic int8, one scale per weight channel"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export and say where the folder is and how to use it."""
    out = export_onnx(
        args.model,
        args.outdir,
        quantize=args.quantize,
        opset=args.opset,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"wrote {out} ({args.quantize or 'fp32'}); use it with Reranker({str(out)!r})")
    return 0
