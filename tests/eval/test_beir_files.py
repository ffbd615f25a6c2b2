"""BEIR folders as users write them: headers or none, BOMs, blank lines, and typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerankit.errors import InvalidInputError
from rerankit.eval.data import load_beir

DOCS = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "text": "two"}]
QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]


def _folder(tmp_path: Path, qrels: str, *, corpus: str | None = None, bom: str = "") -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    lines = corpus if corpus is not None else "".join(json.dumps(d) + "\n" for d in DOCS)
    (folder / "corpus.jsonl").write_text(bom + lines, encoding="utf-8")
    queries = "".join(json.dumps(q) + "\n" for q in QUERIES)
    (folder / "queries.jsonl").write_text(bom + queries, encoding="utf-8")
    (folder / "qrels.tsv").write_text(bom + qrels, encoding="utf-8")
    return folder


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore\n", ""])
def test_qrels_with_or_without_a_header_keep_every_judgment(tmp_path: Path, header: str) -> None:
    data = load_beir(_folder(tmp_path, header + "q1\td1\t1\nq2\td2\t2\n"))
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_a_bom_blank_lines_and_whole_float_grades_are_read(tmp_path: Path) -> None:
    corpus = "\n" + json.dumps(DOCS[0]) + "\n\n" + json.dumps(DOCS[1]) + "\r\n"
    data = load_beir(_folder(tmp_path, "q1\td1\t1.0\n\nq2\td2\t0\n", corpus=corpus, bom="\ufeff"))
    assert data.corpus == {"d1": "T. one", "d2": "two"}
    assert data.qrels == {"q1": {"d1": 1}}  # grade 0 is judged, not relevant
    assert data.queries == {"q1": "first"}


@pytest.mark.parametrize(
    ("qrels", "corpus", "message"),
    [
        ("q1\td1\t0.5\n", None, r"qrels.tsv, line 1: the score '0.5' is not a whole grade"),
        ("q1\td1\tnan\n", None, r"qrels.tsv, line 1: the score 'nan' is not a whole grade"),
        ("q1\td1\t1\nq2\td2\tyes\n", None, r"qrels.tsv, line 2: the score 'yes' is not a number"),
        ("q1\td1\t1\nq2 d2 1\n", None, r"qrels.tsv, line 2: expected query-id, corpus-id"),
        ("q1\td1\t1\n", '{"_id": "d1"}\n{"_id": \n', r"corpus.jsonl, line 2 is not JSON"),
        ("q1\td1\t1\n", '{"text": "no id"}\n', r"corpus.jsonl, line 1: expected a JSON object"),
    ],
)
def test_malformed_files_are_typed_errors_naming_the_line(
    tmp_path: Path, qrels: str, corpus: str | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        load_beir(_folder(tmp_path, qrels, corpus=corpus))
