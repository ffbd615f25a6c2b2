from __future__ import annotations

import math
from pathlib import Path

import pytest

from rerankit.eval.first_stage import BM25, load_run, tokenize
from rerankit.eval.metrics import mean, paired_t_test, per_query

QRELS = {"q1": {"a": 2, "c": 1}, "q2": {"x": 1}}


def _dcg(gains: list[int]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def test_metrics_agree_with_the_definitions_on_hand_made_runs() -> None:
    rankings = {"q1": ["b", "a", "d", "c"], "q2": ["y", "z"]}
    values = per_query(rankings, QRELS)
    ideal = _dcg([2, 1])
    assert values["nDCG@10"]["q1"] == pytest.approx(_dcg([0, 2, 0, 1]) / ideal)
    assert values["RR@10"]["q1"] == pytest.approx(1 / 2)
    assert values["R@10"]["q1"] == pytest.approx(1.0)
    assert values["nDCG@10"]["q2"] == 0.0
    assert values["RR@10"]["q2"] == 0.0
    assert mean(values["R@10"]) == pytest.approx(0.5)


def test_paired_test_is_none_when_undefined_and_small_for_clear_gains() -> None:
    assert paired_t_test({"a": 1.0}, {"a": 0.5}) is None
    same = {str(i): i / 10 for i in range(10)}
    assert paired_t_test(same, same) is None
    better = {k: v + 0.2 + 0.01 * int(k) for k, v in same.items()}
    p = paired_t_test(same, better)
    assert p is not None
    assert p < 0.001


def test_tokenize_handles_languages_without_spaces() -> None:
    assert tokenize("Hello, World 42") == ["hello", "world", "42"]
    chinese = tokenize("检索增强生成")
    assert "检" in chinese
    assert "检索" in chinese
    thai = tokenize("ภาษาไทย")
    assert "ภา" in thai
    assert tokenize("BM25 和 中文") == ["bm25", "和", "中", "文", "中文"]


def test_bm25_returns_the_expected_documents() -> None:
    corpus = {
        "en": "the quick brown fox jumps over the lazy dog",
        "zh": "北京是中国的首都",
        "th": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
        "other": "a completely unrelated sentence about bread",
    }
    bm25 = BM25(corpus)
    assert bm25.search("lazy dog", 2)[0][0] == "en"
    assert bm25.search("中国首都", 2)[0][0] == "zh"
    assert bm25.search("เมืองหลวง", 2)[0][0] == "th"
    assert bm25.search("nothing matches zzz", 3) == []


def test_run_files(tmp_path: Path) -> None:
    trec = tmp_path / "run.trec"
    trec.write_text("q1 Q0 d2 1 3.5 sys\nq1 Q0 d1 2 7.0 sys\nq2 Q0 d9 1 1.0 sys\n")
    assert load_run(trec) == {"q1": [("d1", 7.0), ("d2", 3.5)], "q2": [("d9", 1.0)]}
    tsv = tmp_path / "run.tsv"
    tsv.write_text("qid\tdocid\tscore\nq1\td1\t0.5\n")
    assert load_run(tsv) == {"q1": [("d1", 0.5)]}
