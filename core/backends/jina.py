"""Remote backend: the Jina rerank API and services that speak its shape (see ``dialects``).

One long-lived ``httpx.Client`` per backend, and one ``httpx.AsyncClient`` per event loop that
uses it (closed with that loop). Large candidate sets are split into chunks (documents and
approximate tokens per request), sent with bounded concurrency, retried with exponential backoff
and jitter where retrying can help, validated, and merged back into input order. A circuit
breaker (:mod:`rerankit.backends.circuit`) stops calling a service that keeps failing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple

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

from rerankit.backends.base import Backend, Request
from rerankit.backends.circuit import CircuitBreaker
from rerankit.backends.dialects import DIALECTS, Dialect
from rerankit.config import RerankerConfig
from rerankit.errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    RateLimitError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
    ServerError,
)
from rerankit.options import Option, OptionSchema
from rerankit.secrets import Secret
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

BYTES_PER_TOKEN = 4  # a rough, model-free token estimate: UTF-8 bytes / 4

Answer = tuple[list[float], dict[str, float]]  # one chunk's scores and usage figures


class _Plan(NamedTuple):
    """One request, truncated and split into the chunks sent as separate calls."""

    query: str
    documents: list[str]
    chunks: list[range]
    truncated: int


class _LoopClient(NamedTuple):
    """The AsyncClient of one event loop, and the async generator that closes it with the loop."""

    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


class JinaBackend(Backend):
    """Score documents with a remote rerank service (Jina, infinity, Cohere v2, TEI dialects).

    >>> rr = Reranker("BAAI/bge-reranker-base", backend="jina", dialect="tei",
    ...               base_url="http://localhost:8080")                   # doctest: +SKIP
    >>> rr.rank("what is rerankit?", ["a reranker", "a cat"]).scale        # doctest: +SKIP
    'logit'

    ``normalize`` follows the dialect (see :mod:`rerankit.backends.dialects`): TEI and infinity
    return the model's logit or, with ``normalize=True``, its sigmoid; Cohere and Jina return
    the service's own ``relevance_score`` (scale ``"service"``), which Cohere documents as a
    probability (so ``normalize=True`` is allowed there, and refused for Jina).
    """

    name: ClassVar[str] = "jina"
    remote: ClassVar[bool] = True
    options_schema: ClassVar[OptionSchema] = {
        "dialect": Option(
            "enum", "jina", "wire format of the service", choices=tuple(sorted(DIALECTS))
        ),
        "base_url": Option("str", None, "service URL; the dialect's public endpoint when unset"),
        "timeout": Option("float", 30.0, "seconds to wait for an answer", minimum=0.001),
        "connect_timeout": Option("float", 5.0, "seconds to wait for a connection", minimum=0.001),
        "max_documents_per_request": Option("int", 512, "documents per call at most", minimum=1),
        "max_request_tokens": Option(
            "int", 200_000, "approximate tokens per call at most", minimum=1
        ),
        "max_document_tokens": Option(
            "int", 8192, "approximate tokens per document; longer ones are cut", minimum=1
        ),
        "max_concurrency": Option("int", 4, "calls in flight at once at most", minimum=1),
        "max_retries": Option("int", 3, "retries of a 429, 5xx, timeout or lost call", minimum=0),
        "backoff_initial": Option("float", 0.5, "first retry delay in seconds", minimum=0),
        "backoff_max": Option("float", 8.0, "longest retry delay in seconds", minimum=0),
        "max_retry_after": Option(
            "float", 30.0, "longest Retry-After waited for, in seconds", minimum=0
        ),
        "failure_threshold": Option(
            "int", 5, "consecutive failed calls that open the circuit", minimum=1
        ),
        "reset_after": Option(
            "float", 30.0, "seconds the circuit stays open before a trial call", minimum=0
        ),
        "price_per_million_tokens": Option(
            "float", None, "adds usage['cost'] from the billed tokens", minimum=0
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
        base_url = options["base_url"] or self.dialect.default_base_url
        if not base_url:
            raise ConfigurationError(
                f"the {self.dialect.name!r} dialect has no public endpoint; pass "
                "base_url='http://host:port' of your server"
            )
        self.base_url = str(base_url).rstrip("/")
        self._safe_url = _without_credentials(self.base_url)  # for messages, reprs and logs
        self._closed = False
        self._key = self._api_key(config.api_key, base_url == self.dialect.default_base_url)
        initial = options["backoff_initial"]
        self._backoff = wait_exponential(
            multiplier=initial, max=options["backoff_max"]
        ) + wait_random(0, initial)
        self.circuit = CircuitBreaker(
            failure_threshold=options["failure_threshold"],
            reset_after=options["reset_after"],
            name=self._safe_url,
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        self._client_args: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": httpx.Timeout(options["timeout"], connect=options["connect_timeout"]),
        }
        self._client = httpx.Client(transport=transport, **self._client_args)
        self._async_transport = async_transport
        self._async_clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._async_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"JinaBackend(model={self.config.model!r}, dialect={self.dialect.name!r}, "
            f"base_url={self._safe_url!r})"
        )

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        """Every request's chunks as concurrent calls, at most ``max_concurrency`` at a time.

        ``top_k`` is not used: the service scores every document on its own, whatever is kept.
        """
        self._check_open()
        plans = [self._plan(query, texts) for query, texts in requests]
        calls = [(plan, chunk) for plan in plans for chunk in plan.chunks]
        if len(calls) <= 1:
            answers = [self._call(plan, chunk) for plan, chunk in calls]
        elif self.circuit.state != "closed":  # one trial call decides, then the rest go out
            first = self._call(*calls[0])
            answers = [first, *self.score_many_calls(calls[1:])]
        else:
            answers = self.score_many_calls(calls)
        return self._merged(plans, answers)

    def score_many_calls(self, calls: list[tuple[_Plan, range]]) -> list[Answer]:
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

    async def ascore_many(
        self, requests: Sequence[Request], *, top_k: int | None = None
    ) -> list[Scores]:
        """Async :meth:`score_many`: every request's chunks concurrently on this loop's client."""
        self._check_open()
        plans = [self._plan(query, texts) for query, texts in requests]
        client = await self._async_client()
        limit = asyncio.Semaphore(self.options["max_concurrency"])

        async def bounded(plan: _Plan, chunk: range) -> Answer:
            async with limit:
                return await self._acall(client, plan, chunk)

        calls = [(plan, chunk) for plan in plans for chunk in plan.chunks]
        first: list[Answer] = []
        if len(calls) > 1 and self.circuit.state != "closed":  # one trial call decides first
            first = [await self._acall(client, *calls[0])]
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
        self._closed = True
        self._client.close()
        self._release_async_clients(current=None)
        super().close()

    async def aclose(self) -> None:
        self._closed = True
        self._client.close()
        closer = self._release_async_clients(current=asyncio.get_running_loop())
        if closer is not None:
            await closer.aclose()
        super().close()

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(
                f"this {self.name!r} backend was closed; build a new Reranker to call "
                f"{self._safe_url} again"
            )

    # -- one request -----------------------------------------------------------------------

    def _call(self, plan: _Plan, chunk: range) -> Answer:
        body = self._body(plan, chunk)
        with self.circuit.trial():
            for attempt in Retrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    response = self._client.post(self.dialect.path, json=body)
                    answer = self._parse(response, len(chunk))
        return answer

    async def _acall(self, client: httpx.AsyncClient, plan: _Plan, chunk: range) -> Answer:
        body = self._body(plan, chunk)
        with self.circuit.trial():  # records cancellation too: CancelledError passes its finally
            async for attempt in AsyncRetrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    response = await client.post(self.dialect.path, json=body)
                    answer = self._parse(response, len(chunk))
        return answer

    def _body(self, plan: _Plan, chunk: range) -> dict[str, Any]:
        documents = plan.documents[chunk.start : chunk.stop]
        return self.dialect.body(
            self.config.model, plan.query, documents, normalize=self.config.normalize
        )

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Translate httpx's transport failures into rerankit's typed errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise RemoteTimeoutError(
                f"{self._safe_url}: no answer within the timeout ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteConnectionError(
                f"{self._safe_url}: connection failed "
                f"({type(exc).__name__}: {self._scrub(str(exc))})"
            ) from exc
        except httpx.DecodingError as exc:  # a body that its Content-Encoding cannot decode
            raise InvalidResponseError(
                f"{self._safe_url}: the response body could not be decoded "
                f"({self._scrub(str(exc))})"
            ) from exc

    def _retry_policy(self) -> dict[str, Any]:
        return {
            "retry": retry_if_exception(self._should_retry),
            "stop": stop_after_attempt(self.options["max_retries"] + 1),
            "wait": self._wait,
            "reraise": True,
            "before_sleep": self._log_retry,
        }

    def _should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.options["max_retry_after"]
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
            self._safe_url,
            state.attempt_number,
            type(exc).__name__,
        )

    def _parse(self, response: httpx.Response, expected: int) -> Answer:
        if response.status_code >= 400:
            raise self._error(response)
        try:
            payload = response.json()
        except ValueError as exc:
            raise InvalidResponseError(
                f"{self._safe_url}: the response is not JSON (status {response.status_code})"
            ) from exc
        return self._validated(payload, expected), self.dialect.usage(payload)

    def _validated(self, payload: Any, expected: int) -> list[float]:
        results = (
            payload
            if self.dialect.results_field is None
            else (payload.get(self.dialect.results_field) if isinstance(payload, dict) else None)
        )
        if not isinstance(results, list):
            raise InvalidResponseError(f"{self._safe_url}: the response has no list of results")
        scores: dict[int, float] = {}
        duplicates: set[int] = set()
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get(self.dialect.score_field) if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected:
                raise InvalidResponseError(
                    f"{self._safe_url}: result index {index!r} is not in range(0, {expected})"
                )
            if (
                isinstance(score, bool)
                or not isinstance(score, int | float)
                or not math.isfinite(score)
            ):
                raise InvalidResponseError(
                    f"{self._safe_url}: result {index} has no finite {self.dialect.score_field!r}"
                )
            if index in scores:
                duplicates.add(index)
            scores[index] = float(score)
        missing = sorted(set(range(expected)) - set(scores))
        if duplicates or missing:
            raise InvalidResponseError(
                f"{self._safe_url}: {expected} documents sent, but indices {missing} are missing "
                f"and {sorted(duplicates)} are repeated in the response"
            )
        return [scores[i] for i in range(expected)]

    def _error(self, response: httpx.Response) -> RemoteError:
        status = response.status_code
        detail = self._scrub(_detail(response))
        message = f"{self._safe_url}{self.dialect.path} answered {status}: {detail}"
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

    def _plan(self, query: str, texts: Sequence[str]) -> _Plan:
        documents, truncated = self._truncate(texts)
        return _Plan(query, documents, self._chunks(documents), truncated)

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

    def _chunks(self, documents: list[str]) -> list[range]:
        most_documents = self.options["max_documents_per_request"]
        most_tokens = self.options["max_request_tokens"]
        chunks: list[range] = []
        start, tokens = 0, 0
        for position, text in enumerate(documents):
            cost = math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + 1
            size = position - start
            if size and (size >= most_documents or tokens + cost > most_tokens):
                chunks.append(range(start, position))
                start, tokens = position, 0
            tokens += cost
        chunks.append(range(start, len(documents)))
        return chunks

    def _merged(self, plans: list[_Plan], answers: list[Answer]) -> list[Scores]:
        """Each request's chunk answers, in call order, merged back into one list of scores.

        Merging is sound because rerank APIs score pointwise: each document is scored against
        the query alone, so scores from different calls are comparable and can be sorted
        together. A listwise service would need the whole candidate set in one call instead.
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
                for key, value in chunk_usage.items():
                    usage[key] = usage.get(key, 0.0) + value
            if price is not None and "total_tokens" in usage:
                usage["cost"] = usage["total_tokens"] * price / 1_000_000
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

    # -- secrets and clients -------------------------------------------------------------------

    def _api_key(self, secret: Secret | None, required: bool) -> str | None:
        if secret is None and self.dialect.api_key_env is not None:
            secret = Secret.from_env(self.dialect.api_key_env)
        key = secret.resolve() if secret is not None else None
        if key is None and required:
            raise ConfigurationError(
                f"no API key for {self._safe_url}: "
                f"set the {self.dialect.api_key_env} environment variable or pass api_key=..."
            )
        return key

    def _key_hint(self) -> str:
        env = self.dialect.api_key_env
        return f"api_key= or the {env} environment variable" if env else "api_key="

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def _async_client(self) -> httpx.AsyncClient:
        """This event loop's client: httpx's async pool is bound to the loop that opened it."""
        loop = asyncio.get_running_loop()
        with self._async_lock:
            held = self._async_clients.get(loop)
            if held is not None:
                return held.client
            for stale in [other for other in self._async_clients if other.is_closed()]:
                # A loop closed without shutting down its async generators (asyncio.run,
                # asyncio.Runner and uvicorn always do): its client cannot be closed through
                # httpx any more, since closing an asyncio socket transport needs its loop.
                # Dropping it lets asyncio's transport finaliser close the sockets.
                del self._async_clients[stale]
            client = httpx.AsyncClient(transport=self._async_transport, **self._client_args)
            closer = self._close_with_loop(loop, client)
            self._async_clients[loop] = _LoopClient(client, closer)
        await anext(closer)  # its first step registers it with the loop's shutdown
        return client

    async def _close_with_loop(
        self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        """Wait, suspended, until ``loop`` shuts down its async generators, then close ``client``.

        A loop closes the async generators it started before it stops (``shutdown_asyncgens``),
        while it still runs: the one moment a client of that loop can still be closed properly.
        ``close``/``aclose`` end this generator earlier.
        """
        try:
            yield
        finally:
            with self._async_lock:
                held = self._async_clients.get(loop)
                if held is not None and held.client is client:  # not yet released by close()
                    del self._async_clients[loop]
            await client.aclose()

    def _release_async_clients(
        self, current: asyncio.AbstractEventLoop | None
    ) -> AsyncGenerator[None, None] | None:
        """Close every loop's client on its own loop; ``current``'s closer is returned to await."""
        with self._async_lock:
            held, self._async_clients = self._async_clients, {}
        own = None
        for loop, (_, closer) in held.items():
            if loop is current:
                own = closer
            elif loop.is_running():  # in another thread (or this one, from sync code)
                asyncio.run_coroutine_threadsafe(_finish(closer), loop)
            elif not loop.is_closed():
                loop.run_until_complete(closer.aclose())
            # a closed loop: see _async_client
        return own


async def _finish(closer: AsyncGenerator[None, None]) -> None:
    await closer.aclose()


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, which must never reach a message or log."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


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
