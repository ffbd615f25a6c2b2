"""BEIR-layout retrieval sets: ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``.

A corpus line may name an image (a page screenshot, a figure): ``"image": "pages/7.png"``, a
path relative to the corpus file's folder or absolute (or an ``http(s)`` URL, kept as it is).
That document is then ranked as ``Document(image=<resolved path>, text=<title + text>)``, by
rerankers that take images; first stages (BM25, dense) still read its text only, so a document
with an image and no title or text cannot be retrieved by them (one warning says how many).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rerankit.errors import ConfigurationError, InvalidInputError
from rerankit.images import URL
from rerankit.types import Document

logger = logging.getLogger("rerankit")


@dataclass(frozen=True)
class RetrievalSet:
    """Documents, queries and graded relevance judgements (only queries with judgements).

    ``corpus`` holds every document's text (title and text), what first stages index;
    ``images`` the image of each image document (a resolved file path, or a URL), by id.
    :meth:`documents` gives what a reranker ranks: the text, or a :class:`Document` with both.
    """

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    images: dict[str, Path | str] = field(default_factory=dict)

    def document(self, doc_id: str) -> str | Document:
        """What a reranker ranks for ``doc_id``: its text, or an image :class:`Document`."""
        image = self.images.get(doc_id)
        text = self.corpus[doc_id]
        return text if image is None else Document(text=text, id=doc_id, image=image)

    def documents(self, ids: Iterable[str]) -> list[str | Document]:
        """:meth:`document` for each of ``ids``, in order."""
        return [self.document(doc_id) for doc_id in ids]

    @property
    def image_only(self) -> int:
        """Image documents without a title or text: first stages cannot retrieve them."""
        return sum(1 for doc_id in self.images if not self.corpus[doc_id].strip())


def load_beir(folder: str | Path, *, max_queries: int | None = None) -> RetrievalSet:
    """Read a BEIR folder; ``max_queries`` keeps the first N judged queries in file order."""
    root = Path(folder)
    missing = [
        n for n in ("corpus.jsonl", "queries.jsonl", "qrels.tsv") if not (root / n).is_file()
    ]
    if missing:
        raise ConfigurationError(f"{root} is not a BEIR folder: missing {missing}")
    corpus: dict[str, str] = {}
    images: dict[str, Path | str] = {}
    corpus_file = _followed(root / "corpus.jsonl")
    for doc_id, row in _beir_rows(corpus_file):
        title, text = str(row.get("title") or ""), str(row.get("text") or "")
        corpus[doc_id] = f"{title}. {text}" if title else text
        if row.get("image"):
            images[doc_id] = _image(row["image"], corpus_file.resolve().parent, doc_id)
    _check_images(images, corpus, corpus_file)
    qrels: dict[str, dict[str, int]] = {}
    for qid, doc_id, grade in read_qrels(root / "qrels.tsv"):
        if grade > 0:
            qrels.setdefault(qid, {})[doc_id] = grade
    queries = {}
    for qid, row in _beir_rows(root / "queries.jsonl"):
        if qid in qrels:
            queries[qid] = str(row.get("text") or "")
        if max_queries is not None and len(queries) == max_queries:
            break
    return RetrievalSet(
        name=root.name,
        corpus=corpus,
        queries=queries,
        qrels={q: qrels[q] for q in queries},
        images=images,
    )


def json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each non-blank line of a JSONL file (a UTF-8 BOM is allowed) as a JSON object, with where
    it is (the file and line) for errors about it."""
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{where} is not JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise InvalidInputError(f"{where}: expected a JSON object, got {row!r:.60}")
            yield where, row


def _beir_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The lines of a BEIR ``corpus.jsonl`` or ``queries.jsonl``: :func:`json_lines` with the
    id of each as a string."""
    for where, row in json_lines(path):
        if "_id" not in row:
            raise InvalidInputError(f"{where}: expected a JSON object with an _id, got {row!r:.60}")
        yield str(row["_id"]), row


def read_qrels(path: Path) -> list[tuple[str, str, int]]:
    """(query id, document id, grade) of each row of a BEIR ``qrels.tsv``: query id, document
    id and an integer grade, tab-separated (more columns are ignored); a first row whose grade
    is not a number is a header."""
    judged = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < 3:
                raise InvalidInputError(
                    f"{path}, line {number}: expected query-id, corpus-id and score separated "
                    f"by tabs, got {row!r:.80}"
                )
            try:
                grade = float(row[2])
            except ValueError:
                if number == 1:  # the header
                    continue
                raise InvalidInputError(
                    f"{path}, line {number}: the score {row[2]!r} is not a number"
                ) from None
            if not math.isfinite(grade) or grade != int(grade):
                raise InvalidInputError(
                    f"{path}, line {number}: the score {row[2]!r} is not a whole grade "
                    "(0 not relevant, 1 or more relevant)"
                )
            judged.append((row[0], row[1], int(grade)))
    return judged


def _image(value: object, folder: Path, doc_id: str) -> Path | str:
    """A corpus line's ``image``: a URL as it is, else its path resolved from ``folder``."""
    if not isinstance(value, str):
        raise ConfigurationError(
            f"corpus.jsonl: document {doc_id!r} has an image that is not a path or URL "
            f"({type(value).__name__})"
        )
    if URL.match(value.strip()):
        return value.strip()
    path = Path(value).expanduser()
    return (path if path.is_absolute() else folder / path).resolve()


def _check_images(images: dict[str, Path | str], corpus: dict[str, str], source: Path) -> None:
    """Every image file must exist; image-only documents get one warning, with their count."""
    missing = [d for d, image in images.items() if isinstance(image, Path) and not image.is_file()]
    if missing:
        examples = ", ".join(f"{d!r}: {str(images[d])!r}" for d in missing[:3])
        raise ConfigurationError(
            f"{source}: {len(missing)} of {len(images)} image files do not exist (relative paths "
            f"are read from {source.resolve().parent}), e.g. {examples}"
        )
    image_only = sum(1 for d in images if not corpus[d].strip())
    if image_only:
        logger.warning(
            "%s: %d of %d documents are images without a title or text; BM25 and dense first "
            "stages read text only and cannot retrieve them (a run file can)",
            source,
            image_only,
            len(corpus),
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
