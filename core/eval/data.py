"""BEIR-layout retrieval sets: ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from rerankit.errors import ConfigurationError


@dataclass(frozen=True)
class RetrievalSet:
    """Documents, queries and graded relevance judgements (only queries with judgements)."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: str | Path, *, max_queries: int | None = None) -> RetrievalSet:
    """Read a BEIR folder; ``max_queries`` keeps the first N judged queries in file order."""
    root = Path(folder)
    missing = [
        n for n in ("corpus.jsonl", "queries.jsonl", "qrels.tsv") if not (root / n).is_file()
    ]
    if missing:
        raise ConfigurationError(f"{root} is not a BEIR folder: missing {missing}")
    corpus = {}
    with _followed(root / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            title, text = row.get("title") or "", row.get("text") or ""
            corpus[str(row["_id"])] = f"{title}. {text}" if title else text
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels.tsv").open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            if len(row) >= 3 and int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
            if max_queries is not None and len(queries) == max_queries:
                break
    return RetrievalSet(
        name=root.name,
        corpus=corpus,
        queries=queries,
        qrels={q: qrels[q] for q in queries},
    )


def _followed(path: Path) -> Path:
    """``path``, or the file it names when it is a symbolic link checked out as text.

    Git writes a symlink as a small file holding the target's path where links are off
    (``core.symlinks=false``, some archives); the shared scifact-train corpus is one.
    """
    if path.stat().st_size < 4096:
        target = path.read_text(encoding="utf-8", errors="replace").strip()
        if target and "\n" not in target and not target.startswith("{"):
            linked = (path.parent / target).resolve()
            if linked.is_file():
                return linked
    return path
