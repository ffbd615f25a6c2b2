"""The one seam every backend implements: texts in, one float score per text out."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rerankit.config import RerankerConfig, is_finite_number
from rerankit.errors import ConfigurationError
from rerankit.types import Scores


class Backend(ABC):
    """Base class for scoring backends.

    Subclasses implement :meth:`score`; ranking, cutting and validation live in
    :class:`~rerankit.Reranker`. ``option_names`` lists the backend-specific keys accepted in
    ``RerankerConfig.options``; any other key is a :class:`ConfigurationError`.
    """

    name: ClassVar[str]
    option_names: ClassVar[frozenset[str]] = frozenset()
    remote: ClassVar[bool] = False  # scores on a service (each call may cost money), not here

    def __init__(self, config: RerankerConfig) -> None:
        unknown = sorted(set(config.options) - self.option_names)
        if unknown:
            raise ConfigurationError(
                f"the {self.name!r} backend does not accept the options {unknown}; "
                f"valid options are {sorted(self.option_names)}"
            )
        self.config = config

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> Scores:
        """Score every text against ``query``; one float per text, in input order."""

    def score_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[Scores]:
        """Score several queries' candidates; pair encoders share batches across queries."""
        return [self.score(query, texts) for query, texts in requests]

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        """Async :meth:`score`; local backends run it in a worker thread."""
        return await asyncio.to_thread(self.score, query, texts)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release resources (clients, sessions); the default holds none."""

    async def aclose(self) -> None:
        """Async :meth:`close`, for backends that hold async clients."""
        self.close()


def int_option(options: Mapping[str, Any], name: str, default: int, *, minimum: int = 1) -> int:
    """The integer option ``name`` (``default`` when unset), or a :class:`ConfigurationError`."""
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"option {name} must be an integer >= {minimum}, got {value!r}")
    return value


def number_option(
    options: Mapping[str, Any], name: str, default: float, *, minimum: float = 0.0
) -> float:
    """The finite number option ``name`` (``default`` when unset), or a ConfigurationError."""
    value = options.get(name)
    if value is None:
        return default
    if not is_finite_number(value) or value < minimum:
        raise ConfigurationError(f"option {name} must be a number >= {minimum}, got {value!r}")
    return float(value)


def query_token_cap(options: Mapping[str, Any], max_length: int, special_tokens: int) -> int:
    """``max_query_length`` for pair encoders: given, or half of ``max_length``; checked to fit."""
    cap = int_option(options, "max_query_length", max_length // 2)
    longest = max_length - special_tokens - 1
    if not 0 < cap <= longest:
        raise ConfigurationError(
            f"max_query_length must be between 1 and {longest} for max_length={max_length}, "
            f"got {cap}"
        )
    return cap
