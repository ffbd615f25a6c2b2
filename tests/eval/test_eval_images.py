"""``rerankit eval`` on a BEIR folder whose corpus names page images (reddish = relevant).

The reranker is :class:`tests.image_backend.RedImages` (score: mean red + query words),
registered as a backend for the test, so that the command line can name it like any other.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rerankit import Document, RerankerConfig
from rerankit.cli import main
from rerankit.eval.data import load_beir
from rerankit.eval.report import build_report
from rerankit.eval.runner import first_stage_runs, rerank_run, time_depths
from rerankit.registry import BACKENDS, BackendSpec
from tests.image_backend import png

# id -> (title, text, colour of its page image or None for a text document)
CORPUS: dict[str, tuple[str, str, tuple[int, int, int] | None]] = {
    "p1": ("Annual report", "revenue table page", (250, 20, 20)),
    "p2": ("Annual report", "revenue chart page", (20, 20, 250)),
    "p3": ("Annual report", "revenue notes page", (120, 40, 40)),
    "p4": ("Annual report", "revenue summary page", (220, 60, 60)),
    "t5": ("Annual report", "revenue in words, no page image", None),
    "p6": ("", "", (255, 0, 0)),  # an image without any text: BM25 cannot find it
}
QUERIES = {"q1": "annual revenue", "q2": "revenue page"}
QRELS = {"q1": {"p1": 1, "p4": 1}, "q2": {"p6": 2, "p1": 1}}


def beir_with_pages(root: Path, elsewhere: Path) -> Path:
    """A BEIR folder: images under ``pages/`` (relative paths), one elsewhere (absolute)."""
    (root / "pages").mkdir(parents=True)
    elsewhere.mkdir(parents=True, exist_ok=True)
    lines = []
    for doc_id, (title, text, colour) in CORPUS.items():
        row: dict[str, str] = {"_id": doc_id, "title": title, "text": text}
        if colour is not None:
            if doc_id == "p4":
                image = elsewhere / "p4.png"
                row["image"] = str(image)
            else:
                image = root / "pages" / f"{doc_id}.png"
                row["image"] = f"pages/{doc_id}.png"
            image.write_bytes(png(colour))
        lines.append(json.dumps(row))
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    judged = [f"{q}\t{d}\t{g}" for q, docs in QRELS.items() for d, g in docs.items()]
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(judged) + "\n")
    return root


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    return beir_with_pages(tmp_path / "report-pages", tmp_path / "elsewhere")


@pytest.fixture
def red_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    spec = BackendSpec("red-images", "tests.image_backend", "RedImages", extra="", requires=())
    monkeypatch.setitem(BACKENDS, "red-images", spec)
    return "red-images"


def test_load_beir_resolves_images_and_warns_once(
    pages: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        data = load_beir(pages)
    assert data.images == {
        "p1": (pages / "pages" / "p1.png").resolve(),
        "p2": (pages / "pages" / "p2.png").resolve(),
        "p3": (pages / "pages" / "p3.png").resolve(),
        "p4": (tmp_path / "elsewhere" / "p4.png").resolve(),
        "p6": (pages / "pages" / "p6.png").resolve(),
    }
    assert data.corpus["p1"] == "Annual report. revenue table page"  # as for text documents
    assert data.document("p1") == Document(
        text="Annual report. revenue table page", id="p1", image=data.images["p1"]
    )
    assert data.document("t5") == "Annual report. revenue in words, no page image"
    assert data.document("p6") == Document(text="", id="p6", image=data.images["p6"])
    assert data.image_only == 1
    warnings = [r.getMessage() for r in caplog.records if "without a title or text" in r.message]
    assert len(warnings) == 1
    assert "1 of 6 documents" in warnings[0]


def test_missing_image_files_fail_at_load(pages: Path) -> None:
    (pages / "pages" / "p2.png").unlink()
    from rerankit import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"1 of 5 image files do not exist.*'p2'"):
        load_beir(pages)


def test_the_runner_reranks_image_documents(pages: Path, red_backend: str) -> None:
    data = load_beir(pages)
    bm25 = first_stage_runs(data, ["bm25"], candidates=10)[0]
    assert "p6" not in {d for ranking in bm25.rankings.values() for d in ranking}
    config = RerankerConfig(model="red-images", backend=red_backend)
    run = rerank_run(data, "red", config, bm25.rankings)
    assert run.rankings["q1"][:2] == ["p1", "p4"]  # the reddest pages first
    assert run.rankings["q1"][-1] == "t5"  # a text document: words only, no red
    assert run.scores["q1"]["p1"] == pytest.approx(250 + 2)  # red + "annual", "revenue"
    assert run.pairs == sum(len(r) for r in bm25.rankings.values())
    depths = time_depths(data, config, bm25.rankings, [2, 5], queries=2)
    assert set(depths) == {2, 5}
    assert all(len(v) == 2 for v in depths.values())
    report = build_report(data, [bm25, run], settings={"candidates": 10})
    systems = {s["name"]: s for s in report["systems"]}
    assert systems["red"]["metrics"]["nDCG@10"] > systems["BM25"]["metrics"]["nDCG@10"]
    assert systems["red"]["per_query"]["nDCG@10"]["q1"] == pytest.approx(1.0)


def test_eval_cli_on_page_images(
    pages: Path,
    tmp_path: Path,
    red_backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_file = tmp_path / "run.tsv"  # a first stage that finds the image-only page
    run_file.write_text("q1\tp3\t3\nq1\tp1\t2\nq1\tp4\t1\nq2\tp2\t3\nq2\tp1\t2\nq2\tp6\t1\n")
    out = tmp_path / "out"
    args = [
        "eval",
        str(pages),
        "--reranker",
        f"name=red,model=red-images,backend={red_backend}",
        "--first-stage",
        f"bm25,{run_file}",
        "--depths",
        "2,5",
        "--depth-timing-queries",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["image_documents"] == 5
    assert report["settings"]["image_only_documents"] == 1
    names = [(s["name"], s["first_stage"]) for s in report["systems"]]
    assert names == [("BM25", None), ("red", "BM25"), ("run.tsv", None), ("red", "run.tsv")]
    bm25, red_bm25, run, red_run = report["systems"]
    assert red_bm25["metrics"]["nDCG@10"] > bm25["metrics"]["nDCG@10"]
    assert red_run["metrics"]["nDCG@10"] == pytest.approx(1.0)  # p6 (grade 2), then p1
    assert red_run["metrics"]["nDCG@10"] > run["metrics"]["nDCG@10"]
    assert [p["depth"] for p in red_bm25["depth_curve"]["points"]] == [2, 5]
    assert "nDCG@10" in capsys.readouterr().out


def test_eval_cli_refuses_a_text_only_reranker_up_front(
    pages: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    words = "name=words,model=ms-marco-TinyBERT-L-2-v2,backend=flashrank"
    args = ["eval", str(pages), "--reranker", words, "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "5 image documents and reranker 'words' (backend 'flashrank') ranks text only" in err
    assert not (tmp_path / "o").exists()
    assert main(["eval", str(pages), "--ray", "2", "--out", str(tmp_path / "o")]) == 2
    assert "passes texts only" in capsys.readouterr().err
