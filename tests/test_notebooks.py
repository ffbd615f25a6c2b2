"""Every notebook runs top to bottom offline (with a stand-in model) and draws its plot."""

from __future__ import annotations

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
