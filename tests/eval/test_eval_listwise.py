"""``rerankit eval`` with the listwise backend on a chat server: quality, latency, tokens, cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerankit.cli import main
from tests.backends.chat_server import running_chat_server, shared_words
from tests.conftest import SHARED_DATA


def test_eval_reports_tokens_and_cost_per_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_chat_server() as server:
        server.rule = shared_words
        spec = (
            f"name=listwise,model=rank-zephyr,backend=listwise,base_url={server.url},"
            "price_per_million_input_tokens=0.5,price_per_million_output_tokens=2"
        )
        out = tmp_path / "out"
        args = [
            "eval",
            str(SHARED_DATA / "cranfield"),
            "--reranker",
            spec,
            "--candidates",
            "25",
            "--max-queries",
            "3",
            "--no-progress",
            "--qps",
            "2",
            "--out",
            str(out),
        ]
        assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    bm25, listwise = report["systems"]
    assert listwise["backend"] == "listwise"
    assert len(server.requests) == 3 * 2 + 1  # two windows a query, and the untimed warm-up
    per_query = listwise["usage_per_query"]
    assert per_query["windows"] == 2
    assert per_query["unparsed_windows"] == 0
    assert per_query["prompt_tokens"] > 0
    assert per_query["completion_tokens"] > 0
    usage = listwise["usage"]
    cost = (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 2) / 1e6
    assert per_query["cost"] == pytest.approx(cost / 3)
    assert listwise["latency_ms"]["p50"] > 0
    assert listwise["metrics"]["R@100"] == bm25["metrics"]["R@100"]  # reordered, not replaced
    table = (out / "report.md").read_text()
    assert "| tokens/query | cost/query |" in table
    row = next(line for line in table.splitlines() if line.startswith("| BM25 | listwise |"))
    assert f"| {per_query['total_tokens']:.0f} | {per_query['cost']:.6f} |" in row
    # At 2 queries/s around the clock: the bill from the measured tokens and the prices.
    load = listwise["traffic"]
    assert load["kind"] == "api"
    assert load["tokens_per_day"] == pytest.approx(per_query["total_tokens"] * 2 * 86_400)
    assert load["cost_per_day"] == pytest.approx(per_query["cost"] * 2 * 86_400)
    assert load["cost_per_month"] == pytest.approx(load["cost_per_day"] * 30)
    assert f"| {load['cost_per_month']:,.2f} |" in table
    # An order is not a score: no threshold is offered.
    assert listwise["scale"] == "rank"
    assert listwise["cutoff"]["applies"] is False
    assert "does not apply" in table
