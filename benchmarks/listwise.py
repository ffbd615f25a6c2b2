"""Listwise reranking on the shared sets: ``rerankit eval`` with a chat model on a server.

nDCG@10, latency, tokens and cost per query of the ``listwise`` backend, next to cross-encoder
rows, on every set in ../shared/data (or those named). The chat model runs on an
OpenAI-compatible server: vLLM, Ollama, llama.cpp's server, LM Studio or a paid API. Run from
the repository root, for example against vLLM serving RankZephyr:

    vllm serve castorini/rank_zephyr_7b_v1_full --port 8000
    python benchmarks/listwise.py --base-url http://localhost:8000 \\
        --model castorini/rank_zephyr_7b_v1_full --cross-encoder BAAI/bge-reranker-v2-m3

or against Ollama (``ollama pull qwen2.5:7b-instruct``; prompt ``rankgpt`` for a general chat
model), or a paid API with its key in an environment variable and its prices:

    python benchmarks/listwise.py --base-url http://localhost:11434/v1 --model qwen2.5:7b-instruct
    python benchmarks/listwise.py --base-url https://api.openai.com/v1 --model gpt-4o-mini \\
        --api-key-env OPENAI_API_KEY --price-in 0.15 --price-out 0.6 --max-queries 50

Reports go to benchmarks/results/listwise/<set>/ and one table to
benchmarks/results/listwise/RESULTS.md. With ``--candidates 100`` a query takes 9 windows (window
20, step 10): 9 calls of about 3,000 prompt tokens each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATA, ROOT

OUT = ROOT / "benchmarks" / "results" / "listwise"


def configs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``rerankit eval`` config: the listwise model, then each cross-encoder."""
    listwise: dict[str, Any] = {
        "model": args.model,
        "backend": "listwise",
        "base_url": args.base_url,
        "window_size": args.window_size,
        "step": args.step,
        "max_concurrency": args.concurrency,
        "timeout": args.timeout,
    }
    optional = {
        "prompt": args.prompt,
        "context_size": args.context_size,
        "price_per_million_input_tokens": args.price_in,
        "price_per_million_output_tokens": args.price_out,
    }
    listwise.update({key: value for key, value in optional.items() if value is not None})
    if args.api_key_env is not None:  # a reference: the key itself is never written down
        listwise["api_key"] = {"type": "env_var", "env_var": args.api_key_env}
    models = {f"listwise ({args.model})": listwise}
    for model in args.cross_encoder:
        models[f"cross-encoder ({model})"] = {"model": model, "backend": "cross-encoder"}
    return {"models": models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the chat server, e.g. :8000 of vLLM")
    parser.add_argument("--model", required=True, help="the model name the server knows")
    parser.add_argument("--prompt", choices=("rankgpt", "rankzephyr"), help="default: by name")
    parser.add_argument("--api-key-env", help="environment variable that holds the API key")
    parser.add_argument("--price-in", type=float, help="price per million prompt tokens")
    parser.add_argument("--price-out", type=float, help="price per million answer tokens")
    parser.add_argument(
        "--cross-encoder", action="append", default=[], help="cross-encoder rows (repeatable)"
    )
    parser.add_argument("--sets", nargs="*", help="set names in ../shared/data (default: all)")
    parser.add_argument("--candidates", type=int, default=100, help="BM25 candidates per query")
    parser.add_argument("--max-queries", type=int, default=100, help="first N judged queries")
    parser.add_argument("--window-size", type=int, default=20)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--context-size", type=int, help="the server model's context (4096)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight at most")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per call")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    sets = args.sets or sorted(
        p.name
        for p in DATA.iterdir()
        if (p / "corpus.jsonl").is_file() and p.name != "scifact-train"  # training data only
    )
    started = time.time()
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "rerankers.json"
        config.write_text(json.dumps(configs(args)), encoding="utf-8")
        for name in sets:
            out = args.out / name
            command = [
                sys.executable,
                "-m",
                "rerankit.cli",
                "eval",
                str(DATA / name),
                "--config",
                str(config),
                "--candidates",
                str(args.candidates),
                "--max-queries",
                str(args.max_queries),
                "--out",
                str(out),
                "--no-progress",
            ]
            print("+", " ".join(command), flush=True)
            subprocess.run(command, check=True)
            tables.append((out / "report.md").read_text(encoding="utf-8").strip())
    lines = [
        "# Listwise reranking",
        "",
        f"Generated by `python benchmarks/listwise.py` in {(time.time() - started) / 60:.0f} "
        f"minutes: model `{args.model}` at {args.base_url} (window {args.window_size}, step "
        f"{args.step}), BM25 top {args.candidates}, first {args.max_queries} judged queries. "
        "Latency, tokens and cost are per query.",
        "",
        *[f"{table}\n" for table in tables],
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
