"""API keys held as secrets: resolved when needed, never shown, serialised only as references."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rerankit.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Secret:
    """An API key given literally (``from_token``) or read from the environment (``from_env``).

    >>> key = Secret.from_env("JINA_API_KEY")
    >>> key.to_dict()
    {'type': 'env_var', 'env_var': 'JINA_API_KEY'}

    A literal token is redacted in ``repr`` and refuses to serialise, so it cannot leak into
    a saved config file.
    """

    env_var: str | None = None
    _token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env_var: str) -> Secret:
        """A secret read from ``env_var`` each time it is resolved."""
        if not env_var:
            raise ConfigurationError("Secret.from_env needs a non-empty environment variable name")
        return cls(env_var=env_var)

    @classmethod
    def from_token(cls, token: str) -> Secret:
        """A literal secret; it is redacted in reprs and cannot be serialised."""
        if not token:
            raise ConfigurationError("Secret.from_token needs a non-empty token")
        return cls(_token=token)

    def resolve(self) -> str | None:
        """The secret's value, or ``None`` when its environment variable is unset or empty."""
        if self._token is not None:
            return self._token
        assert self.env_var is not None
        return os.environ.get(self.env_var) or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe reference; raises for literal tokens."""
        if self.env_var is None:
            raise ConfigurationError(
                "Refusing to serialise a literal API key. Use Secret.from_env('VAR_NAME') "
                "(or api_key_env='VAR_NAME') so that configs store the variable name instead."
            )
        return {"type": "env_var", "env_var": self.env_var}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Secret:
        """Inverse of :meth:`to_dict`."""
        if data.get("type") != "env_var" or not isinstance(data.get("env_var"), str):
            raise ConfigurationError(
                "A serialised secret must look like {'type': 'env_var', 'env_var': 'NAME'}; "
                f"got keys {sorted(data)}"
            )
        return cls.from_env(data["env_var"])

    def __repr__(self) -> str:
        if self.env_var is not None:
            return f"Secret.from_env({self.env_var!r})"
        return "Secret.from_token('**********')"
