"""Remote backend: the Jina rerank API and services that speak its shape (see ``rerank_api``).

The backend keeps what is particular to rerank APIs: large candidate sets are split into chunks
(documents and approximate tokens per request), sent with bounded concurrency, and merged back
into input order. The wire format is a :class:`~rerankit.remote.rerank_api.Dialect`; clients,
retries, the circuit breaker, typed errors and secrets are the shared
:class:`~rerankit.remote.transport.HTTPTransport`'s.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, NamedTuple

import httpx

from rerankit.backends.base import Backend, Passage, Request
from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.images import ImagePassage, ImagePolicy, ImageSource, image_key, image_payload
from rerankit.options import Option, OptionSchema
from rerankit.remote import TRANSPORT_OPTIONS
from rerankit.remote.circuit import CircuitBreaker
from rerankit.remote.rerank_api import DIALECTS, Dialect
from rerankit.remote.transport import HTTPTransport, without_credentials
from rerankit.remote.usage import add_usage, cost
from rerankit.secrets import Secret
from rerankit.types import Scores

BYTES_PER_TOKEN = 4  # a rough, model-free token estimate: UTF-8 bytes / 4
# What one image counts against max_request_tokens: jina-reranker-m0 reads an image as at most
# 768 patches of 28x28 pixels, one token each (its payload's size says nothing about that).
IMAGE_TOKENS = 768

Answer = tuple[list[float], dict[str, float]]  # one chunk's scores and usage figures


class _Plan(NamedTuple):
    """One request, truncated and split into the chunks sent as separate calls."""

    query: str
    documents: list[str]
    images: list[str | None] | None  # per document, its image as sent; None: text only
    chunks: list[range]
    truncated: int


class JinaBackend(Backend):
    """Score documents with a remote rerank service (Jina, infinity, Cohere v2, TEI dialects).

    >>> rr = Reranker("BAAI/bge-reranker-base", backend="jina", dialect="tei",
    ...               base_url="http://localhost:8080")                   # doctest: +SKIP
    >>> rr.rank("what is rerankit?", ["a reranker", "a cat"]).scale        # doctest: +SKIP
    'logit'

    ``normalize`` follows the dialect (see :mod:`rerankit.remote.rerank_api`): TEI and infinity
    return the model's logit or, with ``normalize=True``, its sigmoid; Cohere and Jina return
    the service's own ``relevance_score`` (scale ``"service"``), which Cohere documents as a
    probability (so ``normalize=True`` is allowed there, and refused for Jina).

    Image documents (``Document(image=...)``) go to services that take them, the ``jina``
    dialect only (the Jina API ranks them with jina-reranker-m0): an ``http(s)`` URL is sent as
    given, for the service to fetch (never fetched here); a file, bytes, a PIL image (as PNG),
    base64 or a data URI is read here, bounded by ``max_image_bytes``, and sent as raw base64.
    The other dialects refuse image documents with
    :class:`~rerankit.errors.InvalidInputError` before anything is sent. An image counts as
    ``IMAGE_TOKENS`` against ``max_request_tokens``; its text (caption, OCR) is truncated like
    any document's.
    """

    name: ClassVar[str] = "jina"
    remote = True
    accepts_images = True  # the dialect decides: see JinaBackend._plan
    options_schema: ClassVar[OptionSchema] = {
        "dialect": Option(
            "enum", "jina", "wire format of the service", choices=tuple(sorted(DIALECTS))
        ),
        "base_url": Option("str", None, "service URL; the dialect's public endpoint when unset"),
        "max_documents_per_request": Option("int", 512, "documents per call at most", minimum=1),
        "max_request_tokens": Option(
            "int", 200_000, "approximate tokens per call at most", minimum=1
        ),
        "max_document_tokens": Option(
            "int", 8192, "approximate tokens per document; longer ones are cut", minimum=1
        ),
        **TRANSPORT_OPTIONS,
        "price_per_million_tokens": Option(
            "float", None, "adds usage['cost'] from the billed tokens", minimum=0
        ),
        "max_image_bytes": Option(
            "int",
            32 * 1024 * 1024,
            "bytes per image read here (file, bytes, base64) at most; URLs go to the service",
            minimum=1,
        ),
    }

    def __init__(
        self,
        config: RerankerConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config)
        options = self.options
        self.dialect: Dialect = DIALECTS[options["dialect"]]
        scale = self.dialect.scale(config.normalize)
        if scale is None:
            raise ConfigurationError(
                f"normalize=True is not available on the {self.dialect.name!r} dialect: the "
                "service returns its own relevance_score, which is not a probability for every "
                "model it serves; use normalize=False (scale 'service')"
            )
        self.scale = scale
        # Images are read here, bounded; a URL is passed to the service and never fetched here.
        self.image_policy = ImagePolicy(allow_urls=False, max_bytes=options["max_image_bytes"])
        base_url = options["base_url"] or self.dialect.default_base_url
        if not base_url:
            raise ConfigurationError(
                f"the {self.dialect.name!r} dialect has no public endpoint; pass "
                "base_url='http://host:port' of your server"
            )
        env = self.dialect.api_key_env
        self.transport = HTTPTransport(
            str(base_url),
            api_key=_api_key(
                config.api_key,
                env,
                required=base_url == self.dialect.default_base_url,
                url=without_credentials(str(base_url)),
            ),
            options=options,
            owner=f"this {self.name!r} backend",
            key_hint=f"api_key= or the {env} environment variable" if env else "api_key=",
            transport=transport,
            async_transport=async_transport,
        )
        self.base_url = self.transport.base_url

    @property
    def circuit(self) -> CircuitBreaker:
        """The circuit breaker every call to the service passes."""
        return self.transport.circuit

    def __repr__(self) -> str:
        return (
            f"JinaBackend(model={self.config.model!r}, dialect={self.dialect.name!r}, "
            f"base_url={self.transport.safe_url!r})"
        )

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        """Every request's chunks as concurrent calls, at most ``max_concurrency`` at a time.

        ``top_k`` is not used: the service scores every document on its own, whatever is kept.
        """
        self.transport.check_open()
        plans = self._plans(requests)
        calls = [(plan, chunk) for plan in plans for chunk in plan.chunks]
        if len(calls) <= 1:
            answers = [self._call(plan, chunk) for plan, chunk in calls]
        elif self.circuit.state != "closed":  # one trial call decides, then the rest go out
            first = self._call(*calls[0])
            answers = [first, *self._send_all(calls[1:])]
        else:
            answers = self._send_all(calls)
        return self._merged(plans, answers)

    async def ascore_many(
        self, requests: Sequence[Request], *, top_k: int | None = None
    ) -> list[Scores]:
        """Async :meth:`score_many`: every request's chunks concurrently on this loop's client."""
        self.transport.check_open()
        if any(isinstance(p, ImagePassage) for _, texts in requests for p in texts):
            plans = await asyncio.to_thread(self._plans, requests)  # reads files, encodes
        else:
            plans = self._plans(requests)
        limit = asyncio.Semaphore(self.options["max_concurrency"])

        async def bounded(plan: _Plan, chunk: range) -> Answer:
            async with limit:
                return await self._acall(plan, chunk)

        calls = [(plan, chunk) for plan in plans for chunk in plan.chunks]
        first: list[Answer] = []
        if len(calls) > 1 and self.circuit.state != "closed":  # one trial call decides first
            first = [await self._acall(*calls[0])]
            calls = calls[1:]
        tasks = [asyncio.ensure_future(bounded(plan, chunk)) for plan, chunk in calls]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:  # the requests fail: stop the calls still waiting or in flight
            for task in tasks:
                task.cancel()
            raise
        return self._merged(plans, [*first, *answers])

    def close(self) -> None:
        self.transport.close()
        super().close()

    async def aclose(self) -> None:
        await self.transport.aclose()
        super().close()

    # -- calls ---------------------------------------------------------------------------------

    def _send_all(self, calls: list[tuple[_Plan, range]]) -> list[Answer]:
        """The answers to ``calls``, sent concurrently (at most ``max_concurrency`` at once)."""
        workers = min(self.options["max_concurrency"], len(calls))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._call, plan, chunk) for plan, chunk in calls]
            try:
                return [future.result() for future in futures]
            except BaseException:  # the requests fail: do not send the calls still queued
                for future in futures:
                    future.cancel()
                raise

    def _call(self, plan: _Plan, chunk: range) -> Answer:
        return self.transport.post(self.dialect.path, self._body(plan, chunk), self._reader(chunk))

    async def _acall(self, plan: _Plan, chunk: range) -> Answer:
        body = self._body(plan, chunk)
        return await self.transport.apost(self.dialect.path, body, self._reader(chunk))

    def _body(self, plan: _Plan, chunk: range) -> dict[str, Any]:
        documents = plan.documents[chunk.start : chunk.stop]
        images = None if plan.images is None else plan.images[chunk.start : chunk.stop]
        return self.dialect.body(
            self.config.model,
            plan.query,
            documents,
            normalize=self.config.normalize,
            images=images,
        )

    def _reader(self, chunk: range) -> Callable[[Any], Answer]:
        def read(payload: Any) -> Answer:
            scores = self.dialect.scores(payload, len(chunk), where=self.transport.safe_url)
            return scores, self.dialect.usage(payload)

        return read

    # -- chunking and merging ----------------------------------------------------------------

    def _plans(self, requests: Sequence[Request]) -> list[_Plan]:
        """Every request's plan; images are checked and read now, before anything is sent."""
        payloads: dict[Any, str] = {}  # one read per image source in these requests
        return [self._plan(query, texts, payloads) for query, texts in requests]

    def _plan(self, query: str, passages: Sequence[Passage], payloads: dict[Any, str]) -> _Plan:
        texts = [p.text if isinstance(p, ImagePassage) else p for p in passages]
        images: list[str | None] | None = None
        for position, passage in enumerate(passages):
            if isinstance(passage, ImagePassage):
                if images is None:
                    self.dialect.check_images(position)
                    images = [None] * len(passages)
                images[position] = self._image(passage.image, payloads)
        documents, truncated = self._truncate(texts)
        return _Plan(query, documents, images, self._chunks(documents, images), truncated)

    def _image(self, source: ImageSource, payloads: dict[Any, str]) -> str:
        """``source`` as sent: a URL as given, else raw base64 read within ``max_image_bytes``."""
        key = image_key(source)
        if key not in payloads:
            payloads[key] = image_payload(source, self.image_policy)
        return payloads[key]

    def _truncate(self, texts: Sequence[str]) -> tuple[list[str], int]:
        limit = self.options["max_document_tokens"] * BYTES_PER_TOKEN
        documents, truncated = [], 0
        for text in texts:
            encoded = text.encode("utf-8")
            if len(encoded) > limit:
                text = encoded[:limit].decode("utf-8", errors="ignore")
                truncated += 1
            documents.append(text)
        return documents, truncated

    def _chunks(self, documents: list[str], images: list[str | None] | None = None) -> list[range]:
        most_documents = self.options["max_documents_per_request"]
        most_tokens = self.options["max_request_tokens"]
        chunks: list[range] = []
        start, tokens = 0, 0
        for position, text in enumerate(documents):
            tokens_of_text = math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + 1
            if images is not None and images[position] is not None:
                tokens_of_text += IMAGE_TOKENS
            size = position - start
            if size and (size >= most_documents or tokens + tokens_of_text > most_tokens):
                chunks.append(range(start, position))
                start, tokens = position, 0
            tokens += tokens_of_text
        chunks.append(range(start, len(documents)))
        return chunks

    def _merged(self, plans: list[_Plan], answers: list[Answer]) -> list[Scores]:
        """Each request's chunk answers, in call order, merged back into one list of scores.

        Merging is sound because rerank APIs score pointwise: each document is scored against
        the query alone, so scores from different calls are comparable and can be sorted
        together. A listwise reranker orders windows instead, and says so with the ``"rank"``
        scale (see the ``listwise`` backend).
        """
        price = self.options["price_per_million_tokens"]
        results, start = [], 0
        for plan in plans:
            values = [0.0] * len(plan.documents)
            usage: dict[str, float] = {}
            chunk_answers = answers[start : start + len(plan.chunks)]
            start += len(plan.chunks)
            for chunk, (scores, chunk_usage) in zip(plan.chunks, chunk_answers, strict=True):
                values[chunk.start : chunk.stop] = scores
                add_usage(usage, chunk_usage)
            priced = cost(usage, {"total_tokens": price})
            if priced is not None:
                usage["cost"] = priced
            usage["requests"] = float(len(plan.chunks))
            results.append(
                Scores(
                    values=values,
                    truncated=plan.truncated,
                    usage=usage,
                    max_tokens=self.options["max_document_tokens"],
                )
            )
        return results


def _api_key(secret: Secret | None, env: str | None, *, required: bool, url: str) -> str | None:
    """The key to send: ``secret``, else the dialect's environment variable; None without."""
    if secret is None and env is not None:
        secret = Secret.from_env(env)
    key = secret.resolve() if secret is not None else None
    if key is None and required:
        raise ConfigurationError(
            f"no API key for {url}: set the {env} environment variable or pass api_key=..."
        )
    return key
