"""The evaluation report: one JSON document with every number, a Markdown report and plots."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.eval.analysis import (
    DAYS_PER_MONTH,
    AnalysisSettings,
    cutoff,
    depth_curve,
    traffic,
    wins_and_losses,
    worst_queries,
)
from rerankit.eval.data import RetrievalSet
from rerankit.eval.dense import short_name
from rerankit.eval.metrics import METRICS, mean, paired_t_test, per_query
from rerankit.eval.runner import SystemRun

SCHEMA = "rerankit.eval/2"
PACKAGES = (
    "rerankit",
    "torch",
    "transformers",
    "onnxruntime",
    "bm25s",
    "ir-measures",
    "sentence-transformers",
)


def build_report(
    data: RetrievalSet,
    systems: list[SystemRun],
    *,
    settings: dict[str, Any],
    analysis: AnalysisSettings | None = None,
) -> dict[str, Any]:
    """Metrics per query and on average; each reranker against the first stage it reranked.

    A reranker's entry adds its lift, wins and losses with a bootstrap CI, the most hurt
    queries, the score cut-off for ``analysis.target_recall``, the depth curve (when
    ``analysis.depths``) and the capacity or bill at ``analysis.qps`` (when set).
    """
    analysis = AnalysisSettings() if analysis is None else analysis
    stages = {s.name: s for s in systems if s.first_stage is None}
    values = {id(s): per_query(s.rankings, data.qrels) for s in systems}
    entries = []
    for system in systems:
        own = values[id(system)]
        stage = None if system.first_stage is None else stages[system.first_stage]
        base = None if stage is None else values[id(stage)]
        entry: dict[str, Any] = {
            "name": system.name,
            "first_stage": system.first_stage,
            "retriever": system.retriever,
            "backend": system.backend,
            "config": system.config,
            "scale": system.scale,
            "device": system.device,
            "metrics": {m: mean(own[m]) for m in METRICS},
            "lift": None if base is None else {m: mean(own[m]) - mean(base[m]) for m in METRICS},
            "p_value_vs_first_stage": {
                m: None if base is None else paired_t_test(base[m], own[m]) for m in METRICS
            },
            "latency_ms": system.latency,
            "pairs": system.pairs,
            "pairs_per_second": system.pairs_per_second,
            "usage": system.usage,
            "usage_per_query": _per_query(system.usage, len(system.latencies_ms)),
            "per_query": own,
            "wins_and_losses": None,
            "worst_queries": None,
            "depth_curve": None,
            "cutoff": None,
            "traffic": None,
        }
        if stage is not None and base is not None:
            entry.update(_decisions(data, system, stage, base, own, analysis))
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


def _decisions(
    data: RetrievalSet,
    system: SystemRun,
    stage: SystemRun,
    base: dict[str, dict[str, float]],
    own: dict[str, dict[str, float]],
    analysis: AnalysisSettings,
) -> dict[str, Any]:
    """The decision numbers of one reranker on one first stage (see :mod:`.analysis`)."""
    top_k = None if system.config is None else system.config.get("top_k")
    per_process = system.pairs_per_second / system.processes
    decisions: dict[str, Any] = {
        "wins_and_losses": wins_and_losses(
            base["nDCG@10"], own["nDCG@10"], seed=analysis.seed, resamples=analysis.resamples
        ),
        "worst_queries": worst_queries(
            data.queries,
            data.qrels,
            stage.rankings,
            system.rankings,
            base["nDCG@10"],
            own["nDCG@10"],
            count=analysis.worst,
        ),
        "cutoff": cutoff(
            stage.rankings,
            system.scores,
            data.qrels,
            scale=system.scale,
            target_recall=analysis.target_recall,
            top_k=analysis.cutoff_top_k,
        ),
    }
    if analysis.depths:
        curve = depth_curve(
            stage.rankings,
            system.scores,
            data.qrels,
            analysis.depths,
            top_k=top_k,
            measured_ms=system.depth_latencies_ms,
            pairs_per_second=per_process,
            tolerance=analysis.tolerance,
        )
        if analysis.qps is not None and not system.remote:
            for point in curve["points"]:
                seconds = point["latency_ms"]["mean"] / 1000
                point["processes_at_qps"] = math.ceil(round(analysis.qps * seconds, 9))
        decisions["depth_curve"] = curve
    if analysis.qps is not None:
        queries = len(system.latencies_ms)
        decisions["traffic"] = traffic(
            qps=analysis.qps,
            remote=system.remote,
            pairs_per_query=system.pairs / queries if queries else 0.0,
            pairs_per_second=system.pairs_per_second,
            usage_per_query=_per_query(system.usage, queries),
            processes=system.processes,
            device=system.device,
        )
    return decisions


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


def _label(system: dict[str, Any], report: dict[str, Any]) -> str:
    """A row's name; a reranker's is prefixed by its first stage when there are several."""
    stages = sum(1 for s in report["systems"] if s["first_stage"] is None)
    if system["first_stage"] is None or stages == 1:
        return str(system["name"])
    return f"{system['first_stage']} → {system['name']}"


def markdown(report: dict[str, Any]) -> str:
    """The quality table, then depth, cut-off, most-hurt-query and traffic sections.

    † marks p < 0.05 (paired t-test) against the row's first stage. Latency, tokens and cost are
    per query (tokens: what the backend reported, e.g. a service's billed tokens or a chat
    model's prompt and answer tokens).
    """
    settings = report["settings"]
    rerankers = [s for s in report["systems"] if s["first_stage"] is not None]
    lines = [_title(report), "", *_quality(report)]
    if any(s["depth_curve"] for s in rerankers):
        lines += ["", *_depths(report, rerankers)]
    if rerankers:
        lines += ["", *_cutoffs(report, rerankers, settings)]
    if any(s["worst_queries"] for s in rerankers):
        lines += ["", *_worst(report, rerankers)]
    if any(s["traffic"] for s in rerankers):
        lines += ["", *_traffic(report, rerankers, settings)]
    return "\n".join(lines)


def _title(report: dict[str, Any]) -> str:
    dataset, settings = report["dataset"], report["settings"]
    stages = [s for s in report["systems"] if s["first_stage"] is None]
    described = []
    for stage in stages:
        retriever = stage["retriever"] or {}
        if retriever.get("kind") == "dense":
            described.append(f"dense: {short_name(retriever['model'])}")
        elif retriever.get("kind") == "hybrid":
            weights = retriever["weights"]
            weighted = "" if set(weights.values()) == {1.0} else f", weights {weights}"
            described.append(f"hybrid: RRF (k={retriever['k']:g}{weighted}) of BM25 and dense")
    details = f" ({'; '.join(described)})" if described else ""
    return (
        f"**{dataset['name']}**: {dataset['queries']} queries, {dataset['documents']} documents, "
        f"top {settings['candidates']} candidates{details}"
    )


def _quality(report: dict[str, Any]) -> list[str]:
    header = (
        "| first stage | reranker | nDCG@10 | Δ nDCG@10 [95% CI] | W/T/L | MRR@10 | R@10 | R@100 "
        "| p50 ms | p95 ms | pairs/s | tokens/query | cost/query |"
    )
    lines = [header, "|" + "---|" * 13]
    for system in report["systems"]:
        reranker = system["first_stage"] is not None
        cells = [system["first_stage"] or system["name"], system["name"] if reranker else "-"]
        metrics = []
        for metric in METRICS:
            p = system["p_value_vs_first_stage"][metric]
            metrics.append(
                f"{system['metrics'][metric]:.3f}{'†' if p is not None and p < 0.05 else ''}"
            )
        cells += [metrics[0], *_lift(system), *metrics[1:]]
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
    bootstrap = next(
        (s["wins_and_losses"]["bootstrap"] for s in report["systems"] if s["wins_and_losses"]), None
    )
    lines += ["", "† p < 0.05, paired t-test against the row's first stage over the same queries."]
    if bootstrap is not None:
        lines.append(
            "Δ: mean nDCG@10 change over the first stage, with a paired bootstrap 95% CI "
            f"({bootstrap['method']}, {bootstrap['resamples']:,} resamples, seed "
            f"{bootstrap['seed']}); W/T/L: queries whose nDCG@10 rose / stayed / fell."
        )
    return lines


def _lift(system: dict[str, Any]) -> list[str]:
    outcome = system["wins_and_losses"]
    if outcome is None:
        return ["", ""]
    interval = outcome["ci95"]
    ci = "" if interval is None else f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return [
        f"{system['lift']['nDCG@10']:+.3f}{ci}",
        f"{outcome['wins']}/{outcome['ties']}/{outcome['losses']}",
    ]


def _depths(report: dict[str, Any], rerankers: list[dict[str, Any]]) -> list[str]:
    curves = [(s, s["depth_curve"]) for s in rerankers if s["depth_curve"]]
    first = curves[0][1]
    if first["latency"] == "measured":
        how = (
            f"p50 of real calls on the first {first['timed_queries']} queries, a fresh reranker "
            "(empty caches) at each depth"
        )
    else:
        how = "estimated: pairs per query / pairs per second of the full pass"
    qps = report["settings"].get("qps")
    lines = [
        "**Candidate depth.** Quality from one scoring pass over the top "
        f"{report['settings']['candidates']} (at depth d the first stage's top d keep their "
        f"scores, re-sorted); latency per query: {how}. "
        f"Bold: the smallest depth within {first['tolerance']:.0%} of the best nDCG@10.",
        "",
        "| first stage | reranker | depth | nDCG@10 | R@10 | ms/query |"
        + (f" processes at {qps:g} q/s |" if qps is not None else ""),
        "|" + "---|" * (7 if qps is not None else 6),
    ]
    for system, curve in curves:
        for point in curve["points"]:
            latency = point["latency_ms"]
            depth = f"{point['depth']}"
            if point["depth"] == curve["smallest_depth_within_tolerance"]:
                depth = f"**{depth}**"
            cells = [
                system["first_stage"],
                system["name"],
                depth,
                f"{point['metrics']['nDCG@10']:.3f}",
                f"{point['metrics']['R@10']:.3f}",
                f"{latency.get('p50', latency['mean']):.1f}",
            ]
            if qps is not None:
                cells.append(str(point.get("processes_at_qps", "-")))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cutoffs(
    report: dict[str, Any], rerankers: list[dict[str, Any]], settings: dict[str, Any]
) -> list[str]:
    target, top_k = settings["target_recall"], settings["cutoff_top_k"]
    lines = [
        f"**Score cut-offs.** The highest score threshold that keeps {target:.0%} of the "
        f"judged-relevant documents each reranker puts in its top {top_k}, on the reranker's own "
        "score scale. It holds for this data set: check it on your own queries before you ship it.",
        "",
        "| first stage | reranker | scale | threshold | relevant kept | documents kept / query "
        f"| queries left empty | judged recall, top {top_k} → cut |",
        "|" + "---|" * 8,
    ]
    for system in rerankers:
        cut = system["cutoff"]
        cells = [system["first_stage"], system["name"], str(cut["scale"])]
        if cut["applies"]:
            cells += [
                f"{cut['threshold']:.4g}",
                f"{cut['relevant_kept']}/{cut['relevant_in_top_k']}",
                f"{cut['documents_kept_per_query']:.1f} of "
                f"{cut['documents_in_top_k_per_query']:.1f}",
                str(cut["queries_with_nothing_kept"]),
                f"{cut['judged_recall_before']:.3f} → {cut['judged_recall_after']:.3f}",
            ]
        else:
            cells += [f"does not apply: {cut['reason']}", "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _worst(report: dict[str, Any], rerankers: list[dict[str, Any]]) -> list[str]:
    lines = [
        "**Most hurt queries** (nDCG@10 first stage → reranked; rank of the first relevant "
        "document, first stage → reranked, '-' when not in the list).",
        "",
        "| first stage | reranker | query | text | nDCG@10 | first relevant rank |",
        "|" + "---|" * 6,
    ]
    for system in rerankers:
        for hurt in system["worst_queries"] or []:
            text = hurt["query"] if len(hurt["query"]) <= 80 else hurt["query"][:79] + "…"
            ranks = hurt["first_relevant_rank"]
            cells = [
                system["first_stage"],
                system["name"],
                hurt["query_id"],
                text.replace("|", "\\|"),
                f"{hurt['nDCG@10']['first_stage']:.3f} → {hurt['nDCG@10']['reranked']:.3f}",
                f"{ranks['first_stage'] or '-'} → {ranks['reranked'] or '-'}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _traffic(
    report: dict[str, Any], rerankers: list[dict[str, Any]], settings: dict[str, Any]
) -> list[str]:
    qps = settings["qps"]
    cpus = report["environment"]["cpus"]
    lines = [
        f"**At {qps:g} queries/s** and {settings['candidates']} candidates per query. Local: "
        f"processes like the measured one (this machine: {cpus} CPUs; its device below), at the "
        "measured throughput and full utilisation, so add headroom. APIs: at that rate around "
        f"the clock, a month of {DAYS_PER_MONTH} days.",
        "",
        "| first stage | reranker | device | pairs/s per process | processes | tokens/query "
        "| requests/s | cost/day | cost/month |",
        "|" + "---|" * 9,
    ]
    for system in rerankers:
        load = system["traffic"]
        cells = [system["first_stage"], system["name"]]
        if load["kind"] == "local":
            cells += [
                str(load["device"] or "-"),
                f"{load['pairs_per_second_per_process']:.0f}",
                str(load["processes"] if load["processes"] is not None else "-"),
                "-",
                "-",
                "-",
                "-",
            ]
        else:
            cells += [
                "API",
                "-",
                "-",
                _number(load["tokens_per_query"], ".0f"),
                _number(load["requests_per_second"], ".1f"),
                _number(load["cost_per_day"], ",.2f"),
                _number(load["cost_per_month"], ",.2f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(
        s["traffic"]["kind"] == "api" and s["traffic"]["cost_per_query"] is None for s in rerankers
    ):
        lines += ["", "No cost without a price: set the backend's price_per_million_* option."]
    return lines


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """``report.json``, ``report.md``, ``quality_vs_latency.png`` and, with depths,
    ``depth_curve.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "plot": out / "quality_vs_latency.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    paths["markdown"].write_text(markdown(report) + "\n", encoding="utf-8")
    plot(report, paths["plot"])
    if any(s["depth_curve"] for s in report["systems"]):
        paths["depth_plot"] = out / "depth_curve.png"
        plot_depths(report, paths["depth_plot"])
    return paths


def _pyplot() -> Any:
    matplotlib: Any = require("matplotlib", extra="eval", purpose="rerankit eval's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(report: dict[str, Any], path: Path) -> None:
    """nDCG@10 against p50 latency per query, one point per system."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for system in report["systems"]:
        x, y = max(system["latency_ms"]["p50"], 0.01), system["metrics"]["nDCG@10"]
        ax.scatter([x], [y])
        ax.annotate(_label(system, report), (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.1)  # room for the labels
    ax.set_xlabel("p50 latency per query (ms, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"{report['dataset']['name']}: quality vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_depths(report: dict[str, Any], path: Path) -> None:
    """nDCG@10 and latency per query against the candidate depth, one line per reranker."""
    plt = _pyplot()
    depths = report["settings"]["depths"]
    curves = [(s, s["depth_curve"]) for s in report["systems"] if s["depth_curve"]]
    fig, (quality, latency) = plt.subplots(1, 2, figsize=(10, 4))
    for system, curve in curves:
        name = f"{system['first_stage']} → {system['name']}"
        ndcg = [p["metrics"]["nDCG@10"] for p in curve["points"]]
        ms = [p["latency_ms"].get("p50", p["latency_ms"]["mean"]) for p in curve["points"]]
        quality.plot(depths, ndcg, marker="o", label=name)
        latency.plot(depths, ms, marker="o", label=name)
    for ax in (quality, latency):
        ax.set_xscale("log")
        ax.set_xticks(depths, [str(d) for d in depths])  # the depths, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel("candidates reranked per query (log scale)")
    measured = curves[0][1]["latency"] == "measured"
    quality.set_ylabel("nDCG@10")
    latency.set_ylabel(f"ms per query ({'measured, p50' if measured else 'estimated'})")
    quality.legend(fontsize=8)
    fig.suptitle(f"{report['dataset']['name']}: quality and latency against depth")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
