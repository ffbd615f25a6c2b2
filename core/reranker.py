"""Reranker: the one public entry point. Validation, sorting and cutting are written once here."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rerankit.backends.base import Backend
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, InvalidInputError
from rerankit.registry import canonical_name, infer_backend, load_backend_class
from rerankit.types import Document, RankResult, ScoredDocument, Scores

logger = logging.getLogger("rerankit")

DocumentInput = str | Document


class Reranker:
    """Rerank documents for a query with any backend.

    >>> rr = Reranker("BAAI/bge-reranker-v2-m3")                      # doctest: +SKIP
    >>> result = rr.rank("what is rerankit?", ["a reranker", "a cat"], top_k=1)  # doctest: +SKIP
    >>> result[0].index, result[0].score                              # doctest: +SKIP

    The backend is ``backend=`` when given, else inferred from the model folder or name.
    Keyword arguments are :class:`RerankerConfig` fields; any other keyword is a backend option.
    """

    def __init__(self, model: str, backend: str | None = None, **settings: Any) -> None:
        self._setup(RerankerConfig.from_kwargs(model, backend=backend, **settings))

    @classmethod
    def from_config(cls, config: RerankerConfig | Mapping[str, Any]) -> Reranker:
        """Build a reranker from a :class:`RerankerConfig` or its ``to_dict()`` form."""
        if not isinstance(config, RerankerConfig):
            config = RerankerConfig.from_dict(config)
        reranker = cls.__new__(cls)
        reranker._setup(config)
        return reranker

    def _setup(self, config: RerankerConfig) -> None:
        name = infer_backend(config.model) if config.backend is None else config.backend
        backend_class = load_backend_class(canonical_name(name))
        self._config = config
        self._backend: Backend = backend_class(config)

    @property
    def config(self) -> RerankerConfig:
        """The configuration this reranker was built from."""
        return self._config

    @property
    def backend(self) -> Backend:
        """The backend instance that scores documents."""
        return self._backend

    @property
    def backend_name(self) -> str:
        """The registered name of the backend in use."""
        return self._backend.name

    def rank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> RankResult:
        """Sort ``documents`` by relevance to ``query`` (ties keep input order), then cut."""
        docs, texts, top_k, score_threshold = self._prepare(
            query, documents, top_k, score_threshold
        )
        scores = self._backend.score(query, texts) if texts else Scores(values=[])
        return self._rank(docs, scores, top_k, score_threshold)

    async def arank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> RankResult:
        """Async :meth:`rank`; never blocks the event loop."""
        docs, texts, top_k, score_threshold = self._prepare(
            query, documents, top_k, score_threshold
        )
        scores = await self._backend.ascore(query, texts) if texts else Scores(values=[])
        return self._rank(docs, scores, top_k, score_threshold)

    def score(self, query: str, documents: Sequence[DocumentInput]) -> list[float]:
        """One score per document, in input order."""
        docs, texts, _, _ = self._prepare(query, documents, None, None)
        if not texts:
            return []
        return self._checked(self._backend.score(query, texts), len(docs)).values

    async def ascore(self, query: str, documents: Sequence[DocumentInput]) -> list[float]:
        """Async :meth:`score`."""
        docs, texts, _, _ = self._prepare(query, documents, None, None)
        if not texts:
            return []
        return self._checked(await self._backend.ascore(query, texts), len(docs)).values

    def close(self) -> None:
        """Release the backend's resources."""
        self._backend.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reranker(model={self._config.model!r}, backend={self.backend_name!r})"

    def _prepare(
        self,
        query: object,
        documents: object,
        top_k: int | None,
        score_threshold: float | None,
    ) -> tuple[list[DocumentInput], list[str], int | None, float | None]:
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        docs = _as_documents(documents)
        top_k = self._config.top_k if top_k is None else top_k
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise InvalidInputError(f"top_k must be an int or None, got {top_k!r}")
        if top_k is not None and top_k <= 0:
            raise InvalidInputError(f"top_k must be > 0, but got {top_k}; pass None to keep all")
        threshold = self._config.score_threshold if score_threshold is None else score_threshold
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise InvalidInputError(
                f"score_threshold must be a finite number or None, got {threshold!r}"
            )
        texts = [doc if isinstance(doc, str) else doc.text for doc in docs]
        return docs, texts, top_k, None if threshold is None else float(threshold)

    def _checked(self, scores: Scores, expected: int) -> Scores:
        if len(scores.values) != expected:
            raise BackendError(
                f"backend {self.backend_name!r} returned {len(scores.values)} scores "
                f"for {expected} documents"
            )
        if any(math.isnan(s) for s in scores.values):
            raise BackendError(f"backend {self.backend_name!r} returned NaN scores")
        if scores.truncated:
            logger.warning(
                "%s: %d of %d documents were truncated to max_length=%d tokens",
                self._config.model,
                scores.truncated,
                expected,
                self._config.max_length,
            )
        return scores

    def _rank(
        self,
        docs: list[DocumentInput],
        scores: Scores,
        top_k: int | None,
        threshold: float | None,
    ) -> RankResult:
        values = self._checked(scores, len(docs)).values
        order = sorted(range(len(docs)), key=lambda i: (-values[i], i))
        if threshold is not None:
            order = [i for i in order if values[i] >= threshold]
        if top_k is not None:
            order = order[:top_k]
        return RankResult(
            items=tuple(ScoredDocument(i, float(values[i]), docs[i]) for i in order),
            backend=self.backend_name,
            model=self._config.model,
            truncated=scores.truncated,
            usage=dict(scores.usage),
        )


def _as_documents(documents: object) -> list[DocumentInput]:
    if isinstance(documents, str | bytes | Document):
        raise InvalidInputError(
            "documents must be a list of str or rerankit.Document, not a single "
            f"{type(documents).__name__}; wrap it in a list"
        )
    if not isinstance(documents, Iterable):
        raise InvalidInputError(
            f"documents must be a list of str or rerankit.Document, got {type(documents).__name__}"
        )
    docs = list(documents)
    for position, doc in enumerate(docs):
        if isinstance(doc, Document):
            if not isinstance(doc.text, str):
                raise InvalidInputError(
                    f"documents[{position}].text must be a str, got {type(doc.text).__name__}"
                )
        elif not isinstance(doc, str):
            raise InvalidInputError(
                f"documents[{position}] must be a str or rerankit.Document, got "
                f"{type(doc).__name__}; convert it first (e.g. Document(text=..., metadata=...))"
            )
    return docs
