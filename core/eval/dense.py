"""Dense first stage: exact search with a sentence-transformers model, corpus embeddings cached.

The embeddings of a corpus are computed once per model, passage prefix and corpus contents and
kept on disk (``$RERANKIT_CACHE/embeddings``, ``~/.cache/rerankit/embeddings`` when unset), so a
second evaluation of the same corpus encodes only its queries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.errors import ConfigurationError
from rerankit.eval.first_stage import Ranking

logger = logging.getLogger("rerankit")


def default_cache_dir() -> Path:
    """``$RERANKIT_CACHE/embeddings``, or ``~/.cache/rerankit/embeddings``."""
    root = os.environ.get("RERANKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "rerankit") / "embeddings"


def corpus_hash(corpus: dict[str, str]) -> str:
    """SHA-256 of the documents' ids and texts, in order."""
    digest = hashlib.sha256()
    for doc_id, text in corpus.items():
        digest.update(f"{doc_id}\x1f{text}\x1e".encode())
    return digest.hexdigest()


def model_identity(model: str) -> dict[str, Any]:
    """A model name as given; a local folder by its files' names, sizes and modification times."""
    folder = Path(model)
    if not folder.is_dir():
        return {"name": model}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        "folder": str(folder.resolve()),
        "files": [
            [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files
        ],
    }


def short_name(model: str) -> str:
    """The last two parts of a model name or path (``intfloat/e5-small-v2``), for display."""
    return "/".join(Path(model).parts[-2:]) or model


class DenseRetriever:
    """Exact nearest-neighbour search over a corpus with a sentence-transformers model.

    >>> corpus = {"d1": "BM25 ranks by term overlap", "d2": "a recipe for bread"}
    >>> dense = DenseRetriever(corpus, "sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> dense.search("what is BM25?", 1)  # doctest: +SKIP
    [('d1', 0.5...)]

    ``query_prefix`` / ``passage_prefix`` are prepended before encoding (E5: ``"query: "``,
    ``"passage: "``); when unset, the model's own configured query and document prompts apply.
    Similarity is the model's own (cosine unless it says otherwise).
    """

    def __init__(
        self,
        corpus: dict[str, str],
        model: str,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 32,
        progress: bool = False,
    ) -> None:
        st: Any = require("sentence_transformers", extra="dense", purpose="the dense first stage")
        try:
            self.model = st.SentenceTransformer(model)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot load the dense model {model!r} ({exc}); pass a sentence-transformers "
                "model name or a local folder with --dense-model"
            ) from exc
        self._np: Any = require("numpy", extra="dense", purpose="the dense first stage")
        self.ids = list(corpus)
        self.name = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        key = json.dumps(
            {
                "model": model_identity(model),
                "passage_prefix": passage_prefix,
                "corpus": corpus_hash(corpus),
            },
            sort_keys=True,
        )
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", short_name(model))
        folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
        self.cache_path = folder / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
        started = time.perf_counter()
        cached = self._load_cached(len(self.ids))
        if cached is None:
            texts = list(corpus.values())
            self.embeddings = self.model.encode_document(
                texts, prompt=passage_prefix, batch_size=batch_size, show_progress_bar=progress
            )
            self._save()
        else:
            self.embeddings = cached
        # What the report says about the corpus embeddings: cache hit or not, how many encoded.
        self.encoded = 0 if cached is not None else len(self.ids)
        self.seconds = time.perf_counter() - started

    def _load_cached(self, rows: int) -> Any:
        if not self.cache_path.is_file():
            return None
        try:
            embeddings = self._np.load(self.cache_path)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the unreadable embedding cache %s (%s)", self.cache_path, exc)
            return None
        return embeddings if embeddings.shape[0] == rows else None

    def _save(self) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_path.with_suffix(f".{os.getpid()}.tmp")
        with partial.open("wb") as handle:  # np.save on a path would append ".npy"
            self._np.save(handle, self.embeddings)
        partial.replace(self.cache_path)  # atomic: readers never see half a file

    def search(self, query: str, k: int) -> Ranking:
        """The ``k`` most similar documents, best first (ties in corpus order)."""
        encoded = self.model.encode_query([query], prompt=self.query_prefix)
        scores = self.model.similarity(encoded, self.embeddings)[0].numpy()
        order = self._np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[int(i)], float(scores[i])) for i in order]

    def describe(self) -> dict[str, Any]:
        """The model, prefixes and what the corpus embeddings cost, for the report."""
        return {
            "model": self.name,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "similarity": str(self.model.similarity_fn_name),
            "embedding_cache": str(self.cache_path),
            "encoded_documents": self.encoded,
            "corpus_seconds": self.seconds,
        }
