"""The HTTP app: ``POST /v1/rerank`` (Jina / Cohere v2 shape), ``/health``, ``/v1/models``,
``/metrics``. Built with FastAPI; run by uvicorn (``rerankit serve``) or Ray Serve.

A rerank response adds ``score_scale`` next to ``results``: what the ``relevance_score`` values
are (``"logit"``, ``"probability"``, ...; ``RankResult.scale``). For a listwise model the scale
is ``"rank"`` and ``relevance_score`` is rank-derived: ``len(documents)`` for the first
document down to 1, an order, not a score to compare across requests. Every response carries an
``X-Request-ID`` (the client's, when it is a plain token); a 500 tells the client only that id,
and the log holds the error under it. 4xx, 502 and 503 answers keep rerankit's typed message."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rerankit.config import is_finite_number, is_positive_int
from rerankit.errors import (
    ConfigurationError,
    InvalidInputError,
    MissingDependencyError,
    RemoteError,
    RerankitError,
    ServiceUnavailableError,
)
from rerankit.reranker import Reranker
from rerankit.serve.batcher import MicroBatcher, QueueFullError

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
    from pydantic import BaseModel, ConfigDict, Field

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
    request_timeout_s: float = 60.0
    api_key_env: str | None = None
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in (
            "max_batch_pairs",
            "max_queue_pairs",
            "max_documents",
            "max_body_bytes",
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


class TextDocument(BaseModel):
    text: str


class RerankRequest(BaseModel):
    """The Jina / Cohere v2 request body (extra fields from those clients are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str | TextDocument]
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
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        if len(texts) > settings.max_documents:
            metrics.requests.labels(name, "413").inc()
            return _error(
                413, f"{len(texts)} documents; at most {settings.max_documents} per request"
            )
        started = time.perf_counter()
        try:
            ranked = await asyncio.wait_for(
                batchers[name].submit(body.query, texts, body.top_n),
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
                result["document"] = {"text": texts[item.index]}
            results.append(result)
        metrics.requests.labels(name, "200").inc()
        metrics.pairs.labels(name).inc(len(texts))
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
