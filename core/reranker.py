"""Reranker: the one public entry point. Validation, sorting and cutting are written once here."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from rerankit.backends.base import Backend, Passage, Request
from rerankit.config import RerankerConfig, is_finite_number
from rerankit.errors import (
    BackendError,
    ConfigurationError,
    InvalidInputError,
    ServiceUnavailableError,
)
from rerankit.images import ImagePassage, check_source
from rerankit.registry import canonical_name, infer_backend, load_backend_class
from rerankit.types import Document, RankResult, ScoredDocument, Scores

logger = logging.getLogger("rerankit")

DocumentInput = str | Document
TRUNCATION_WARNING_INTERVAL = 60.0  # seconds between a reranker's truncation warnings
RANK = "rank"  # the scale of listwise backends: an order, not scores


class Reranker:
    """Rerank documents for a query with any backend.

    >>> rr = Reranker("BAAI/bge-reranker-v2-m3")                      # doctest: +SKIP
    >>> result = rr.rank("what is rerankit?", ["a reranker", "a cat"], top_k=1)  # doctest: +SKIP
    >>> result[0].index, result[0].score                              # doctest: +SKIP

    The backend is ``backend=`` when given, else inferred from the model folder or name.
    Keyword arguments are :class:`RerankerConfig` fields; any other keyword is a backend option.
    ``fallback`` is another reranker that answers when this one's service is unavailable
    (:class:`~rerankit.errors.ServiceUnavailableError`); it may have a fallback of its own, to any
    depth. Results name the backend that answered and its score ``scale``. A score threshold
    belongs to a scale: when a fallback on another scale answers, its own configured
    ``score_threshold`` applies instead of this reranker's.
    """

    def __init__(
        self,
        model: str,
        backend: str | None = None,
        *,
        fallback: Reranker | None = None,
        **settings: Any,
    ) -> None:
        config = RerankerConfig.from_kwargs(model, backend=backend, **settings)
        self._setup(_load_backend(config), fallback)

    @classmethod
    def from_config(
        cls, config: RerankerConfig | Mapping[str, Any], *, fallback: Reranker | None = None
    ) -> Reranker:
        """Build a reranker from a :class:`RerankerConfig` or its ``to_dict()`` form."""
        if not isinstance(config, RerankerConfig):
            config = RerankerConfig.from_dict(config)
        return cls.from_backend(_load_backend(config), fallback=fallback)

    @classmethod
    def from_backend(cls, backend: Backend, *, fallback: Reranker | None = None) -> Reranker:
        """Wrap a ready :class:`~rerankit.backends.base.Backend` instance (e.g. your own)."""
        reranker = cls.__new__(cls)
        reranker._setup(backend, fallback)
        return reranker

    def _setup(self, backend: Backend, fallback: Reranker | None) -> None:
        if fallback is not None and not isinstance(fallback, Reranker):
            raise ConfigurationError(
                f"fallback must be a rerankit.Reranker, got {type(fallback).__name__}"
            )
        if backend.config.score_threshold is not None and backend.scale == RANK:
            raise ConfigurationError(
                f"score_threshold has no meaning for the listwise {backend.name!r} backend: its "
                "values are an order, not scores; cut with top_k instead"
            )
        self._config = backend.config
        self._backend = backend
        self._fallback = fallback
        self._usage: dict[str, float] = {}
        self._usage_lock = threading.Lock()
        self._truncation_quiet_until = 0.0  # time.monotonic() before which truncation is DEBUG

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

    @property
    def usage(self) -> dict[str, float]:
        """Running totals of the usage figures backends reported (tokens, cost, requests)."""
        with self._usage_lock:
            return dict(self._usage)

    def rank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> RankResult:
        """Sort ``documents`` by relevance to ``query`` (ties keep input order), then cut."""
        return self.rank_many([(query, documents)], top_k=top_k, score_threshold=score_threshold)[0]

    async def arank(
        self,
        query: str,
        documents: Sequence[DocumentInput],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> RankResult:
        """Async :meth:`rank`; never blocks the event loop."""
        results = await self.arank_many(
            [(query, documents)], top_k=top_k, score_threshold=score_threshold
        )
        return results[0]

    def rank_many(
        self,
        requests: Iterable[tuple[str, Sequence[DocumentInput]]],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RankResult]:
        """:meth:`rank` for several ``(query, documents)`` requests, results in request order.

        Pair encoders (cross-encoders, FlashRank) score the pairs of all requests in shared
        length-sorted batches, which is faster than one :meth:`rank` call per query.
        """
        prepared = self._prepare_many(requests, top_k, score_threshold)
        scored, producer = self._score_many(prepared, self._top_k_hint(prepared))
        return self._ranked(prepared, scored, producer)

    async def arank_many(
        self,
        requests: Iterable[tuple[str, Sequence[DocumentInput]]],
        *,
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RankResult]:
        """Async :meth:`rank_many`; local models run on their backend's own worker thread."""
        prepared = self._prepare_many(requests, top_k, score_threshold)
        scored, producer = await self._ascore_many(prepared, self._top_k_hint(prepared))
        return self._ranked(prepared, scored, producer)

    def score(self, query: str, documents: Sequence[DocumentInput]) -> list[float]:
        """One score per document, in input order."""
        return self.score_many([(query, documents)])[0]

    async def ascore(self, query: str, documents: Sequence[DocumentInput]) -> list[float]:
        """Async :meth:`score`."""
        prepared = self._prepare_many([(query, documents)], None, None)
        scored, producer = await self._ascore_many(prepared, None)
        return producer._checked(scored[0], len(prepared[0].docs)).values

    def score_many(
        self, requests: Iterable[tuple[str, Sequence[DocumentInput]]]
    ) -> list[list[float]]:
        """:meth:`score` for several ``(query, documents)`` requests, in shared batches."""
        prepared = self._prepare_many(requests, None, None)
        scored, producer = self._score_many(prepared, None)
        return [
            producer._checked(scores, len(request.docs)).values
            for request, scores in zip(prepared, scored, strict=True)
        ]

    def close(self) -> None:
        """Release the backend's resources (and the fallback's)."""
        self._backend.close()
        if self._fallback is not None:
            self._fallback.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._backend.aclose()
        if self._fallback is not None:
            await self._fallback.aclose()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Reranker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Reranker(model={self._config.model!r}, backend={self.backend_name!r})"

    def _prepare_many(
        self,
        requests: Iterable[tuple[str, Sequence[DocumentInput]]],
        top_k: int | None,
        score_threshold: float | None,
    ) -> list[_Prepared]:
        return [
            self._prepare(query, documents, top_k, score_threshold)
            for query, documents in _as_requests(requests)
        ]

    def _prepare(
        self,
        query: object,
        documents: object,
        top_k: int | None,
        score_threshold: float | None,
    ) -> _Prepared:
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        docs = _as_documents(documents)
        top_k = self._config.top_k if top_k is None else top_k
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise InvalidInputError(f"top_k must be an int or None, got {top_k!r}")
        if top_k is not None and top_k <= 0:
            raise InvalidInputError(f"top_k must be > 0, but got {top_k}; pass None to keep all")
        if score_threshold is not None and self._backend.scale == RANK:
            raise InvalidInputError(
                f"score_threshold has no meaning for the listwise {self.backend_name!r} backend: "
                "its values are an order, not scores; cut with top_k instead"
            )
        threshold = self._config.score_threshold if score_threshold is None else score_threshold
        if threshold is not None and not is_finite_number(threshold):
            raise InvalidInputError(
                f"score_threshold must be a finite number or None, got {threshold!r}"
            )
        texts = [doc if isinstance(doc, str) else doc.text for doc in docs]
        _check_encodable(query, texts)
        passages = self._passages(docs, texts)
        return _Prepared(
            query, docs, passages, top_k, None if threshold is None else float(threshold)
        )

    def _passages(self, docs: list[DocumentInput], texts: list[str]) -> list[Passage]:
        """What the backend scores: the texts, with image documents as :class:`ImagePassage`."""
        passages: list[Passage] = list(texts)
        for position, doc in enumerate(docs):
            if isinstance(doc, str) or doc.image is None:
                continue
            check_source(doc.image, f"documents[{position}].image")
            if not self._backend.accepts_images:
                raise InvalidInputError(
                    f"documents[{position}] is an image document and the {self.backend_name!r} "
                    "backend ranks text only; use backend='vlm' (a vision-language reranker) or "
                    "the Jina API with jina-reranker-m0, or rank its caption or OCR as text"
                )
            passages[position] = ImagePassage(doc.image, texts[position])
        return passages

    def _check_takes_images(self, requests: list[_Prepared]) -> None:
        """Refuse image documents when this reranker, a fallback, ranks text only.

        The primary refuses them per request in :meth:`_passages`; a fallback of a backend that
        takes images must get a typed error, never objects it cannot read.
        """
        if self._backend.accepts_images:
            return
        for request in requests:
            for position, passage in enumerate(request.texts):
                if isinstance(passage, ImagePassage):
                    raise InvalidInputError(
                        f"documents[{position}] is an image document and the fallback "
                        f"{self!r} ranks text only; give it a fallback that takes images"
                    )

    @staticmethod
    def _top_k_hint(requests: list[_Prepared]) -> int | None:
        return requests[0].top_k if requests else None

    def _score_many(
        self, requests: list[_Prepared], top_k: int | None
    ) -> tuple[list[Scores], Reranker]:
        """Scores for every request from this reranker, else from its fallback chain."""
        nonempty = _nonempty(requests)
        if not nonempty:
            return [Scores(values=[]) for _ in requests], self
        try:
            scored = self._backend.score_many(nonempty, top_k=top_k)
        except ServiceUnavailableError as exc:
            return self._fallback_for(exc, requests)._score_many(requests, top_k)
        return self._spread(requests, scored), self

    async def _ascore_many(
        self, requests: list[_Prepared], top_k: int | None
    ) -> tuple[list[Scores], Reranker]:
        nonempty = _nonempty(requests)
        if not nonempty:
            return [Scores(values=[]) for _ in requests], self
        try:
            scored = await self._backend.ascore_many(nonempty, top_k=top_k)
        except ServiceUnavailableError as exc:
            return await self._fallback_for(exc, requests)._ascore_many(requests, top_k)
        return self._spread(requests, scored), self

    def _spread(self, requests: list[_Prepared], scored: list[Scores]) -> list[Scores]:
        """The backend's answers for the non-empty requests, with empty ones put back."""
        expected = sum(1 for r in requests if r.texts)
        if len(scored) != expected:
            raise BackendError(
                f"backend {self.backend_name!r} returned {len(scored)} score lists "
                f"for {expected} requests"
            )
        answers = iter(scored)
        return [next(answers) if r.texts else Scores(values=[]) for r in requests]

    def _fallback_for(self, exc: ServiceUnavailableError, requests: list[_Prepared]) -> Reranker:
        """The fallback that answers ``requests`` now; it must be able to read them."""
        if self._fallback is None:
            raise exc
        self._fallback._check_takes_images(requests)
        logger.warning(
            "%s backend unavailable (%s: %s); answering with fallback %r",
            self.backend_name,
            type(exc).__name__,
            exc,
            self._fallback,
        )
        return self._fallback

    def _ranked(
        self, requests: list[_Prepared], scored: list[Scores], producer: Reranker
    ) -> list[RankResult]:
        """Rank each request with the scores of ``producer`` (this reranker or a fallback).

        A threshold belongs to a score scale: the requested one applies when the answering
        reranker scores on this reranker's scale, else that reranker's own configured
        ``score_threshold`` does (None: no threshold).
        """
        scale = producer.backend.scale
        same_scale = producer is self or (
            scale == self._backend.scale and scale != "unspecified"  # unknown: never the same
        )
        return [
            producer._rank(
                request if same_scale else request._replace(threshold=_own_threshold(producer)),
                scores,
            )
            for request, scores in zip(requests, scored, strict=True)
        ]

    def _checked(self, scores: Scores, expected: int) -> Scores:
        if len(scores.values) != expected:
            raise BackendError(
                f"backend {self.backend_name!r} returned {len(scores.values)} scores "
                f"for {expected} documents"
            )
        if any(math.isnan(s) for s in scores.values):
            raise BackendError(f"backend {self.backend_name!r} returned NaN scores")
        if scores.usage:
            with self._usage_lock:
                for key, value in scores.usage.items():
                    self._usage[key] = self._usage.get(key, 0.0) + value
        if scores.truncated:
            # A warning at most once a minute per reranker, DEBUG in between: an eval or a
            # teacher over many queries would otherwise log one line per request, while a
            # long-lived server still hears of truncation again.
            now = time.monotonic()
            with self._usage_lock:
                warn = now >= self._truncation_quiet_until
                if warn:
                    self._truncation_quiet_until = now + TRUNCATION_WARNING_INTERVAL
            limit = self._config.max_length if scores.max_tokens is None else scores.max_tokens
            logger.log(
                logging.WARNING if warn else logging.DEBUG,
                "%s: %d of %d documents were truncated to %s%s%s",
                self._config.model,
                scores.truncated,
                expected,
                f"{limit} tokens"
                if scores.windows == 1
                else f"{scores.windows} windows of {limit} tokens",
                "" if scores.length_option is None else f" ({scores.length_option}={limit})",
                f"; RankResult.truncated counts them per request, and this reranker logs "
                f"truncations at DEBUG level for the next {TRUNCATION_WARNING_INTERVAL:.0f} s"
                if warn
                else "",
            )
        return scores

    def _rank(self, request: _Prepared, scores: Scores) -> RankResult:
        values = self._checked(scores, len(request.docs)).values
        order = best_first(values)
        if request.threshold is not None:
            order = [i for i in order if values[i] >= request.threshold]
        if request.top_k is not None:
            order = order[: request.top_k]
        return RankResult(
            items=tuple(ScoredDocument(i, float(values[i]), request.docs[i]) for i in order),
            backend=self.backend_name,
            model=self._config.model,
            truncated=scores.truncated,
            usage=dict(scores.usage),
            scale=self._backend.scale,
        )


class _Prepared(NamedTuple):
    """One validated request: the query, its documents and passages, and the cuts to apply."""

    query: str
    docs: list[DocumentInput]
    texts: list[Passage]
    top_k: int | None
    threshold: float | None


def _nonempty(requests: list[_Prepared]) -> list[Request]:
    """The requests with documents, as the backend takes them.

    Image passages only ever reach backends that take images (checked in ``_passages``), whose
    ``score_many`` accepts them; to every other backend the passages are all ``str``.
    """
    return [(r.query, cast("list[str]", r.texts)) for r in requests if r.texts]


def _check_encodable(query: str, texts: list[str]) -> None:
    """Every text must be valid Unicode (a lone surrogate cannot be tokenized or sent)."""
    named = [("query", query), *((f"documents[{i}]", text) for i, text in enumerate(texts))]
    for where, text in named:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(
                f"{where} holds a lone surrogate (invalid Unicode, often a bad decode); "
                "clean the text first, e.g. text.encode('utf-8', 'replace').decode()"
            ) from None


def _own_threshold(reranker: Reranker) -> float | None:
    threshold = reranker.config.score_threshold
    return None if threshold is None else float(threshold)


def best_first(scores: Sequence[float]) -> list[int]:
    """Positions of ``scores`` from the highest score down; ties keep input order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _load_backend(config: RerankerConfig) -> Backend:
    name = infer_backend(config.model) if config.backend is None else config.backend
    return load_backend_class(canonical_name(name))(config)


def _as_requests(requests: object) -> list[tuple[str, Sequence[DocumentInput]]]:
    if isinstance(requests, str | bytes) or not isinstance(requests, Iterable):
        raise InvalidInputError(
            f"requests must be a list of (query, documents) pairs, got {type(requests).__name__}"
        )
    pairs = list(requests)
    for position, request in enumerate(pairs):
        if not isinstance(request, tuple | list) or len(request) != 2:
            raise InvalidInputError(
                f"request {position} must be a (query, documents) pair, got {request!r:.80}"
            )
    return [(query, documents) for query, documents in pairs]


def _as_documents(documents: object) -> list[DocumentInput]:
    if isinstance(documents, str | bytes | Document):
        raise InvalidInputError(
            "documents must be a list of str or rerankit.Document, not a single "
            f"{type(documents).__name__}; wrap it in a list"
        )
    if isinstance(documents, Mapping):
        raise InvalidInputError(
            "documents must be a list of str or rerankit.Document, not a "
            f"{type(documents).__name__} (only its keys would be ranked); pass a list of its texts"
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
