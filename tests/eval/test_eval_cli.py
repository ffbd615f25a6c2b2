"""``rerankit eval`` end to end on a small real subset, twice: stable schema, same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerankit.cli import main
from tests.conftest import SHARED_DATA

KEYS = {
    "name",
    "first_stage",
    "retriever",
    "backend",
    "scale",
    "device",
    "lift",
    "config",
    "metrics",
    "p_value_vs_first_stage",
    "latency_ms",
    "pairs",
    "pairs_per_second",
    "usage",
    "usage_per_query",
    "per_query",
    "wins_and_losses",
    "worst_queries",
    "depth_curve",
    "cutoff",
    "traffic",
}


@pytest.mark.parametrize("dataset", ["cranfield", "cmrc2018-sent"])
def test_eval_on_a_real_subset(
    dataset: str, tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rerankers.yaml"
    config.write_text(
        f"rerankers:\n  - name: tiny\n    model: {tiny_bert_dir}\n    backend: cross-encoder\n"
    )
    reports = []
    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        args = [
            "eval",
            str(SHARED_DATA / dataset),
            "--config",
            str(config),
            "--reranker",
            f"name=tiny-normalized,model={tiny_bert_dir},normalize=true,batch_size=16",
            "--candidates",
            "20",
            "--max-queries",
            "8",
            "--out",
            str(out),
        ]
        assert main(args) == 0
        reports.append(json.loads((out / "report.json").read_text()))
        assert (out / "quality_vs_latency.png").stat().st_size > 1000
        assert "| BM25 | - |" in (out / "report.md").read_text()
    first, second = reports
    assert first["schema"] == "rerankit.eval/2"
    assert [s["name"] for s in first["systems"]] == ["BM25", "tiny", "tiny-normalized"]
    for system in first["systems"]:
        assert set(system) == KEYS
        assert set(system["metrics"]) == {"nDCG@10", "RR@10", "R@10", "R@100"}
        assert len(system["per_query"]["nDCG@10"]) == 8
    assert first["systems"][2]["config"]["normalize"] is True
    assert first["systems"][1]["pairs"] > 0
    assert first["systems"][0]["retriever"] == {"kind": "bm25", "k1": 0.9, "b": 0.4}
    assert [s["first_stage"] for s in first["systems"]] == [None, "BM25", "BM25"]
    assert first["systems"][1]["scale"] == "logit"
    assert first["systems"][2]["scale"] == "probability"
    assert 0 < first["systems"][2]["cutoff"]["threshold"] < 1  # on the probability scale
    # Deterministic: the same inputs give the same quality numbers.
    for a, b in zip(first["systems"], second["systems"], strict=True):
        assert a["metrics"] == b["metrics"]
        assert a["per_query"] == b["per_query"]
        assert a["wins_and_losses"] == b["wins_and_losses"]  # the bootstrap is seeded
        assert a["cutoff"] == b["cutoff"]
    # A reranker only reorders the candidates: recall@100 over 20 candidates cannot change.
    recalls = {s["metrics"]["R@100"] for s in first["systems"]}
    assert len(recalls) == 1
    assert "nDCG@10" in capsys.readouterr().out


def test_eval_reads_the_configs_serve_reads(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One loader: a serve file (models: map) evaluates as is; names stay unique."""
    config = tmp_path / "models.json"
    config.write_text(
        json.dumps({"models": {"tiny": {"model": str(tiny_bert_dir), "batch_size": "8"}}})
    )
    base = ["eval", str(SHARED_DATA / "cranfield"), "--config", str(config), "--no-progress"]
    out = tmp_path / "out"
    args = [*base, "--max-queries", "2", "--candidates", "5", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["BM25", "tiny"]
    assert report["settings"]["rerankers"][0]["batch_size"] == 8
    assert main([*base, "--reranker", f"name=tiny,model={tiny_bert_dir}"]) == 2
    assert "two rerankers are named 'tiny'" in capsys.readouterr().err


def test_every_reranker_is_checked_before_the_first_stage_runs(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "not-a-beir-folder"  # reading it would fail: the options fail first
    good = f"name=good,model={tiny_bert_dir}"
    bad = f"name=bad,model={tiny_bert_dir},max_batch_tokens=lots"
    assert main(["eval", str(missing), "--reranker", good, "--reranker", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rerankit eval: ConfigurationError: bad: option max_batch_tokens takes")
    assert err.count("\n") == 1
    # The report records every config, so a literal API key fails now, and is never shown.
    literal = "model=jina-reranker-v2-base-multilingual,api_key=sk-never-shown,batch_size=x"
    assert main(["eval", str(missing), "--reranker", literal]) == 2
    err = capsys.readouterr().err
    assert "--reranker 1: option batch_size takes an int, got 'x'" in err
    assert "sk-never-shown" not in err
    assert main(["eval", str(missing), "--reranker", literal.replace(",batch_size=x", "")]) == 2
    err = capsys.readouterr().err
    assert "Refusing to serialise a literal API key" in err
    assert "sk-never-shown" not in err
