"""A teacher reranker's scores for distillation, cached on disk so a rerun never pays twice.

The cache is a SQLite file keyed by the teacher's identity (its config, never its API key: only
the name of the environment variable is part of a config; for a local folder, also the size and
time of each weight file, so retrained weights are scored again) and the query and document
texts.
Scores are committed after every chunk of queries, so an interrupted run loses at most one chunk.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError, RerankitError
from rerankit.reranker import Reranker

CHUNK_QUERIES = 8
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".onnx", ".pt", ".pth", ".gguf"})


@dataclass
class TeacherReport:
    """What teaching cost: pairs scored now and from the cache, and the teacher's usage."""

    teacher: str
    scale: str
    scored: int = 0
    cached: int = 0
    usage: dict[str, float] = field(default_factory=dict)


class Teacher:
    """Scores (query, documents) with any rerankit backend, through the on-disk cache."""

    def __init__(self, config: RerankerConfig, cache: str | Path) -> None:
        config = replace(config, top_k=None, score_threshold=None)  # every document gets a score
        identity = json.dumps([config.to_dict(), _weight_files(config.model)], sort_keys=True)
        self._identity = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        try:
            self._reranker = Reranker.from_config(config)
        except RerankitError as exc:
            raise ConfigurationError(
                f"the teacher {config.model!r} cannot be loaded: {exc}"
            ) from exc
        self.report = TeacherReport(teacher=config.model, scale=self._reranker.backend.scale)
        self._cache = Path(cache)
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The cache, opened (and created) on first use."""
        if self._connection is None:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(str(self._cache))
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL)"
            )
        return self._connection

    def score(
        self, requests: Sequence[tuple[str, Sequence[str]]], *, progress: bool = False
    ) -> list[list[float]]:
        """One score per document of every request, in input order."""
        from tqdm.auto import tqdm

        results: list[list[float]] = []
        with tqdm(total=len(requests), desc="teacher", disable=not progress) as bar:
            for start in range(0, len(requests), CHUNK_QUERIES):
                chunk = requests[start : start + CHUNK_QUERIES]
                results.extend(self._score_chunk(chunk))
                bar.update(len(chunk))
        return results

    def close(self) -> None:
        """Release the teacher model and the cache file."""
        self._reranker.close()
        if self._connection is not None:
            self._connection.close()

    def _score_chunk(self, chunk: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        keys = [[self._key(query, doc, docs) for doc in docs] for query, docs in chunk]
        known = self._lookup([k for row in keys for k in row])
        missing = [
            (query, [doc for doc, key in zip(docs, row, strict=True) if key not in known])
            for (query, docs), row in zip(chunk, keys, strict=True)
        ]
        todo = [(i, query, docs) for i, (query, docs) in enumerate(missing) if docs]
        if todo:
            ranked = self._reranker.rank_many([(query, docs) for _, query, docs in todo])
            fresh: list[tuple[str, float]] = []
            for (i, query, docs), result in zip(todo, ranked, strict=True):
                listed = chunk[i][1]
                for item in result:
                    fresh.append((self._key(query, docs[item.index], listed), item.score))
                for name, value in result.usage.items():
                    self.report.usage[name] = self.report.usage.get(name, 0.0) + value
            with closing(self._db.cursor()) as cursor:
                cursor.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", fresh)
            self._db.commit()
            known.update(fresh)
            self.report.scored += len(fresh)
        self.report.cached += sum(len(docs) for _, docs in chunk) - sum(len(d) for *_, d in todo)
        return [[known[key] for key in row] for row in keys]

    def _lookup(self, keys: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", part)
            found.update(rows.fetchall())
        return found

    def _key(self, query: str, document: str, listed: Sequence[str]) -> str:
        """A pair's cache key; a listwise teacher's score (a rank) also depends on its list."""
        context = "\0".join(listed) if self.report.scale == "rank" else ""
        text = f"{self._identity}\0{query}\0{document}\0{context}".encode()
        return hashlib.sha256(text).hexdigest()


def _weight_files(model: str) -> list[tuple[str, int, int]]:
    """(path, size, modification time) of each weight file under a local model folder; none for
    a hub id or an API model."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return []
    return sorted(
        (str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
        for path in folder.rglob("*")
        if path.suffix in WEIGHT_SUFFIXES and path.is_file()
        for stat in (path.stat(),)
    )
