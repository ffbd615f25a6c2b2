"""``rerankit eval``'s decision support on real text: first stages, depth, cache, traffic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rerankit.cli import main
from rerankit.eval.data import load_beir
from rerankit.eval.dense import DenseRetriever
from rerankit.eval.first_stage import reciprocal_rank_fusion
from rerankit.eval.runner import DenseSettings, FusionSettings, first_stage_runs
from tests import model_factory


def _eval(data: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main(["eval", str(data), "--no-progress", "--out", str(out), *extra]) == 0
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of texts of every corpus encoding call (sentence-transformers' own method)."""
    from sentence_transformers import SentenceTransformer

    calls: list[int] = []
    original = SentenceTransformer.encode_document

    def counted(self: Any, texts: list[str], **kwargs: Any) -> Any:
        calls.append(len(texts))
        return original(self, texts, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode_document", counted)
    return calls


def test_the_depth_curve_from_one_pass_equals_separate_runs(
    scifact_small: Path, tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reranker = ("--reranker", f"name=tiny,model={tiny_bert_dir},max_length=64")
    curve_run = _eval(
        scifact_small,
        tmp_path / "curve",
        *reranker,
        "--depths",
        "20,5,10",
        "--depth-timing-queries",
        "2",
        "--qps",
        "4",
    )
    tiny = curve_run["systems"][1]
    curve = tiny["depth_curve"]
    assert curve_run["settings"]["candidates"] == 20  # the deepest depth
    assert [p["depth"] for p in curve["points"]] == [5, 10, 20]
    for point in curve["points"][:-1]:  # the deepest is the full pass itself, below
        separate = _eval(
            scifact_small,
            tmp_path / f"at{point['depth']}",
            *reranker,
            "--candidates",
            str(point["depth"]),
        )["systems"][1]
        for metric in ("nDCG@10", "R@10"):
            assert point["metrics"][metric] == pytest.approx(separate["metrics"][metric])
        assert point["pairs_per_query"] == separate["pairs"] / 10
    deepest = curve["points"][-1]
    for metric in ("nDCG@10", "R@10"):
        assert deepest["metrics"][metric] == pytest.approx(tiny["metrics"][metric])
    assert all(p["latency_ms"]["p50"] > 0 and p["processes_at_qps"] >= 1 for p in curve["points"])
    assert curve["latency"] == "measured"
    assert curve["timed_queries"] == 2
    best = max(p["metrics"]["nDCG@10"] for p in curve["points"])
    within = [p["depth"] for p in curve["points"] if p["metrics"]["nDCG@10"] >= 0.99 * best]
    assert curve["smallest_depth_within_tolerance"] == min(within)
    assert (tmp_path / "curve" / "depth_curve.png").stat().st_size > 1000
    table = (tmp_path / "curve" / "report.md").read_text()
    assert "**Candidate depth.**" in table
    assert "p50 of real calls on the first 2 queries" in table
    capsys.readouterr()


def test_dense_and_hybrid_first_stages_are_each_reranked(
    scifact_small: Path,
    tiny_bert_dir: Path,
    tmp_path: Path,
    encode_calls: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    minilm = str(model_factory.minilm_dir())
    report = _eval(
        scifact_small,
        tmp_path / "out",
        *("--first-stage", "bm25,dense", "--first-stage", "hybrid", "--dense-model", minilm),
        *("--cache-dir", str(tmp_path / "cache"), "--candidates", "20", "--max-queries", "6"),
        *("--reranker", f"name=tiny,model={tiny_bert_dir},max_length=64", "--qps", "3"),
    )
    systems = report["systems"]
    assert [(s["first_stage"], s["name"]) for s in systems] == [
        (None, "BM25"),
        ("BM25", "tiny"),
        (None, "dense"),
        ("dense", "tiny"),
        (None, "hybrid"),
        ("hybrid", "tiny"),
    ]
    assert report["schema"] == "rerankit.eval/2"
    stages = {s["name"]: s for s in systems if s["first_stage"] is None}
    assert stages["dense"]["retriever"]["encoded_documents"] == 30
    assert stages["dense"]["retriever"]["similarity"] == "cosine"
    assert stages["hybrid"]["retriever"]["k"] == 60
    assert encode_calls == [30]  # the corpus once, shared by dense and hybrid
    for system in systems:
        if system["first_stage"] is None:
            continue
        stage = stages[system["first_stage"]]
        # Reranked the stage's own candidates: the same recall@100 on every query.
        assert system["per_query"]["R@100"] == stage["per_query"]["R@100"]
        assert system["lift"]["nDCG@10"] == pytest.approx(
            system["metrics"]["nDCG@10"] - stage["metrics"]["nDCG@10"]
        )
        outcome = system["wins_and_losses"]
        assert outcome["wins"] + outcome["ties"] + outcome["losses"] == 6
        assert system["traffic"]["kind"] == "local"
        assert system["traffic"]["processes"] >= 1
        assert system["cutoff"]["scale"] == "logit"
    # ... which tells the stages apart: BM25 misses an abstract that dense finds.
    assert stages["BM25"]["per_query"]["R@100"] != stages["dense"]["per_query"]["R@100"]
    table = (tmp_path / "out" / "report.md").read_text()
    assert "| hybrid | tiny |" in table
    assert "hybrid: RRF (k=60) of BM25 and dense" in table
    assert "**At 3 queries/s**" in table
    # A second run reads the corpus embeddings from the cache: nothing is encoded again.
    again = _eval(
        scifact_small,
        tmp_path / "again",
        *("--first-stage", "dense", "--dense-model", minilm, "--max-queries", "2"),
        *("--cache-dir", str(tmp_path / "cache")),
    )["systems"][0]
    assert encode_calls == [30]
    assert again["retriever"]["encoded_documents"] == 0
    assert again["retriever"]["embedding_cache"] == stages["dense"]["retriever"]["embedding_cache"]
    for qid, value in again["per_query"]["nDCG@10"].items():
        assert value == stages["dense"]["per_query"]["nDCG@10"][qid]
    capsys.readouterr()


def test_the_embedding_cache_is_keyed_by_corpus_and_prefix(
    scifact_small: Path, tmp_path: Path, encode_calls: list[int]
) -> None:
    data = load_beir(scifact_small, max_queries=4)
    model = str(model_factory.minilm_dir())
    dense = DenseSettings(model=model, cache_dir=tmp_path)
    bm25, dense_run, hybrid = first_stage_runs(
        data, ["bm25", "dense", "hybrid"], candidates=10, dense=dense, fusion=FusionSettings(k=5)
    )
    for qid in data.queries:
        lists = [[(d, 0.0) for d in run.rankings[qid]] for run in (bm25, dense_run)]
        fused = [d for d, _ in reciprocal_rank_fusion(lists, k=5)][:10]
        assert hybrid.rankings[qid] == fused
    assert encode_calls == [30]
    assert DenseRetriever(data.corpus, model, cache_dir=tmp_path).encoded == 0  # reused
    assert encode_calls == [30]
    changed = dict(data.corpus)
    changed[next(iter(changed))] += " One more sentence."
    assert DenseRetriever(changed, model, cache_dir=tmp_path).encoded == 30
    assert encode_calls == [30, 30]  # another corpus: encoded again
    DenseRetriever(data.corpus, model, passage_prefix="passage: ", cache_dir=tmp_path)
    assert encode_calls == [30, 30, 30]  # another passage prefix: other embeddings
    assert len(list(tmp_path.glob("*.npy"))) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--first-stage", "dense"], "--first-stage dense and hybrid need --dense-model"),
        (["--first-stage", "bm25,no-such-run.trec"], "nor a run file that exists"),
        (["--first-stage", "bm25", "--first-stage", "bm25"], "repeats bm25"),
        (["--depths", "10,200", "--candidates", "100"], "--depths go up to 200"),
        (["--depths", "ten"], "--depths takes whole numbers"),
        (["--target-recall", "0"], "--target-recall must be in (0, 1]"),
        (["--rrf-weights", "1"], "--rrf-weights takes two numbers"),
        (["--qps", "0"], "--qps must be a number > 0"),
    ],
)
def test_bad_decision_flags_fail_before_any_work(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "not-a-beir-folder"  # reading it would fail: the flags fail first
    assert main(["eval", str(missing), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rerankit eval: ConfigurationError: ")
    assert message in err
