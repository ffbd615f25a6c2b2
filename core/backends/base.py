"""The one seam every backend implements: a query and its texts in, one value per text out.

Pointwise backends (pair encoders, LLM and late-interaction rerankers, rerank APIs) implement
:meth:`Backend.score`: comparable scores on the scale named by :attr:`Backend.scale`.
Listwise backends set ``scale = "rank"``: they order the texts (an LLM reorders windows), and
return for each text a rank-derived value (higher is better, ``len(texts)`` for the first)
that orders one query's documents but is not comparable across queries; they may use the
``top_k`` hint of :meth:`Backend.score_many` to stop once the top cannot change. Sorting,
cutting, thresholds and fallbacks live in :class:`~rerankit.Reranker`, never here.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError
from rerankit.images import ImagePassage
from rerankit.options import Option, OptionSchema, parse_options
from rerankit.types import Scores

Request = tuple[str, Sequence[str]]
# What a backend that takes images (``accepts_images``) scores: texts and image documents.
Passage = str | ImagePassage

# What the numbers of each scale are (README: "Score scales").
SCALES = {
    "logit": "the model's raw relevance logit (log-odds); unbounded, higher is better",
    "probability": "a relevance probability in [0, 1] (normalize=True)",
    "maxsim": "ColBERT MaxSim: the sum over query tokens of the best cosine similarity",
    "maxsim-mean": "ColBERT MaxSim averaged over query tokens (divide_by_query_length=True)",
    "service": "the remote service's relevance_score, as it returns it",
    "rank": "a listwise order: len(texts) for the first document down to 1; not a score",
    "unspecified": "a backend that does not say (out-of-tree backends may leave it unset)",
}

# Options shared by the backends that load models with transformers.
HUB_OPTIONS: dict[str, Option] = {
    "revision": Option("str", None, "hub branch, tag or commit to load"),
    "cache_dir": Option("str", None, "where hub downloads are kept"),
    "trust_remote_code": Option("bool", False, "run the model folder's own Python code"),
}

# Options shared by the pair-encoder backends (cross-encoder, flashrank).
WINDOW_OPTIONS: dict[str, Option] = {
    "max_windows": Option(
        "int",
        1,
        "score a passage longer than max_length as up to this many windows of it and keep the "
        "best window's score (MaxP); 1 truncates it",
        minimum=1,
    ),
}


class Backend(ABC):
    """Base class for scoring backends.

    Subclasses implement :meth:`score` (or :meth:`score_many` for shared batches) and declare
    ``options_schema``; the parsed options are in ``self.options`` before any model loads.
    ``scale`` names what the numbers are (see :data:`SCALES`).
    """

    name: ClassVar[str]
    options_schema: ClassVar[OptionSchema] = {}
    # Scores on a service (each call may cost money), not here. Not a ClassVar: a backend that
    # reaches its model either way (listwise: an HTTP endpoint or a local model) sets it per
    # instance.
    remote: bool = False
    scale: str = "unspecified"
    # Takes image documents: its score methods then receive :class:`ImagePassage` items too.
    accepts_images: bool = False

    def __init__(self, config: RerankerConfig) -> None:
        self.options: dict[str, Any] = parse_options(
            self.options_schema, config.options, owner=f"the {self.name!r} backend"
        )
        self.config = config
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> Scores:
        """Score every text against ``query``; one float per text, in input order."""

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        """Score several queries' candidates; pair encoders share batches across queries.

        ``top_k`` is a hint that only the best ``top_k`` of each request will be kept:
        pointwise backends ignore it, listwise ones may stop early (every text still gets a
        value).
        """
        return [self.score(query, texts) for query, texts in requests]

    async def ascore_many(
        self, requests: Sequence[Request], *, top_k: int | None = None
    ) -> list[Scores]:
        """Async :meth:`score_many`; local backends run it on their own worker thread.

        The worker is the backend's, not the event loop's default executor, so requests that
        wait for a busy model never hold the loop's threads.
        """
        loop = asyncio.get_running_loop()
        work = self._score_many_in_worker
        return await loop.run_in_executor(self._worker(), work, requests, top_k)

    def _score_many_in_worker(self, requests: Sequence[Request], top_k: int | None) -> list[Scores]:
        try:
            return self.score_many(requests, top_k=top_k)
        except StopIteration as exc:  # a Future cannot hold one: the caller would wait forever
            raise BackendError(f"the {self.name!r} backend failed: StopIteration {exc}") from exc

    def refuse_normalize(self, why: str) -> None:
        """Raise if ``normalize=True`` was asked of a backend whose scores have no such form."""
        if self.config.normalize:
            raise ConfigurationError(f"normalize=True is not available on {self.name!r}: {why}")

    def close(self) -> None:
        """Release resources (clients, sessions, the worker thread)."""
        executor, self._executor = getattr(self, "_executor", None), None
        if executor is not None:
            executor.shutdown(wait=False)

    async def aclose(self) -> None:
        """Async :meth:`close`, for backends that hold async clients."""
        self.close()

    def _worker(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                # One worker: local backends score one batch at a time (more threads would
                # only wait on the model's lock or oversubscribe the same cores).
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"rerankit-{self.name}")
            return self._executor


# Model types whose position ids start after the padding index (RoBERTa's scheme): two of their
# max_position_embeddings are never read.
OFFSET_POSITIONS = ("roberta", "camembert")


def position_limit(config: Mapping[str, Any]) -> int | None:
    """The most tokens an encoder's position embeddings take (from its ``config.json``), or
    None when the config does not say."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or positions <= 0:
        return None
    offset = any(kind in str(config.get("model_type", "")) for kind in OFFSET_POSITIONS)
    return positions - 2 if offset else positions


def query_token_cap(given: int | None, max_length: int, special_tokens: int) -> int:
    """``max_query_length`` for pair inputs: given, or half of ``max_length``; checked to fit."""
    longest = max_length - special_tokens - 1  # at least one passage token must fit
    if longest < 1:
        raise ConfigurationError(
            f"max_length={max_length} leaves no room for a query and a passage beside the "
            f"{special_tokens} tokens the model adds; raise max_length"
        )
    cap = min(max_length // 2, longest) if given is None else given
    if not 0 < cap <= longest:
        raise ConfigurationError(
            f"max_query_length must be between 1 and {longest} for max_length={max_length}, "
            f"got {cap}"
        )
    return cap
