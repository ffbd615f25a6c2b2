"""The HTTP app: ``POST /v1/rerank`` (Jina / Cohere v2 shape), ``/health``, ``/v1/models``,
``/metrics``. Built with FastAPI; run by uvicorn (``rerankit serve``) or Ray Serve.

A rerank response adds ``score_scale`` next to ``results``: what the ``relevance_score`` values
are (``"logit"``, ``"probability"``, ...; ``RankResult.scale``). For a listwise model the scale
is ``"rank"`` and ``relevance_score`` is rank-derived: ``len(documents)`` for the first
document down to 1, an order, not a score to compare across requests. Every response carries an
``X-Request-ID`` (the client's, when it is a plain token); a 500 tells the client only that id,
and the log holds the error under it. 4xx, 502 and 503 answers keep rerankit's typed message.

Documents are strings, ``{"text": ...}`` objects, or image documents ``{"image": ..., "text":
...}`` (``text``, a caption or OCR, is optional), as the Jina API takes them for
jina-reranker-m0. ``image`` is raw base64 or a ``data:image/...;base64,`` URI, decoded here, or
an ``http(s)`` URL, handed to the reranker as it is: a reranker built with ``fetch_images=True``
downloads it, a remote one passes it on to its service, any other refuses it (422). Nothing
else is an image here: a file path is never read from the server's disk. A model that ranks
text only answers image documents with 422 naming the document; so does an image that is not
valid base64 or cannot be decoded, and one over ``max_image_bytes`` (decoded) gets 413. Image
documents are ranked exactly as ``Reranker.rank`` ranks ``Document(image=<the decoded bytes or
the URL>, text=...)`` in-process.

With ``return_documents`` a result's ``document`` is ``{"text": ...}`` for a text document, as
before. For an image document it is ``{"text": <its text, "" without>, "image": <the URL>}``
when the image was a URL, and ``{"text": ..., "image_bytes": <decoded size>}`` when it was sent
inline: the client has the image, and echoing megabytes of base64 would only slow the answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rerankit._optional import is_available
from rerankit.config import is_finite_number, is_positive_int
from rerankit.errors import (
    ConfigurationError,
    InvalidInputError,
    MissingDependencyError,
    RemoteError,
    RerankitError,
    ServiceUnavailableError,
)
from rerankit.images import DATA_URI, URL, read_size
from rerankit.reranker import DocumentInput, Reranker
from rerankit.serve.batcher import MicroBatcher, QueueFullError
from rerankit.types import Document

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    from rerankit.serve.limits import BodySizeLimit, RequestId
except ImportError as exc:
    raise MissingDependencyError(exc.name or "fastapi", "serve", "rerankit serve") from exc

logger = logging.getLogger("rerankit.serve")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and behaviour of the server (all have safe defaults)."""

    batching: bool = True
    max_batch_pairs: int = 256
    max_wait_ms: float = 0.0
    max_queue_pairs: int = 8192
    max_documents: int = 1000
    max_body_bytes: int = 10 * 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024  # per image document, decoded
    request_timeout_s: float = 60.0
    api_key_env: str | None = None
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in (
            "max_batch_pairs",
            "max_queue_pairs",
            "max_documents",
            "max_body_bytes",
            "max_image_bytes",
            "retry_after_s",
        ):
            if not is_positive_int(getattr(self, name)):
                raise ConfigurationError(
                    f"{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not is_finite_number(self.max_wait_ms) or self.max_wait_ms < 0:
            raise ConfigurationError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not is_finite_number(self.request_timeout_s) or self.request_timeout_s <= 0:
            raise ConfigurationError(
                f"request_timeout_s must be > 0, got {self.request_timeout_s!r}"
            )


class DocumentObject(BaseModel):
    """``{"text": ...}`` or an image document ``{"image": ..., "text"?: ...}``."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _text_or_image(self) -> DocumentObject:
        if self.text is None and self.image is None:
            raise ValueError("a document object needs 'text' or 'image'")
        return self


class RerankRequest(BaseModel):
    """The Jina / Cohere v2 request body (extra fields from those clients are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str | DocumentObject]
    top_n: int | None = Field(default=None, gt=0, strict=True)
    return_documents: bool | None = None  # unset: Jina's default (true) on /v1, false on /v2


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rerankit_requests",
            "Rerank requests by outcome",
            ["model", "status"],
            registry=self.registry,
        )
        self.pairs = Counter("rerankit_pairs", "Pairs scored", ["model"], registry=self.registry)
        self.batch_pairs = Histogram(
            "rerankit_batch_pairs",
            "Pairs per backend batch",
            ["model"],
            registry=self.registry,
            buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 4096),
        )
        self.batch_requests = Histogram(
            "rerankit_batch_requests",
            "Requests merged per backend batch",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.queue = Gauge(
            "rerankit_queue_pairs", "Pairs waiting to be scored", ["model"], registry=self.registry
        )
        self.latency = Histogram(
            "rerankit_request_seconds",
            "Request latency",
            ["model"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


def create_app(rerankers: Mapping[str, Reranker], settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``rerankers`` by name; the first one is the default model."""
    if not rerankers:
        raise ValueError("create_app needs at least one reranker")
    settings = settings or ServeSettings()
    metrics = _Metrics()
    batchers = {
        name: MicroBatcher(
            reranker,
            enabled=settings.batching,
            max_batch_pairs=settings.max_batch_pairs,
            max_wait_ms=settings.max_wait_ms,
            max_queue_pairs=settings.max_queue_pairs,
            on_batch=_recorder(metrics, name),
        )
        for name, reranker in rerankers.items()
    }
    default_model = next(iter(rerankers))
    token = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if settings.api_key_env and not token:
        raise ValueError(f"--api-key-env {settings.api_key_env} is set, but that variable is empty")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for reranker in rerankers.values():  # ready means scored once: lazy set-up done, fails fast
            if not reranker.backend.remote:
                await reranker.ascore("warm-up", ["warm-up"])
        for batcher in batchers.values():
            await batcher.start()
        yield
        for batcher in batchers.values():  # drain in-flight work before exiting
            await batcher.stop()

    app = FastAPI(title="rerankit", lifespan=lifespan)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    @app.middleware("http")  # added last, so it runs first: no body is read before the token
    async def authenticate(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith(("/v1/", "/v2/")) and request.url.path != "/v1/models":
            denied = _check_token(request, token)
            if denied is not None:
                return denied
        response: Response = await call_next(request)
        return response

    app.add_middleware(RequestId)  # outermost of ours: every response carries the id

    @app.exception_handler(Exception)  # a bug outside the rerank handler's own error mapping
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.state.request_id
        logger.error("request %s failed", request_id, exc_info=exc)
        return _internal_error(request_id)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return _error(422, "; ".join(problems) or "invalid request")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(rerankers)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "backend": rr.backend_name}
                for name, rr in rerankers.items()
            ],
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        for name, batcher in batchers.items():
            metrics.queue.labels(name).set(batcher.queued_pairs)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/rerank")
    @app.post("/v2/rerank")
    async def rerank(request: Request, body: RerankRequest) -> JSONResponse:
        name = body.model or default_model
        return_documents = (
            body.return_documents
            if body.return_documents is not None
            else request.url.path.startswith("/v1/")
        )
        if name not in rerankers:
            return _error(404, f"unknown model {name!r}; available: {sorted(rerankers)}")
        if len(body.documents) > settings.max_documents:
            metrics.requests.labels(name, "413").inc()
            return _error(
                413,
                f"{len(body.documents)} documents; at most {settings.max_documents} per request",
            )
        try:
            documents, echoes = _documents(body.documents, settings.max_image_bytes)
        except _ImageTooLarge as exc:
            metrics.requests.labels(name, "413").inc()
            return _error(413, str(exc))
        except InvalidInputError as exc:
            metrics.requests.labels(name, "422").inc()
            return _error(422, f"{type(exc).__name__}: {exc}")
        started = time.perf_counter()
        try:
            ranked = await asyncio.wait_for(
                batchers[name].submit(body.query, documents, body.top_n),
                timeout=settings.request_timeout_s,
            )
        except QueueFullError as exc:
            metrics.requests.labels(name, "429").inc()
            return _error(429, str(exc), {"Retry-After": str(settings.retry_after_s)})
        except asyncio.TimeoutError:
            metrics.requests.labels(name, "504").inc()
            return _error(504, f"not scored within {settings.request_timeout_s} s")
        except Exception as exc:  # the reranker's error, as an HTTP status
            status = _status_for(exc)
            metrics.requests.labels(name, str(status)).inc()
            request_id = request.state.request_id
            logger.log(
                logging.ERROR if status == 500 else logging.WARNING,
                "request %s: rerank failed for model %s: %s: %s",
                request_id,
                name,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, RerankitError),  # a traceback for the unexpected
            )
            if status == 500:  # its text may hold paths, inputs or internals: it stays in the log
                return _internal_error(request_id)
            # rerankit's own messages for the client's and the upstream's faults; the remote
            # backend has already scrubbed its API key from anything the upstream said
            headers = {"Retry-After": str(settings.retry_after_s)} if status == 503 else None
            return _error(status, f"{type(exc).__name__}: {exc}", headers)
        results: list[dict[str, Any]] = []
        for item in ranked[: body.top_n]:
            result: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if return_documents:
                result["document"] = echoes[item.index]
            results.append(result)
        metrics.requests.labels(name, "200").inc()
        metrics.pairs.labels(name).inc(len(documents))
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        tokens = int(ranked.usage.get("total_tokens", 0))
        return JSONResponse(
            {
                "model": name,
                "usage": {"total_tokens": tokens},
                "results": results,
                "score_scale": ranked.scale,  # what relevance_score is (rerankit's README)
            }
        )

    return app


class _ImageTooLarge(InvalidInputError):
    """An image document over ``max_image_bytes`` (HTTP 413)."""


def _documents(
    given: list[str | DocumentObject], max_image_bytes: int
) -> tuple[list[DocumentInput], list[dict[str, Any]]]:
    """The request's documents as the reranker takes them, and what ``return_documents`` echoes.

    Text documents stay strings; image documents become :class:`Document` with the image
    decoded to bytes (base64, data URI) or kept as its URL.
    """
    documents: list[DocumentInput] = []
    echoes: list[dict[str, Any]] = []
    for position, doc in enumerate(given):
        if isinstance(doc, str) or doc.image is None:
            text = doc if isinstance(doc, str) else doc.text or ""
            documents.append(text)
            echoes.append({"text": text})
            continue
        text = doc.text or ""
        image = _image(doc.image, f"documents[{position}].image", max_image_bytes)
        documents.append(Document(text=text, image=image))
        if isinstance(image, str):
            echoes.append({"text": text, "image": image})
        else:
            echoes.append({"text": text, "image_bytes": len(image)})
    return documents, echoes


def _image(value: str, where: str, max_bytes: int) -> str | bytes:
    """An image document's ``image``: its URL as given, or its decoded and checked bytes."""
    value = value.strip()
    if not value:
        raise InvalidInputError(f"{where} is empty; send base64, a data URI or an http(s) URL")
    if URL.match(value):
        return value
    encoded = "".join((value.split(",", 1)[1] if DATA_URI.match(value) else value).split())
    if len(encoded) > (max_bytes + 2) // 3 * 4:  # refused before anything is decoded
        raise _ImageTooLarge(
            f"{where} is about {len(encoded) * 3 // 4} bytes, over the {max_bytes}-byte limit "
            "of this server"
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            f"{where} is not an http(s) URL, a data URI or valid base64 image data "
            f"({len(value)} characters); send the image file base64-encoded"
        ) from None
    if not data:
        raise InvalidInputError(f"{where} holds no image data")
    if len(data) > max_bytes:
        raise _ImageTooLarge(
            f"{where} is {len(data)} bytes, over the {max_bytes}-byte limit of this server"
        )
    _check_decodable(data, where)
    return data


def _check_decodable(data: bytes, where: str) -> None:
    """Refuse data that is no image file Pillow knows (its header only; pixels stay encoded).

    Without Pillow (the ``vlm`` extra) the reranker, or its service, decides.
    """
    if not is_available("PIL"):
        return
    try:
        read_size(data, data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None


def _recorder(metrics: _Metrics, name: str) -> Any:
    def record(requests: int, pairs: int) -> None:
        metrics.batch_requests.labels(name).observe(requests)
        metrics.batch_pairs.labels(name).observe(pairs)

    return record


def _status_for(exc: Exception) -> int:
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, ServiceUnavailableError):  # upstream down or rate-limited: retry later
        return 503
    if isinstance(exc, RemoteError):  # upstream refused the request
        return 502
    return 500


def _check_token(request: Request, token: str | None) -> JSONResponse | None:
    if token is None:
        return None
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
        return _error(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
    return None


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _internal_error(request_id: str) -> JSONResponse:
    """A 500 that says nothing but the id under which the log has the detail."""
    return _error(500, f"internal error; request id {request_id}", {"X-Request-ID": request_id})
