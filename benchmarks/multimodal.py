"""Image-document reranking speed and memory: rerankit's vlm backend vs rerankers' MonoVLMRanker.

One text query against 10 and 100 page screenshots, on two random MonoQwen2-VL-shaped models
(a LoRA adapter over a random Qwen2-VL, as lightonai/MonoQwen2-VL-v0.1 is one over
Qwen2-VL-2B-Instruct), built into a temporary folder by tests/vlm_factory.py:

- ``tiny``: the test fixture (2 layers, hidden 32; at most 64 image tokens a page);
- ``scaled``: 68M parameters: 6 layers, hidden 768, a 6-block vision tower 512 wide and a
  vocabulary padded to 8,192 (roughly Qwen2-VL-2B's shares of the compute between vision tower,
  language model and LM head), 14-pixel patches merged 2x2, at most 256 image tokens a page
  (page screenshots at reduced resolution).

Pages are synthetic screenshots (``vlm_factory.page_image``: lines of text and coloured boxes)
at A4, US-letter and 4:3 slide sizes, saved as PNG and resized by each model's image processor.
Systems, each in its own process, on the same weights: rerankit's ``Reranker(adapter,
backend="vlm", family="monovlm")`` with its default batching (length-sorted, left-padded
batches of up to 32 pages under a token budget) and with ``batch_size=1``, and rerankers 0.10's
``MonoVLMRanker`` (one page per forward pass; fp32, SDPA; its processor loaded through
``tests.vlm.references.no_video_processor``, as there is no torchvision here). rerankit gets
the PNG files' paths, MonoVLMRanker their base64 (encoded before timing): both decode the pages
in the timed calls. Reported: pages per second (after an untimed warm-up on 2 pages, passes
repeated for at least ``--min-seconds``), peak RSS (and peak CUDA memory on a GPU), both
against MonoVLMRanker in the same run, and the largest difference between rerankit's P(True)
(``normalize=True``) and MonoVLMRanker's. Printed as text and as a Markdown table for
RESULTS.md; written as JSON (with every score) to ``--out``. Run from the repository root:

    python benchmarks/multimodal.py --small          # tiny model, 10 pages: under a minute
    python benchmarks/multimodal.py                  # tiny and scaled, 10 and 100 pages
    python benchmarks/multimodal.py [--sizes tiny,scaled] [--pages 10,100] [--device cuda]
        [--dtype float32] [--min-seconds 1] [--out benchmarks/results/multimodal.json]

Where the Hub can be reached (not here), the same timing on the real checkpoint, on synthetic
pages or on a folder of real page images (such as the ViDoRe pages written below), needs only
``--model`` (and ``--processor``, where MonoVLMRanker reads the tokenizer and image processor):

    HF_HUB_OFFLINE=0 python benchmarks/multimodal.py --model lightonai/MonoQwen2-VL-v0.1 \\
        --processor Qwen/Qwen2-VL-2B-Instruct --device cuda [--pages-dir vidore-pharma/pages]

Ranking quality of the three vision-language families on a ViDoRe set, with ``rerankit eval``
(a BEIR folder whose corpus lines carry an ``image`` path; BM25 reads each page's markdown,
which qwen3-vl also reads after the image, while monovlm and jina-m0 read the image alone).
First write ViDoRe v3's pharmaceuticals set (English queries) as such a folder:

    HF_HUB_OFFLINE=0 python - <<'EOF'
    import csv, json, pathlib
    from datasets import load_dataset
    name, out = "vidore/vidore_v3_pharmaceuticals", pathlib.Path("vidore-pharma")
    (out / "pages").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w") as corpus:
        for row in load_dataset(name, "corpus", split="test"):
            image = f"pages/{row['corpus_id']}.png"
            row["image"].convert("RGB").save(out / image)
            line = {"_id": str(row["corpus_id"]), "text": row["markdown"], "image": image}
            corpus.write(json.dumps(line) + "\\n")
    with open(out / "queries.jsonl", "w") as queries:
        for row in load_dataset(name, "queries", split="test"):
            if str(row["language"]).lower().startswith("en"):
                line = {"_id": str(row["query_id"]), "text": row["query"]}
                queries.write(json.dumps(line) + "\\n")
    with open(out / "qrels.tsv", "w", newline="") as qrels:
        rows = csv.writer(qrels, delimiter="\\t")
        rows.writerow(["query-id", "corpus-id", "score"])
        for row in load_dataset(name, "qrels", split="test"):
            rows.writerow([row["query_id"], row["corpus_id"], row["score"]])
    EOF

then rerank BM25's top 20 with each model (jina-reranker-m0 is CC-BY-NC-4.0):

    HF_HUB_OFFLINE=0 rerankit eval vidore-pharma --first-stage bm25 --candidates 20 \\
        --depths 10,20 --max-queries 200 \\
        --reranker name=monoqwen2-vl,model=lightonai/MonoQwen2-VL-v0.1,backend=vlm,device=cuda \\
        --reranker name=qwen3-vl-2b,model=Qwen/Qwen3-VL-Reranker-2B,backend=vlm,device=cuda \\
        --reranker name=jina-m0,model=jinaai/jina-reranker-m0,backend=vlm,device=cuda

and time MonoVLMRanker (its own code, one page per forward pass) on the same pages with the
``--model`` command above and ``--pages-dir vidore-pharma/pages``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, peak_rss_mib

QUERY = "What was the quarterly revenue growth in 2024?"
OURS, OURS_ONE, PEER = "rerankit", "rerankit batch_size=1", "MonoVLMRanker"
SYSTEMS = (OURS, OURS_ONE, PEER)
# Page sizes in pixels (width, height): A4 and US letter at 72 dpi, a 4:3 slide, a screenshot.
PAGE_SIZES = [(595, 842), (612, 792), (800, 600), (600, 800)]
WARM_UP_PAGES = 2
DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # rerankers' names
OUT = ROOT / "benchmarks" / "results" / "multimodal.json"


# -- models and pages ---------------------------------------------------------------------------


def build(size: str, folder: Path) -> tuple[Path, Path]:
    """(adapter, base) of the ``size`` model, built into ``folder``."""
    from tests import vlm_factory

    base = folder / f"{size}-qwen2-vl"
    if size == "tiny":
        vlm_factory.tiny_qwen2_vl(base)
        rank = 4
    else:
        vlm_factory.scaled_qwen2_vl(base)
        rank = 8
    adapter = vlm_factory.tiny_monovlm_adapter(base, folder / f"{size}-monovlm", rank=rank)
    return adapter, base


def describe(base: Path) -> str:
    """A built base model's shape and parameter count, from its files."""
    from safetensors import safe_open

    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    text, vision = config["text_config"], config["vision_config"]
    params = 0
    for file in base.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shape = weights.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                params += count
    return (
        f"{text['num_hidden_layers']} layers x {text['hidden_size']}, vision "
        f"{vision['depth']} x {vision['embed_dim']}, vocabulary {text['vocab_size']:,}; "
        f"{params / 1e6:.1f}M parameters"
    )


def make_pages(folder: Path, n: int) -> list[Path]:
    """``n`` distinct synthetic page screenshots of realistic sizes, saved as PNG."""
    from tests.vlm_factory import PAGE_TEXTS, page_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        text = f"{PAGE_TEXTS[i % len(PAGE_TEXTS)]} Page {i + 1}, section {i % 7 + 1}."
        path = folder / f"page-{i:04d}.png"
        page_image(text, PAGE_SIZES[i % len(PAGE_SIZES)], seed=i).save(path)
        paths.append(path)
    return paths


def page_files(folder: Path) -> list[Path]:
    """The image files in ``folder``, in name order."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def image_tokens(processor: str, paths: list[Path]) -> dict[str, float]:
    """Merged image tokens per page (min, mean, max) under ``processor``'s pixel bounds."""
    from PIL import Image
    from transformers import AutoImageProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    images = AutoImageProcessor.from_pretrained(processor, backend="pil")
    size, patch, merge = dict(images.size), images.patch_size, images.merge_size
    counts = []
    for path in paths:
        with Image.open(path) as image:
            width, height = image.size
        h, w = smart_resize(
            height,
            width,
            factor=patch * merge,
            min_pixels=size["shortest_edge"],
            max_pixels=size["longest_edge"],
        )
        counts.append((h // patch) * (w // patch) // merge**2)
    return {"min": min(counts), "mean": statistics.fmean(counts), "max": max(counts)}


# -- one system, in a child process -------------------------------------------------------------


def load_system(settings: dict[str, Any]) -> Any:
    """The system's scoring call: P(True) of each page for the query, in page order."""
    system, model, processor = settings["system"], settings["model"], settings["processor"]
    if system in (OURS, OURS_ONE):
        from rerankit import Document, Reranker

        options: dict[str, Any] = {"processor": processor} if settings["explicit_processor"] else {}
        if system == OURS_ONE:
            options["batch_size"] = 1
        ranker = Reranker(
            model,
            backend="vlm",
            family="monovlm",
            normalize=True,
            device=settings["device"],
            dtype=settings["dtype"],
            **options,
        )

        def ours(query: str, paths: list[str]) -> list[float]:
            return ranker.score(query, [Document(image=path) for path in paths])

        return ours

    from rerankers.models.monovlm_ranker import MonoVLMRanker

    from tests.vlm.references import no_video_processor

    with no_video_processor():
        peer = MonoVLMRanker(
            model,
            processor_name=processor,
            dtype=DTYPES[settings["dtype"]],
            device=settings["device"],
            verbose=0,
            return_logits=False,
            attention_implementation="sdpa",
        )
    encoded: dict[str, str] = {}  # its input: base64 of each page's file, made before timing

    def encode(paths: list[str]) -> None:
        for path in paths:
            if path not in encoded:
                encoded[path] = base64.b64encode(Path(path).read_bytes()).decode("ascii")

    def theirs(query: str, paths: list[str]) -> list[float]:
        ranked = peer.rank(query, [encoded[p] for p in paths], doc_ids=list(range(len(paths))))
        scores = {r.document.doc_id: r.score for r in ranked.results}
        return [float(scores[i]) for i in range(len(paths))]

    theirs.encode = encode  # type: ignore[attr-defined]
    return theirs


def probe(settings: dict[str, Any]) -> None:
    """Child process: load one system, time it on the pages, print one JSON line."""
    import torch

    paths = [str(p) for p in page_files(Path(settings["pages_dir"]))[: settings["pages"]]]
    started = time.perf_counter()
    score = load_system(settings)
    load_seconds = time.perf_counter() - started
    if hasattr(score, "encode"):
        score.encode(paths)
    score(QUERY, paths[:WARM_UP_PAGES])
    passes, elapsed = 0, 0.0
    while passes == 0 or elapsed < settings["min_seconds"]:
        started = time.perf_counter()
        scores = score(QUERY, paths)
        elapsed += time.perf_counter() - started
        passes += 1
    result = {
        "system": settings["system"],
        "pages": len(paths),
        "pages_per_second": passes * len(paths) / elapsed,
        "passes": passes,
        "load_seconds": round(load_seconds, 2),
        "peak_rss_mib": round(peak_rss_mib()),
        "torch_threads": torch.get_num_threads(),
        "scores": scores,
    }
    if settings["device"].startswith("cuda"):
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(result))


def run_probe(settings: dict[str, Any]) -> dict[str, Any]:
    """Run ``probe`` in a fresh process; a failure becomes a row with its error."""
    done = subprocess.run(
        [sys.executable, __file__, "--probe", json.dumps(settings)],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {settings['system']} failed: {error}", file=sys.stderr)
        return {"system": settings["system"], "pages": settings["pages"], "error": error}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- the comparison -----------------------------------------------------------------------------


def compare(rows: list[dict[str, Any]]) -> None:
    """Add each row's speed and memory ratios and score difference against MonoVLMRanker's."""
    peer = next((r for r in rows if r["system"] == PEER and "error" not in r), None)
    for row in rows:
        if peer is None or "error" in row:
            continue
        row["speedup_vs_peer"] = row["pages_per_second"] / peer["pages_per_second"]
        row["rss_vs_peer"] = row["peak_rss_mib"] / peer["peak_rss_mib"]
        if row["system"] != PEER:
            row["max_abs_p_diff_vs_peer"] = max(
                abs(a - b) for a, b in zip(row["scores"], peer["scores"], strict=True)
            )


def fmt_diff(row: dict[str, Any]) -> str:
    diff = row.get("max_abs_p_diff_vs_peer")
    return "-" if diff is None else f"{diff:.1e}"


def text_table(models: list[dict[str, Any]]) -> str:
    lines = [
        f"{'model':<8}{'pages':>6}  {'system':<24}{'pages/s':>10}{'x peer':>9}"
        f"{'peak RSS MiB':>14}{'CUDA MiB':>10}{'max |dP|':>10}"
    ]
    for model in models:
        for row in model["rows"]:
            head = f"{model['label']:<8}{row['pages']:>6}  {row['system']:<24}"
            if "error" in row:
                lines.append(f"{head}failed: {row['error']}")
                continue
            lines.append(
                f"{head}{row['pages_per_second']:>10.2f}"
                f"{row.get('speedup_vs_peer', float('nan')):>8.2f}x"
                f"{row['peak_rss_mib']:>14}{row.get('peak_cuda_mib', '-'):>10}"
                f"{fmt_diff(row):>10}"
            )
    return "\n".join(lines)


def markdown_table(models: list[dict[str, Any]], device: str) -> str:
    cuda = device.startswith("cuda")
    header = "| Model | Pages | System | Pages/s | vs MonoVLMRanker | Peak RSS (MiB) |"
    rule = "|---|---:|---|---:|---:|---:|"
    if cuda:
        header += " Peak CUDA (MiB) |"
        rule += "---:|"
    lines = [header + " Max \\|ΔP(True)\\| |", rule + "---:|"]
    for model in models:
        for row in model["rows"]:
            cells = [model["label"], str(row["pages"]), row["system"]]
            if "error" in row:
                cells += ["failed", "", ""] + ([""] if cuda else []) + [""]
            else:
                cells += [
                    f"{row['pages_per_second']:.2f}",
                    f"{row['speedup_vs_peer']:.2f}x" if "speedup_vs_peer" in row else "-",
                    str(row["peak_rss_mib"]),
                ]
                if cuda:
                    cells.append(str(row.get("peak_cuda_mib", "-")))
                cells.append(fmt_diff(row))
            lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {m['label']}: {m['description']}; image tokens a page "
        f"{m['image_tokens']['min']}-{m['image_tokens']['max']} "
        f"(mean {m['image_tokens']['mean']:.0f})"
        for m in models
    ]
    return "\n".join([*lines, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny model, 10 pages: a quick check")
    parser.add_argument("--sizes", default="tiny,scaled", help="tiny, scaled (default both)")
    parser.add_argument("--pages", default="10,100", help="page counts (default 10,100)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="float32", choices=sorted(DTYPES), help="both systems (default float32)"
    )
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="timed passes last at least this long"
    )
    parser.add_argument(
        "--model", help="a real MonoQwen2-VL adapter or Qwen2-VL model (hub id or folder)"
    )
    parser.add_argument("--processor", help="with --model: the tokenizer and image processor")
    parser.add_argument(
        "--pages-dir", type=Path, help="time on these image files (name order) instead"
    )
    parser.add_argument("--out", type=Path, help=f"JSON results (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(json.loads(args.probe))
        return
    if args.small:
        args.sizes, args.pages = "tiny", "10"
    counts = sorted({int(n) for n in args.pages.split(",")})
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := set(sizes) - {"tiny", "scaled"}:
        parser.error(f"--sizes takes tiny and scaled, got {sorted(unknown)}")
    if args.processor and not args.model:
        parser.error("--processor goes with --model")
    if args.pages_dir:
        available = len(page_files(args.pages_dir))
        if available < counts[-1]:
            parser.error(f"{args.pages_dir} has {available} images, fewer than {counts[-1]}")
    work = Path(tempfile.mkdtemp(prefix="rerankit-multimodal-"))
    try:
        models = benchmark(args, counts, sizes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the scaled model takes ~260 MB
    print()
    print(text_table(models))
    print("\nMarkdown (RESULTS.md):\n")
    print(markdown_table(models, args.device))
    out = args.out or (OUT.with_name("multimodal-small.json") if args.small else OUT)
    write_report(out, args, models)
    print(f"\nwrote {out}")


def benchmark(
    args: argparse.Namespace, counts: list[int], sizes: list[str], work: Path
) -> list[dict[str, Any]]:
    """Build the models and pages in ``work``, then run every system on each page count."""
    if args.pages_dir:
        pages_dir = args.pages_dir.resolve()
    else:
        pages_dir = work / "pages"
        make_pages(pages_dir, counts[-1])
    paths = page_files(pages_dir)[: counts[-1]]
    models = []
    if args.model:
        processor = args.processor or "Qwen/Qwen2-VL-2B-Instruct"  # MonoVLMRanker's default
        models.append(
            {
                "label": args.model.rstrip("/").rsplit("/", 1)[-1],
                "model": args.model,
                "processor": processor,
                "explicit_processor": bool(args.processor),
                "description": f"{args.model} (processor {processor})",
            }
        )
    for size in [] if args.model else sizes:
        started = time.perf_counter()
        adapter, base = build(size, work)
        models.append(
            {
                "label": size,
                "model": str(adapter),
                "processor": str(base),
                "explicit_processor": False,
                "description": "LoRA (MonoQwen2-VL layout) over a random Qwen2-VL, "
                + describe(base),
            }
        )
        print(f"built {size} in {time.perf_counter() - started:.0f} s: {models[-1]['description']}")
    args.source = "synthetic pages" if args.pages_dir is None else str(pages_dir)
    print(f"{args.source}, {counts} pages for one query, on {args.device} ({args.dtype})\n")
    for model in models:
        model["image_tokens"] = image_tokens(model["processor"], paths)
        model["rows"] = []
        for n in counts:
            rows = []
            for system in SYSTEMS:
                settings = {
                    "system": system,
                    "pages": n,
                    "pages_dir": str(pages_dir),
                    "model": model["model"],
                    "processor": model["processor"],
                    "explicit_processor": model["explicit_processor"],
                    "device": args.device,
                    "dtype": args.dtype,
                    "min_seconds": args.min_seconds,
                }
                rows.append(run_probe(settings))
                if "error" not in rows[-1]:
                    print(
                        f"  {model['label']}, {n} pages, {system}: "
                        f"{rows[-1]['pages_per_second']:.2f} pages/s, "
                        f"{rows[-1]['peak_rss_mib']} MiB",
                        flush=True,
                    )
            compare(rows)
            model["rows"] += rows
    return models


def write_report(out: Path, args: argparse.Namespace, models: list[dict[str, Any]]) -> None:
    """The settings, the machine and every row (with its scores) as JSON."""
    import torch

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "query": QUERY,
        "pages": args.source,
        "device": args.device,
        "dtype": args.dtype,
        "min_seconds": args.min_seconds,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": _version("transformers"),
            "rerankers": _version("rerankers"),
        },
        "models": [{k: v for k, v in m.items() if k != "explicit_processor"} for m in models],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
