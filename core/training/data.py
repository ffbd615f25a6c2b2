"""Training judgments: a BEIR folder or a JSONL file, checked before any model loads.

Two JSONL layouts are read, one object per line, and may be mixed:

* ``{"query": ..., "positive": "..." | [...], "negative": "..." | [...]}`` (also the plural keys
  ``positives`` / ``negatives``);
* ``{"query": ..., "document": ..., "label": number}``: ``label > 0`` is relevant (a grade),
  ``0`` a judged non-relevant document.

A line with only ``{"query": ...}`` is a query without judgments: it trains only from a teacher.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerankit.errors import ConfigurationError, InvalidInputError
from rerankit.eval.data import json_lines, load_beir, read_qrels


@dataclass(frozen=True)
class TrainingQuery:
    """A query and its judged documents: grade > 0 relevant, 0 judged non-relevant."""

    qid: str
    text: str
    judged: dict[str, int]

    @property
    def positives(self) -> list[str]:
        """Ids of the judged-relevant documents, best grade first."""
        return sorted((d for d, g in self.judged.items() if g > 0), key=lambda d: -self.judged[d])


@dataclass(frozen=True)
class TrainingData:
    """Documents by id and the training queries, in file order."""

    name: str
    corpus: dict[str, str]
    queries: list[TrainingQuery]
    layout: str = "beir"  # or "jsonl": ids are hashes of the texts

    @property
    def judged_queries(self) -> list[TrainingQuery]:
        """Queries with at least one judged-relevant document."""
        return [q for q in self.queries if q.positives]


def load_training_data(source: str | Path) -> TrainingData:
    """Read a BEIR folder (training split) or a JSONL file of judgments; see the module doc."""
    path = Path(source)
    if path.is_dir():
        data = _from_beir(path)
    elif path.is_file():
        data = _from_jsonl(path)
    else:
        raise ConfigurationError(
            f"training data {str(path)!r} not found: give a BEIR folder (corpus.jsonl, "
            "queries.jsonl, qrels.tsv) or a JSONL file of judgments"
        )
    if not data.corpus:
        raise InvalidInputError(f"{path}: the corpus has no documents; nothing to train on")
    if not data.queries:
        raise InvalidInputError(f"{path}: no training queries found")
    return data


def _from_beir(root: Path) -> TrainingData:
    data = load_beir(root)
    if not data.corpus:
        raise InvalidInputError(f"{root / 'corpus.jsonl'}: the corpus has no documents")
    if not data.queries:
        raise InvalidInputError(
            f"{root / 'qrels.tsv'} judges none of the queries in queries.jsonl: a BEIR training "
            "folder needs judged queries (a JSONL of queries can train from a teacher alone)"
        )
    judged = {q: dict(grades) for q, grades in data.qrels.items()}
    for qid, doc_id in _judged_negatives(root / "qrels.tsv"):  # load_beir keeps grade > 0 only
        if qid in judged:
            judged[qid].setdefault(doc_id, 0)
    unknown = sorted({d for grades in judged.values() for d in grades} - data.corpus.keys())
    if unknown:
        raise InvalidInputError(
            f"{root / 'qrels.tsv'} names {len(unknown)} document id(s) missing from "
            f"corpus.jsonl, e.g. {unknown[:5]}; fix the qrels or the corpus"
        )
    queries = [
        TrainingQuery(qid=qid, text=text, judged=judged.get(qid, {}))
        for qid, text in data.queries.items()
    ]
    return TrainingData(name=root.name, corpus=data.corpus, queries=queries)


def _from_jsonl(path: Path) -> TrainingData:
    corpus: dict[str, str] = {}
    judged: dict[str, dict[str, int]] = {}
    for where, row in json_lines(path):
        query = _text(row.get("query"), where, "query")
        grades = judged.setdefault(query, {})
        for doc, grade in _judgments(row, where):
            doc_id = _document_id(doc)
            corpus[doc_id] = doc
            grades[doc_id] = max(grade, grades.get(doc_id, 0))
    queries = [
        TrainingQuery(qid=_document_id(text), text=text, judged=grades)
        for text, grades in judged.items()
    ]
    return TrainingData(name=path.stem, corpus=corpus, queries=queries, layout="jsonl")


def _judgments(row: dict[str, Any], where: str) -> list[tuple[str, int]]:
    pairs: list[tuple[str, int]] = []
    for key, grade in (("positive", 1), ("positives", 1), ("negative", 0), ("negatives", 0)):
        if key in row:
            values = row[key] if isinstance(row[key], list) else [row[key]]
            pairs.extend((_text(v, where, key), grade) for v in values)
    if "document" in row or "label" in row:
        label = row.get("label")
        if (
            not isinstance(label, int | float)
            or isinstance(label, bool)
            or not math.isfinite(label)
            or label < 0
        ):
            raise InvalidInputError(f"{where}: label must be a number >= 0, got {label!r}")
        pairs.append((_text(row.get("document"), where, "document"), _grade(label)))
    return pairs


def _judged_negatives(qrels: Path) -> list[tuple[str, str]]:
    """(query id, document id) of the rows of a BEIR ``qrels.tsv`` judged 0 (not relevant)."""
    return [(qid, doc_id) for qid, doc_id, grade in read_qrels(qrels) if grade == 0]


def _grade(label: float) -> int:
    """A relevance grade: any positive label is relevant (at least grade 1)."""
    return max(1, round(label)) if label > 0 else 0


def _text(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where}: {key!r} must be a non-empty string, got {value!r:.60}")
    return value


def _document_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
