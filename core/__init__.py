"""rerankit: one reranking API for RAG pipelines, many backends, thin framework adapters.

>>> from rerankit import Reranker, Document
>>> rr = Reranker("BAAI/bge-reranker-v2-m3")                       # doctest: +SKIP
>>> rr.rank("query", ["doc a", Document(text="doc b", id="b")], top_k=1)  # doctest: +SKIP

Importing this package imports no model library; a backend's dependencies load when it is chosen.
"""

from importlib.metadata import PackageNotFoundError, version

from rerankit.config import RerankerConfig
from rerankit.errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    InvalidInputError,
    InvalidResponseError,
    MissingDependencyError,
    RateLimitError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeoutError,
    RerankitError,
    ServerError,
    ServiceUnavailableError,
    UnknownBackendError,
)
from rerankit.reranker import Reranker
from rerankit.secrets import Secret
from rerankit.types import Document, RankResult, ScoredDocument

try:
    __version__ = version("rerankit")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigurationError",
    "Document",
    "InvalidInputError",
    "InvalidResponseError",
    "MissingDependencyError",
    "RankResult",
    "RateLimitError",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteTimeoutError",
    "Reranker",
    "RerankerConfig",
    "RerankitError",
    "ScoredDocument",
    "Secret",
    "ServerError",
    "ServiceUnavailableError",
    "UnknownBackendError",
    "__version__",
]
