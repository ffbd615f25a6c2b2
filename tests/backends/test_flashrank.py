"""The FlashRank backend and ``rerankit export`` against FlashRank's Ranker and the torch path."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flashrank
import numpy as np
import pytest
from flashrank import Ranker, RerankRequest
from scipy.stats import kendalltau

from rerankit import BackendError, ConfigurationError, Reranker
from rerankit.cli import main
from rerankit.export import export_onnx

QUERY = "Which proteins repair damaged DNA?"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    return export_onnx(str(tiny_bert_dir), tmp_path_factory.mktemp("onnx") / "tiny-bert")


@pytest.fixture
def flashrank_cache(tmp_path: Path) -> Iterator[Path]:
    """A FlashRank cache directory; registered names are removed again afterwards."""
    before = dict(flashrank.Config.model_file_map)
    yield tmp_path / "cache"
    flashrank.Config.model_file_map.clear()
    flashrank.Config.model_file_map.update(before)


def _install(folder: Path, cache: Path, name: str) -> Path:
    """Copy an exported folder into a FlashRank cache as ``name`` and register it there."""
    target = cache / name
    shutil.copytree(folder, target)
    (onnx_file,) = target.glob("*.onnx")
    flashrank.Config.model_file_map[name] = onnx_file.name
    return target


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_bert_two_label_dir", "tiny_xlmr_dir"])
def test_scores_equal_flashrank_ranker(
    fixture: str,
    request: pytest.FixtureRequest,
    flashrank_cache: Path,
    tmp_path: Path,
    scifact_texts: list[str],
) -> None:
    folder = export_onnx(str(request.getfixturevalue(fixture)), tmp_path / "export")
    _install(folder, flashrank_cache, f"test-{fixture}")
    passages = [{"id": i, "text": t} for i, t in enumerate([*scifact_texts[:25], ""])]
    before = copy.deepcopy(passages)
    theirs = Ranker(model_name=f"test-{fixture}", cache_dir=str(flashrank_cache)).rerank(
        RerankRequest(query=QUERY, passages=passages)
    )
    expected = [0.0] * len(before)
    for passage in theirs:
        expected[passage["id"]] = float(passage["score"])
    ours = Reranker(
        f"test-{fixture}", backend="flashrank", cache_dir=str(flashrank_cache), batch_size=4
    )
    texts = [p["text"] for p in before]
    assert ours.score(QUERY, texts) == pytest.approx(expected, abs=1e-5)
    assert np.ptp(expected) > 1e-4, "FlashRank's scores are flat: the test could not fail"
    assert "score" in passages[0], "FlashRank mutates its input (rerankit must not)"


def test_fp32_export_equals_the_torch_backend(
    minilm_reranker_dir: Path, tmp_path: Path, scifact_texts: list[str]
) -> None:
    folder = export_onnx(str(minilm_reranker_dir), tmp_path / "fp32")
    docs = scifact_texts[:24]
    torch_scores = Reranker(str(minilm_reranker_dir), normalize=True).score(QUERY, docs)
    onnx_scores = Reranker(str(folder)).score(QUERY, docs)
    assert onnx_scores == pytest.approx(torch_scores, abs=1e-4)
    raw = Reranker(str(folder), normalize=False).score(QUERY, docs)
    assert raw == pytest.approx(Reranker(str(minilm_reranker_dir)).score(QUERY, docs), abs=1e-4)


def test_int8_export_keeps_the_ranking(
    minilm_reranker_dir: Path, tmp_path: Path, scifact_texts: list[str]
) -> None:
    assert (
        main(["export", str(minilm_reranker_dir), str(tmp_path / "int8"), "--quantize", "int8"])
        == 0
    )
    assert [p.name for p in (tmp_path / "int8").glob("*.onnx")] == ["model_int8.onnx"]
    docs = scifact_texts[:40]
    fp32 = Reranker(str(minilm_reranker_dir), normalize=True).score(QUERY, docs)
    int8 = Reranker(str(tmp_path / "int8")).score(QUERY, docs)
    tau = kendalltau(fp32, int8).statistic
    assert tau > 0.8, f"int8 ranking disagrees: Kendall tau {tau:.3f}"


def test_batches_are_length_sorted_and_inputs_untouched(
    exported: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:30]
    snapshot = list(docs)
    one_pass = Reranker(str(exported), batch_size=64, max_batch_tokens=10**6).score(QUERY, docs)
    small = Reranker(str(exported), batch_size=3, max_batch_tokens=500).score(QUERY, docs)
    assert small == pytest.approx(one_pass, abs=1e-5)
    assert docs == snapshot


def test_truncation_is_reported(exported: Path) -> None:
    result = Reranker(str(exported), max_length=32).rank(QUERY, ["word " * 100, "short"])
    assert result.truncated == 1


def test_missing_named_model_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"put the model folder at .*ms-marco-TinyBERT-L-2-v2"):
        Reranker("ms-marco-TinyBERT-L-2-v2", cache_dir=str(tmp_path))


def test_model_file_choice_and_providers(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    shutil.copytree(exported, folder)
    shutil.copy(folder / "model.onnx", folder / "other.onnx")
    with pytest.raises(ConfigurationError, match="choose one with model_file="):
        Reranker(str(folder), backend="flashrank")
    assert (
        len(Reranker(str(folder), backend="flashrank", model_file="other.onnx").score("q", ["a"]))
        == 1
    )
    with pytest.raises(ConfigurationError, match="not available here"):
        Reranker(str(exported), providers=["CUDAExecutionProvider"])
    threads = Reranker(str(exported), intra_op_num_threads=1, inter_op_num_threads=1)
    assert len(threads.score("q", ["a", "b"])) == 2


def test_runs_without_torch(exported: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['transformers'] = None\n"
        "from rerankit import Reranker\n"
        f"print(Reranker({str(exported)!r}).rank('q', ['a', 'b']).backend)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "flashrank"
