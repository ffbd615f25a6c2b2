"""Several queries' candidates as one flat list of (query, text) pairs, and back again.

Pair encoders (cross-encoders, FlashRank folders) score pairs of different queries in the same
batch; this is what lets ``rerankit serve`` merge concurrent requests into shared batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rerankit.types import Scores

Request = tuple[str, Sequence[str]]


@dataclass(frozen=True)
class FlatPairs:
    """Pairs in request order; ``spans[r]`` are the positions that belong to request ``r``."""

    queries: list[str]
    texts: list[str]
    spans: list[range]


def flatten(requests: Sequence[Request]) -> FlatPairs:
    """One list of pairs for all requests, remembering where each request's pairs are."""
    queries: list[str] = []
    texts: list[str] = []
    spans = []
    for query, candidates in requests:
        start = len(texts)
        texts.extend(candidates)
        queries.extend([query] * len(candidates))
        spans.append(range(start, len(texts)))
    return FlatPairs(queries, texts, spans)


def split(
    pairs: FlatPairs,
    values: list[float],
    truncated: list[bool],
    tokens: list[int],
    max_tokens: int,
) -> list[Scores]:
    """Per-request :class:`Scores` from per-pair values, truncation flags and token counts."""
    return [
        Scores(
            values=values[span.start : span.stop],
            truncated=sum(truncated[span.start : span.stop]),
            usage={"total_tokens": float(sum(tokens[span.start : span.stop]))},
            max_tokens=max_tokens,
        )
        for span in pairs.spans
    ]
