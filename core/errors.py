"""The rerankit exception tree.

    RerankitError
    ├── MissingDependencyError   (also ImportError)  an optional extra is not installed
    ├── InvalidInputError        (also ValueError)   bad query, documents, top_k or threshold
    ├── ConfigurationError       (also ValueError)   bad or unserialisable configuration
    │   └── UnknownBackendError                      no backend matches the name or model
    └── BackendError             (also RuntimeError) a backend failed while loading or scoring

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
