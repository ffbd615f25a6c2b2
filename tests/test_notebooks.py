"""Every notebook runs top to bottom offline (with a stand-in model) and draws its plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
RAG_NOTEBOOKS = sorted(FOLDER.glob("*_rag.ipynb"))


def _execute(path: Path) -> str:
    """Run a notebook in its folder; return everything its cells printed."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )


def test_notebook_helpers_score_like_rerankit_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The notebooks' data, BM25 and nDCG@10 are rerankit eval's: the same numbers per query."""
    from rerankit.cli import main
    from tests.conftest import SHARED_DATA

    monkeypatch.syspath_prepend(str(FOLDER))
    import rag_helpers

    data = rag_helpers.load_set("scifact", max_queries=8)
    bm25 = rag_helpers.BM25(data.corpus)
    rankings = {q: [d for d, _ in bm25.search(text, 20)] for q, text in data.queries.items()}
    out = tmp_path / "eval"
    command = ["eval", str(SHARED_DATA / "scifact"), "--max-queries", "8", "--candidates", "20"]
    assert main([*command, "--out", str(out)]) == 0
    capsys.readouterr()
    first_stage = json.loads((out / "report.json").read_text())["systems"][0]
    assert rag_helpers.ndcg10(rankings, data.qrels) == first_stage["per_query"]["nDCG@10"]


def test_every_notebook_is_tested() -> None:
    assert {p.name for p in FOLDER.glob("*.ipynb")} == {
        *(p.name for p in RAG_NOTEBOOKS),
        "choosing_a_reranker.ipynb",
    }


@pytest.mark.parametrize("path", RAG_NOTEBOOKS, ids=[p.stem for p in RAG_NOTEBOOKS])
def test_rag_notebook_runs(
    path: Path, minilm_reranker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plot = tmp_path / "plot.png"
    monkeypatch.setenv("RERANKIT_MODEL", str(minilm_reranker_dir))
    monkeypatch.setenv("RERANKIT_PLOT", str(plot))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    printed = _execute(path)
    assert "mean nDCG@10: BM25" in printed
    assert "* = judged relevant" in printed
    assert plot.stat().st_size > 1000
    assert os.environ["RERANKIT_MODEL"] in printed


def test_choosing_a_reranker_reads_fresh_reports(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rerankit.cli import main
    from tests.conftest import SHARED_DATA

    reports = tmp_path / "reports"
    for dataset in ("cranfield", "scifact"):
        assert (
            main(
                [
                    "eval",
                    str(SHARED_DATA / dataset),
                    "--max-queries",
                    "5",
                    "--candidates",
                    "10",
                    "--reranker",
                    f"name=tiny,model={tiny_bert_dir}",
                    "--out",
                    str(reports / dataset),
                ]
            )
            == 0
        )
    plot = tmp_path / "plot.png"
    monkeypatch.setenv("RERANKIT_REPORTS", str(reports))
    monkeypatch.setenv("RERANKIT_PLOT", str(plot))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    printed = _execute(FOLDER / "choosing_a_reranker.ipynb")
    assert "2 reports in" in printed
    assert "cranfield: tiny changes nDCG@10 by" in printed
    assert plot.stat().st_size > 1000
