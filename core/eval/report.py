"""The evaluation report: one JSON document with every number, a Markdown table and a plot."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rerankit.eval.data import RetrievalSet
from rerankit.eval.metrics import METRICS, mean, paired_t_test, per_query
from rerankit.eval.runner import SystemRun

SCHEMA = "rerankit.eval/1"
PACKAGES = ("rerankit", "torch", "transformers", "onnxruntime", "bm25s", "ir-measures")


def build_report(
    data: RetrievalSet, systems: list[SystemRun], *, settings: dict[str, Any]
) -> dict[str, Any]:
    """Metrics per query and on average, significance against the first stage, costs."""
    baseline = per_query(systems[0].rankings, data.qrels)
    entries = []
    for position, system in enumerate(systems):
        values = baseline if position == 0 else per_query(system.rankings, data.qrels)
        entry: dict[str, Any] = {
            "name": system.name,
            "backend": system.backend,
            "config": system.config,
            "metrics": {m: mean(values[m]) for m in METRICS},
            "p_value_vs_first_stage": {
                m: None if position == 0 else paired_t_test(baseline[m], values[m]) for m in METRICS
            },
            "latency_ms": system.latency,
            "pairs": system.pairs,
            "pairs_per_second": system.pairs_per_second,
            "usage": system.usage,
            "usage_per_query": _per_query(system.usage, len(system.latencies_ms)),
            "per_query": values,
        }
        entries.append(entry)
    return {
        "schema": SCHEMA,
        "dataset": {
            "name": data.name,
            "documents": len(data.corpus),
            "queries": len(data.queries),
        },
        "settings": settings,
        "environment": environment(),
        "systems": entries,
    }


def _per_query(usage: dict[str, float], queries: int) -> dict[str, float]:
    """Each usage figure (tokens, cost, windows) as the mean over the queries ranked."""
    return {key: value / queries for key, value in usage.items()} if queries else {}


def environment() -> dict[str, Any]:
    """Machine and package versions, so that numbers can be read in context."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def markdown(report: dict[str, Any]) -> str:
    """A Markdown table; † marks p < 0.05 (paired t-test) against the first stage.

    Latency, tokens and cost are per query (tokens: what the backend reported, e.g. a service's
    billed tokens or a chat model's prompt and answer tokens).
    """
    header = (
        "| system | nDCG@10 | MRR@10 | R@10 | R@100 | p50 ms | p95 ms | pairs/s "
        "| tokens/query | cost/query |"
    )
    lines = [
        f"**{report['dataset']['name']}**: {report['dataset']['queries']} queries, "
        f"{report['dataset']['documents']} documents, "
        f"top {report['settings']['candidates']} candidates",
        "",
        header,
        "|" + "---|" * 10,
    ]
    for system in report["systems"]:
        cells = [system["name"]]
        for metric in METRICS:
            p = system["p_value_vs_first_stage"][metric]
            cells.append(
                f"{system['metrics'][metric]:.3f}{'†' if p is not None and p < 0.05 else ''}"
            )
        latency = system["latency_ms"]
        usage = system["usage_per_query"]
        cells += [
            f"{latency['p50']:.1f}",
            f"{latency['p95']:.1f}",
            f"{system['pairs_per_second']:.0f}" if system["pairs"] else "-",
            f"{usage['total_tokens']:.0f}" if "total_tokens" in usage else "-",
            f"{usage['cost']:.6f}" if "cost" in usage else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "† p < 0.05, paired t-test against the first stage over the same queries."]
    return "\n".join(lines)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``quality_vs_latency.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "plot": out / "quality_vs_latency.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    paths["markdown"].write_text(markdown(report) + "\n", encoding="utf-8")
    plot(report, paths["plot"])
    return paths


def plot(report: dict[str, Any], path: Path) -> None:
    """nDCG@10 against p50 latency per query, one point per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for system in report["systems"]:
        x, y = max(system["latency_ms"]["p50"], 0.01), system["metrics"]["nDCG@10"]
        ax.scatter([x], [y])
        ax.annotate(system["name"], (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.1)  # room for the labels
    ax.set_xlabel("p50 latency per query (ms, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"{report['dataset']['name']}: quality vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
