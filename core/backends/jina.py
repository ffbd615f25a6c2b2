"""Remote backend: the Jina rerank API and services that speak its shape (see ``dialects``).

One long-lived ``httpx.Client`` / ``httpx.AsyncClient`` per backend. Large candidate sets are
split into chunks (documents and approximate tokens per request), sent with bounded concurrency,
retried with exponential backoff and jitter where retrying can help, validated, and merged back
into input order. A circuit breaker stops calling a service that keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from rerankit.backends.base import Backend, int_option, number_option
from rerankit.backends.circuit import CircuitBreaker
from rerankit.backends.dialects import Dialect, get_dialect
from rerankit.config import RerankerConfig
from rerankit.errors import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    InvalidResponseError,
    RateLimitError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
    ServerError,
    ServiceUnavailableError,
)
from rerankit.secrets import Secret
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BYTES_PER_TOKEN = 4  # a rough, model-free token estimate: UTF-8 bytes / 4

DEFAULTS: dict[str, Any] = {
    "dialect": "jina",
    "base_url": None,
    "timeout": 30.0,
    "connect_timeout": 5.0,
    "max_documents_per_request": 512,
    "max_request_tokens": 200_000,
    "max_document_tokens": 8192,
    "max_concurrency": 4,
    "max_retries": 3,
    "backoff_initial": 0.5,
    "backoff_max": 8.0,
    "max_retry_after": 30.0,
    "failure_threshold": 5,
    "reset_after": 30.0,
    "price_per_million_tokens": None,
}


class JinaBackend(Backend):
    """Score documents with a remote rerank service (Jina, infinity, Cohere v2, TEI dialects).

    Options (all JSON-safe): ``dialect``, ``base_url``, ``timeout``, ``connect_timeout``,
    ``max_documents_per_request``, ``max_request_tokens``, ``max_document_tokens``,
    ``max_concurrency``, ``max_retries``, ``backoff_initial``, ``backoff_max``,
    ``max_retry_after``, ``failure_threshold``, ``reset_after``, ``price_per_million_tokens``.
    """

    name: ClassVar[str] = "jina"
    remote: ClassVar[bool] = True
    option_names: ClassVar[frozenset[str]] = frozenset(DEFAULTS)

    def __init__(
        self,
        config: RerankerConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config)
        options = config.options
        self.dialect: Dialect = get_dialect(str(options.get("dialect") or DEFAULTS["dialect"]))
        base_url = options.get("base_url") or self.dialect.default_base_url
        if not base_url:
            raise ConfigurationError(
                f"the {self.dialect.name!r} dialect has no public endpoint; pass "
                "base_url='http://host:port' of your server"
            )
        self.base_url = str(base_url).rstrip("/")
        self._key = self._api_key(config.api_key, base_url == self.dialect.default_base_url)
        self.max_documents = _int(options, "max_documents_per_request")
        self.max_request_tokens = _int(options, "max_request_tokens")
        self.max_document_tokens = _int(options, "max_document_tokens")
        self.max_concurrency = _int(options, "max_concurrency")
        self.max_retries = _int(options, "max_retries", minimum=0)
        self.max_retry_after = _number(options, "max_retry_after")
        initial = _number(options, "backoff_initial")
        self._backoff = wait_exponential(
            multiplier=initial, max=_number(options, "backoff_max")
        ) + wait_random(0, initial)
        price = options.get("price_per_million_tokens")
        self.price_per_million_tokens = (
            None if price is None else number_option(options, "price_per_million_tokens", 0.0)
        )
        self.circuit = CircuitBreaker(
            failure_threshold=_int(options, "failure_threshold"),
            reset_after=_number(options, "reset_after"),
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        timeout = httpx.Timeout(
            _number(options, "timeout", minimum=0.001),
            connect=_number(options, "connect_timeout", minimum=0.001),
        )
        self._client_args: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": timeout,
        }
        self._client = httpx.Client(transport=transport, **self._client_args)
        self._async_transport = async_transport
        self._async_client: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"JinaBackend(model={self.config.model!r}, dialect={self.dialect.name!r}, "
            f"base_url={self.base_url!r})"
        )

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scores]:
        """Every request's chunks as concurrent calls, at most ``max_concurrency`` at a time."""
        plans = []
        for query, texts in requests:
            documents, truncated = self._truncate(texts)
            plans.append((query, documents, self._chunks(documents), truncated, len(texts)))
        calls = [
            (query, documents, chunk) for query, documents, chunks, *_ in plans for chunk in chunks
        ]
        if len(calls) <= 1:
            answers = [self._call(*call) for call in calls]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(calls))) as pool:
                answers = list(pool.map(lambda call: self._call(*call), calls))
        results, start = [], 0
        for _, _, chunks, truncated, count in plans:
            results.append(
                self._merge(count, chunks, answers[start : start + len(chunks)], truncated)
            )
            start += len(chunks)
        return results

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        documents, truncated = self._truncate(texts)
        chunks = self._chunks(documents)
        client = self._get_async_client()
        limit = asyncio.Semaphore(self.max_concurrency)

        async def bounded(chunk: range) -> tuple[list[float], dict[str, float]]:
            async with limit:
                return await self._acall(client, query, documents, chunk)

        answers = await asyncio.gather(*(bounded(c) for c in chunks))
        return self._merge(len(texts), chunks, list(answers), truncated)

    def close(self) -> None:
        self._client.close()
        client, self._async_client = self._async_client, None
        if client is not None and self._async_loop is not None and not self._async_loop.is_closed():
            if self._async_loop.is_running():
                self._async_loop.call_soon_threadsafe(
                    lambda: asyncio.ensure_future(client.aclose())
                )
            else:
                self._async_loop.run_until_complete(client.aclose())

    async def aclose(self) -> None:
        self._client.close()
        client, self._async_client = self._async_client, None
        if client is not None:
            await client.aclose()

    # -- one request -----------------------------------------------------------------------

    def _call(
        self, query: str, documents: list[str], chunk: range
    ) -> tuple[list[float], dict[str, float]]:
        self._check_circuit()
        body = self.dialect.body(self.config.model, query, documents[chunk.start : chunk.stop])
        try:
            for attempt in Retrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    response = self._client.post(self.dialect.path, json=body)
                    answer = self._parse(response, len(chunk))
        except ServiceUnavailableError:
            self.circuit.record_failure()
            raise
        self.circuit.record_success()
        return answer

    async def _acall(
        self, client: httpx.AsyncClient, query: str, documents: list[str], chunk: range
    ) -> tuple[list[float], dict[str, float]]:
        self._check_circuit()
        body = self.dialect.body(self.config.model, query, documents[chunk.start : chunk.stop])
        try:
            async for attempt in AsyncRetrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    response = await client.post(self.dialect.path, json=body)
                    answer = self._parse(response, len(chunk))
        except ServiceUnavailableError:
            self.circuit.record_failure()
            raise
        self.circuit.record_success()
        return answer

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Translate httpx's transport failures into rerankit's typed errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise RemoteTimeoutError(
                f"{self.base_url}: no answer within the timeout ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteConnectionError(
                f"{self.base_url}: connection failed "
                f"({type(exc).__name__}: {self._scrub(str(exc))})"
            ) from exc

    def _retry_policy(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(self._should_retry),
            "stop": stop_after_attempt(self.max_retries + 1),
            "wait": self._wait,
            "reraise": True,
            "before_sleep": self._log_retry,
        }

    def _should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.max_retry_after
        return isinstance(exc, ServerError | RemoteTimeoutError | RemoteConnectionError)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "%s: attempt %d failed (%s); retrying",
            self.base_url,
            state.attempt_number,
            type(exc).__name__,
        )

    def _check_circuit(self) -> None:
        if not self.circuit.allow():
            raise CircuitOpenError(
                f"{self.base_url}: circuit open after {self.circuit.failure_threshold} consecutive "
                f"failures; next trial in {self.circuit.seconds_until_retry():.1f} s"
            )

    def _parse(
        self, response: httpx.Response, expected: int
    ) -> tuple[list[float], dict[str, float]]:
        if response.status_code >= 400:
            raise self._error(response)
        try:
            payload = response.json()
        except ValueError as exc:
            raise InvalidResponseError(
                f"{self.base_url}: the response is not JSON (status {response.status_code})"
            ) from exc
        return self._validated(payload, expected), self.dialect.usage(payload)

    def _validated(self, payload: Any, expected: int) -> list[float]:
        results = (
            payload
            if self.dialect.results_field is None
            else (payload.get(self.dialect.results_field) if isinstance(payload, dict) else None)
        )
        if not isinstance(results, list):
            raise InvalidResponseError(f"{self.base_url}: the response has no list of results")
        scores: dict[int, float] = {}
        duplicates: set[int] = set()
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get(self.dialect.score_field) if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected:
                raise InvalidResponseError(
                    f"{self.base_url}: result index {index!r} is not in range(0, {expected})"
                )
            if (
                isinstance(score, bool)
                or not isinstance(score, int | float)
                or not math.isfinite(score)
            ):
                raise InvalidResponseError(
                    f"{self.base_url}: result {index} has no finite {self.dialect.score_field!r}"
                )
            if index in scores:
                duplicates.add(index)
            scores[index] = float(score)
        missing = sorted(set(range(expected)) - set(scores))
        if duplicates or missing:
            raise InvalidResponseError(
                f"{self.base_url}: {expected} documents sent, but indices {missing} are missing "
                f"and {sorted(duplicates)} are repeated in the response"
            )
        return [scores[i] for i in range(expected)]

    def _error(self, response: httpx.Response) -> RemoteError:
        status = response.status_code
        detail = self._scrub(_detail(response))
        message = f"{self.base_url}{self.dialect.path} answered {status}: {detail}"
        if status in (401, 403):
            return AuthenticationError(
                f"{message}. Check the API key ({self._key_hint()}).", status=status, detail=detail
            )
        if status == 429:
            return RateLimitError(
                message, status=status, detail=detail, retry_after=_retry_after(response)
            )
        if status >= 500:
            return ServerError(message, status=status, detail=detail)
        return BadRequestError(message, status=status, detail=detail)

    # -- chunking and merging ----------------------------------------------------------------

    def _truncate(self, texts: Sequence[str]) -> tuple[list[str], int]:
        limit = self.max_document_tokens * BYTES_PER_TOKEN
        documents, truncated = [], 0
        for text in texts:
            encoded = text.encode("utf-8")
            if len(encoded) > limit:
                text = encoded[:limit].decode("utf-8", errors="ignore")
                truncated += 1
            documents.append(text)
        return documents, truncated

    def _chunks(self, documents: list[str]) -> list[range]:
        chunks: list[range] = []
        start, tokens = 0, 0
        for position, text in enumerate(documents):
            cost = math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + 1
            size = position - start
            if size and (size >= self.max_documents or tokens + cost > self.max_request_tokens):
                chunks.append(range(start, position))
                start, tokens = position, 0
            tokens += cost
        chunks.append(range(start, len(documents)))
        return chunks

    def _merge(
        self,
        n: int,
        chunks: list[range],
        answers: list[tuple[list[float], dict[str, float]]],
        truncated: int,
    ) -> Scores:
        values = [0.0] * n
        usage: dict[str, float] = {}
        for chunk, (scores, chunk_usage) in zip(chunks, answers, strict=True):
            values[chunk.start : chunk.stop] = scores
            for key, value in chunk_usage.items():
                usage[key] = usage.get(key, 0.0) + value
        if self.price_per_million_tokens is not None and "total_tokens" in usage:
            usage["cost"] = usage["total_tokens"] * self.price_per_million_tokens / 1_000_000
        usage["requests"] = float(len(chunks))
        return Scores(
            values=values, truncated=truncated, usage=usage, max_tokens=self.max_document_tokens
        )

    # -- secrets and clients -------------------------------------------------------------------

    def _api_key(self, secret: Secret | None, required: bool) -> str | None:
        if secret is None and self.dialect.api_key_env is not None:
            secret = Secret.from_env(self.dialect.api_key_env)
        key = secret.resolve() if secret is not None else None
        if key is None and required:
            raise ConfigurationError(
                f"no API key for {self.base_url}: "
                f"set the {self.dialect.api_key_env} environment variable or pass api_key=..."
            )
        return key

    def _key_hint(self) -> str:
        env = self.dialect.api_key_env
        return f"api_key= or the {env} environment variable" if env else "api_key="

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _get_async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._async_lock:
            if self._async_client is None or self._async_loop is not loop:
                # httpx's async pool is bound to the loop that opened its connections.
                self._async_client = httpx.AsyncClient(
                    transport=self._async_transport, **self._client_args
                )
                self._async_loop = loop
            return self._async_client


def _int(options: Mapping[str, Any], name: str, *, minimum: int = 1) -> int:
    return int_option(options, name, int(DEFAULTS[name]), minimum=minimum)


def _number(options: Mapping[str, Any], name: str, *, minimum: float = 0.0) -> float:
    return number_option(options, name, float(DEFAULTS[name]), minimum=minimum)


def _detail(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(payload, dict):
        for key in ("detail", "message", "error"):
            if payload.get(key):
                return str(payload[key])[:500]
    return str(payload)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
