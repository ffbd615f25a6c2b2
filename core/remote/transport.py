"""One HTTP transport for every remote backend; it knows nothing of any API's shape.

A wire format (:mod:`~rerankit.remote.rerank_api`, :mod:`~rerankit.remote.chat`) builds a JSON
body and reads the decoded answer; :class:`HTTPTransport` does everything in between:

* one long-lived ``httpx.Client``, and one ``httpx.AsyncClient`` per event loop that uses it
  (closed with that loop);
* timeouts, and retries with exponential backoff and jitter where retrying can help (429,
  honouring ``Retry-After``; 5xx; timeouts; lost connections);
* the circuit breaker (:mod:`~rerankit.remote.circuit`), passed by every call;
* errors: HTTP statuses and httpx's failures become rerankit's typed errors at this one
  boundary, with the API key scrubbed from anything the service said and credentials taken out
  of the URL before it reaches a message, a repr or a log.

Usage figures (tokens, requests) and their cost are summed by :mod:`~rerankit.remote.usage`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

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

from rerankit.errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    InvalidResponseError,
    RateLimitError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
    ServerError,
)
from rerankit.remote import TRANSPORT_OPTIONS
from rerankit.remote.circuit import CircuitBreaker

logger = logging.getLogger("rerankit")

T = TypeVar("T")


class _LoopClient(NamedTuple):
    """The AsyncClient of one event loop, and the async generator that closes it with the loop."""

    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]


class HTTPTransport:
    """POST JSON to one service with retries, a circuit breaker and typed errors.

    >>> transport = HTTPTransport("http://localhost:8000", api_key=None, options={},
    ...                           owner="the 'listwise' backend")
    >>> transport.safe_url
    'http://localhost:8000'
    >>> transport.close()

    ``options`` holds :data:`TRANSPORT_OPTIONS` (missing ones take their defaults). ``api_key``
    goes out as a bearer token and is scrubbed from every message; ``key_hint`` says where it
    comes from, for the message of a 401. ``transport`` / ``async_transport`` replace httpx's
    network transports (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        options: Mapping[str, Any],
        owner: str,
        key_hint: str = "api_key=",
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = {
            name: option.default if options.get(name) is None else options[name]
            for name, option in TRANSPORT_OPTIONS.items()
        }
        # Credentials in the URL go out as basic auth, never in the URL itself: httpx logs
        # every request's URL (at INFO), and messages and reprs show it too.
        url = httpx.URL(base_url.rstrip("/"))
        auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        self.base_url = self.safe_url = without_credentials(str(url))
        self._key = api_key
        self._key_hint = key_hint
        self._owner = owner
        self._closed = False
        initial = self.options["backoff_initial"]
        self._backoff = wait_exponential(
            multiplier=initial, max=self.options["backoff_max"]
        ) + wait_random(0, initial)
        self.circuit = CircuitBreaker(
            failure_threshold=self.options["failure_threshold"],
            reset_after=self.options["reset_after"],
            name=self.safe_url,
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client_args: dict[str, Any] = {
            "base_url": self.base_url,
            "auth": auth,
            "headers": headers,
            "timeout": httpx.Timeout(
                self.options["timeout"], connect=self.options["connect_timeout"]
            ),
        }
        self._client = httpx.Client(transport=transport, **self._client_args)
        self._async_transport = async_transport
        self._async_clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._async_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HTTPTransport({self.safe_url!r})"

    def post(self, path: str, body: Mapping[str, Any], read: Callable[[Any], T]) -> T:
        """POST ``body`` to ``path``; ``read`` turns the decoded JSON answer into the result.

        The call passes the circuit breaker and is retried where that can help; ``read`` raises
        :class:`~rerankit.errors.InvalidResponseError` for an answer it cannot use.
        """
        self.check_open()
        with self.circuit.trial():
            for attempt in Retrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    answer = read(self._payload(path, self._client.post(path, json=body)))
        return answer

    async def apost(self, path: str, body: Mapping[str, Any], read: Callable[[Any], T]) -> T:
        """Async :meth:`post`, on this event loop's own client."""
        self.check_open()
        client = await self._async_client()
        with self.circuit.trial():  # records cancellation too: CancelledError passes its finally
            async for attempt in AsyncRetrying(**self._retry_policy()):
                with attempt, self._transport_errors():
                    response = await client.post(path, json=body)
                    answer = read(self._payload(path, response))
        return answer

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        return text.replace(self._key, "***") if self._key else text

    def check_open(self) -> None:
        """Raise :class:`~rerankit.errors.BackendError` once :meth:`close` was called."""
        if self._closed:
            raise BackendError(
                f"{self._owner} was closed; build a new Reranker to call {self.safe_url} again"
            )

    def close(self) -> None:
        """Close the sync client and every event loop's client (each on its own loop)."""
        self._closed = True
        self._client.close()
        self._release_async_clients(current=None)

    async def aclose(self) -> None:
        """Async :meth:`close`: this loop's client is closed here and awaited."""
        self._closed = True
        self._client.close()
        closer = self._release_async_clients(current=asyncio.get_running_loop())
        if closer is not None:
            await closer.aclose()

    # -- one call ------------------------------------------------------------------------------

    def _payload(self, path: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise self._error(path, response)
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponseError(
                f"{self.safe_url}: the response is not JSON (status {response.status_code})"
            ) from exc

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """Translate httpx's transport failures into rerankit's typed errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise RemoteTimeoutError(
                f"{self.safe_url}: no answer within the timeout ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteConnectionError(
                f"{self.safe_url}: connection failed ({type(exc).__name__}: {self.scrub(str(exc))})"
            ) from exc
        except httpx.DecodingError as exc:  # a body that its Content-Encoding cannot decode
            raise InvalidResponseError(
                f"{self.safe_url}: the response body could not be decoded ({self.scrub(str(exc))})"
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
            self.safe_url,
            state.attempt_number,
            type(exc).__name__,
        )

    def _error(self, path: str, response: httpx.Response) -> RemoteError:
        status = response.status_code
        detail = self.scrub(_detail(response))[:500]  # cut after scrubbing: no key prefix left
        message = f"{self.safe_url}{path} answered {status}: {detail}"
        if status in (401, 403):
            return AuthenticationError(
                f"{message}. Check the API key ({self._key_hint}).", status=status, detail=detail
            )
        if status == 429:
            return RateLimitError(
                message, status=status, detail=detail, retry_after=_retry_after(response)
            )
        if status >= 500:
            return ServerError(message, status=status, detail=detail)
        return BadRequestError(message, status=status, detail=detail)

    # -- one async client per event loop ---------------------------------------------------------

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


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, which must never reach a message or log."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


async def _finish(closer: AsyncGenerator[None, None]) -> None:
    await closer.aclose()


def _detail(response: httpx.Response) -> str:
    """The server's own message: its ``detail``, ``message`` or ``error`` field, else the body."""
    try:
        payload = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(payload, dict):
        for key in ("detail", "message", "error"):
            value = payload.get(key)
            if isinstance(value, dict) and value.get("message"):  # OpenAI: {"error": {...}}
                value = value["message"]
            if value:
                return str(value)
    return str(payload)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
