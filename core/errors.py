"""The rerankit exception tree.

    RerankitError
    ├── MissingDependencyError   (also ImportError)  an optional extra is not installed
    ├── InvalidInputError        (also ValueError)   bad query, documents, top_k or threshold
    ├── ConfigurationError       (also ValueError)   bad or unserialisable configuration
    │   └── UnknownBackendError                      no backend matches the name or model
    └── BackendError             (also RuntimeError) a backend failed while loading or scoring
        ├── RemoteError                                  a rerank service answered with an error
        │   ├── AuthenticationError                      401 / 403: check the API key
        │   └── BadRequestError                          400 / 404 / 413 / 422: the server's detail
        └── ServiceUnavailableError                      the service is unusable now: fallback
            ├── RateLimitError       (also RemoteError)  429, still after retries
            ├── ServerError          (also RemoteError)  5xx, still after retries
            ├── RemoteTimeoutError                       no answer within the timeout, after retries
            ├── RemoteConnectionError                    could not connect, after retries
            ├── InvalidResponseError                     malformed JSON, missing/duplicate indices
            └── CircuitOpenError                         too many recent failures; not called

Every message names the bad value and what to do about it.
"""

from __future__ import annotations


class RerankitError(Exception):
    """Root of every error rerankit raises on purpose."""


class MissingDependencyError(RerankitError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        self.install_command = f'pip install "rerankit[{extra}]"'
        super().__init__(
            f"{purpose} needs the Python package {module!r}, which is not installed. "
            f"Install it with: {self.install_command}"
        )


class InvalidInputError(RerankitError, ValueError):
    """The query, documents or ranking options are not valid."""


class ConfigurationError(RerankitError, ValueError):
    """The configuration is invalid, or cannot be serialised safely."""


class UnknownBackendError(ConfigurationError):
    """No backend matches the requested name, model folder or model name."""


class BackendError(RerankitError, RuntimeError):
    """A backend failed to load a model or to score documents."""


class RemoteError(BackendError):
    """A rerank service answered with an error status; carries the status and its message."""

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        self.status = status
        self.detail = detail
        super().__init__(message)


class AuthenticationError(RemoteError):
    """The service rejected the API key (401 or 403)."""


class BadRequestError(RemoteError):
    """The service rejected the request (400, 404, 413, 422); never retried."""


class ServiceUnavailableError(BackendError):
    """The service cannot be used right now; a configured fallback takes over."""


class RateLimitError(RemoteError, ServiceUnavailableError):
    """429 Too Many Requests, still after the configured retries."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, status=status, detail=detail)


class ServerError(RemoteError, ServiceUnavailableError):
    """A 5xx answer, still after the configured retries."""


class RemoteTimeoutError(ServiceUnavailableError):
    """The service did not answer within the timeout, after the configured retries."""


class RemoteConnectionError(ServiceUnavailableError):
    """The service could not be reached, after the configured retries."""


class InvalidResponseError(ServiceUnavailableError):
    """The service's answer is malformed: not JSON, indices missing or repeated, bad scores."""


class CircuitOpenError(ServiceUnavailableError):
    """The circuit breaker is open after repeated failures; the service was not called."""
