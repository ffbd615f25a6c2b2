"""Every notebook runs top to bottom offline (with a stand-in model) and draws its plot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path, minilm_reranker_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plot = tmp_path / "plot.png"
    monkeypatch.setenv("RERANKIT_MODEL", str(minilm_reranker_dir))
    monkeypatch.setenv("RERANKIT_PLOT", str(plot))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "mean nDCG@10: BM25" in printed
    assert "* = judged relevant" in printed
    assert plot.stat().st_size > 1000
    assert os.environ["RERANKIT_MODEL"] in printed
