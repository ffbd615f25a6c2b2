"""The pair-encoder pipeline: (query, passage) pairs read as one sequence, in shared batches.

One pipeline for every model that reads a query and a passage together and returns logits per
sequence: cross-encoders on torch and FlashRank / ``rerankit export`` folders on ONNX Runtime.
The backend supplies the model call (``forward``: numpy arrays in, numpy logits out); per call
the pipeline

1. tokenizes each unique query and each unique passage once, without special tokens or
   truncation;
2. caps each query at ``max_query_length`` tokens and fits each passage into ``max_length``:
   truncated, or with ``max_windows > 1`` cut into up to that many windows that each fit
   (passage tokens left over are counted in :attr:`Scores.truncated
   <rerankit.types.Scores.truncated>`);
3. groups the pairs into length-sorted batches under ``batch_size`` and ``max_batch_tokens``;
4. assembles each pair with a :class:`PairTemplate` (special tokens and type ids), pads the
   batch (right or left) and calls ``forward``;
5. maps logits to scores with :func:`head_scores`, keeps each passage's best window (MaxP) and
   scatters the scores back in input order.

Steps 1-3 and 5 do not depend on the model kind: a causal-LM or T5 reranker (``prefix + query +
middle + passage + suffix``, with prompt text around each query and passage; left padding and
the score read at the last token for causal LMs) is another :class:`PairTemplate` and another
``forward`` (:mod:`rerankit.pipelines.generative`). The pipeline needs numpy and ``tokenizers``
only, never torch (FlashRank runs without it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from rerankit.backends.base import Request, query_token_cap
from rerankit.batching import length_sorted_batches
from rerankit.errors import BackendError, ConfigurationError
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

# The arrays of a batch; each forward feeds the ones its model takes.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

Batch = dict[str, npt.NDArray[np.int64]]
Forward = Callable[[Batch], npt.ArrayLike]


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """How a query's and a passage's token ids become one input, and which side is padded.

    The input is ``prefix + query + middle + passage + suffix``; ``special_types`` holds the
    type ids of the prefix, middle and suffix tokens in that order (empty: all 0). Pair encoders
    read theirs from the tokenizer (:meth:`from_tokenizer`); a causal-LM reranker passes its
    prompt's pieces and ``padding_side="left"``.

    ``query_text`` and ``passage_text`` are text put before and after each query and passage
    before it is tokenized (``("A: ", "")`` tokenizes ``"A: " + query`` as one string). Each
    joint between them and the fixed pieces must be a boundary of the tokenizer's
    pre-tokenizer, so that tokenizing the pieces one by one gives the ids of the whole prompt.

    >>> template = PairTemplate(prefix=(101,), middle=(102,), suffix=(102,), passage_type=1,
    ...                         special_types=(0, 0, 1))
    >>> template.assemble([7, 8], [9])
    ([101, 7, 8, 102, 9, 102], [0, 0, 0, 0, 1, 1])
    """

    prefix: tuple[int, ...] = ()
    middle: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    query_type: int = 0
    passage_type: int = 0
    special_types: tuple[int, ...] = ()
    padding_side: Literal["left", "right"] = "right"
    query_text: tuple[str, str] = ("", "")
    passage_text: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        if self.special_types and len(self.special_types) != self.reserved_tokens:
            raise ValueError(
                f"special_types has {len(self.special_types)} type ids for "
                f"{self.reserved_tokens} prefix, middle and suffix tokens"
            )

    @property
    def reserved_tokens(self) -> int:
        """Tokens the template adds around the query and the passage."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def assemble(self, query: Sequence[int], passage: Sequence[int]) -> tuple[list[int], list[int]]:
        """The input ids and type ids of one pair."""
        ids = [*self.prefix, *query, *self.middle, *passage, *self.suffix]
        special = self.special_types or (0,) * self.reserved_tokens
        after_middle = len(self.prefix) + len(self.middle)
        types = [
            *special[: len(self.prefix)],
            *[self.query_type] * len(query),
            *special[len(self.prefix) : after_middle],
            *[self.passage_type] * len(passage),
            *special[after_middle:],
        ]
        return ids, types

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> PairTemplate:
        """The special tokens and type ids ``tokenizer``'s post-processor puts around a pair.

        ``tokenizer`` must have truncation and padding off (the pipeline turns them off).
        Read from ``Tokenizer.post_process`` on one sample pair, then checked on a second pair
        of other lengths: the template then gives exactly what the tokenizer gives (and what
        ``transformers`` gives with ``truncation="only_second"``). Assembling from the template
        instead of calling ``post_process`` per pair keeps a truncated sequence's overflow
        pieces out of every pair (they made a capped 2,000-token query 14x slower per pair).
        """
        if tokenizer.truncation is not None or tokenizer.padding is not None:
            raise ValueError("turn the tokenizer's truncation and padding off first")
        template = _read_template(tokenizer, "query", "passage")
        query, passage = (
            tokenizer.encode(text, add_special_tokens=False)
            for text in ("a longer sample query", "two more passage words and some more")
        )
        expected = tokenizer.post_process(query, passage, add_special_tokens=True)
        if template.assemble(query.ids, passage.ids) != (expected.ids, expected.type_ids):
            raise BackendError(
                "the tokenizer's post-processor does not put fixed tokens around a pair of "
                "sequences; rerankit cannot batch this model"
            )
        return template


def _read_template(tokenizer: Tokenizer, query_text: str, passage_text: str) -> PairTemplate:
    query, passage = (
        tokenizer.encode(text, add_special_tokens=False) for text in (query_text, passage_text)
    )
    pair = tokenizer.post_process(query, passage, add_special_tokens=True)
    ids, types = pair.ids, pair.type_ids
    start = _find(ids, query.ids, 0)
    second = -1 if start < 0 else _find(ids, passage.ids, start + len(query.ids))
    if not query.ids or not passage.ids or second < 0:
        raise BackendError(
            "cannot find a sample query's and passage's tokens in what the tokenizer's "
            "post-processor makes of the pair; rerankit cannot batch this model"
        )
    middle = start + len(query.ids)
    end = second + len(passage.ids)
    return PairTemplate(
        prefix=tuple(ids[:start]),
        middle=tuple(ids[middle:second]),
        suffix=tuple(ids[end:]),
        query_type=types[start],
        passage_type=types[second],
        special_types=(*types[:start], *types[middle:second], *types[end:]),
    )


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    """The first position at or after ``start`` where ``needle`` occurs, else -1."""
    for position in range(start, len(haystack) - len(needle) + 1):
        if haystack[position : position + len(needle)] == needle:
            return position
    return -1


def window_starts(length: int, budget: int, max_windows: int) -> list[int]:
    """Where the windows of a ``length``-token passage start when ``budget`` tokens fit beside
    the query: 0 alone (the first ``budget`` tokens) when it fits or ``max_windows`` is 1, else
    up to ``max_windows`` consecutive windows, the last one ending where the passage does
    (overlapping the one before) unless the passage needs more windows than that.

    >>> window_starts(300, 100, 1), window_starts(250, 100, 4), window_starts(900, 100, 3)
    ([0], [0, 100, 150], [0, 100, 200])
    """
    if length <= budget or max_windows == 1:
        return [0]
    starts = list(range(0, length, budget))[:max_windows]
    if starts[-1] + budget >= length:
        starts[-1] = length - budget  # a full last window, overlapping the one before
    return starts


def check_head_size(labels: int, model: str) -> None:
    """Raise :class:`BackendError` unless a model returns one or two logits per pair."""
    if labels not in (1, 2):
        raise BackendError(
            f"{model!r} has a {labels}-label head; a reranker needs one logit (relevance) or "
            "two (not relevant, relevant)"
        )


def head_scores(logits: npt.ArrayLike, *, normalize: bool, model: str) -> npt.NDArray[np.float64]:
    """One score per row of ``logits``: the relevance log-odds, or its sigmoid with normalize.

    One logit: the logit itself. Two logits (not relevant, relevant): ``logit[1] - logit[0]``,
    the log-odds of the positive class, whose sigmoid equals the softmax of that class. The
    same pair therefore gets the same number from every backend and every head shape.
    """
    values = np.asarray(logits, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise BackendError(f"{model!r} returns logits of shape {values.shape}; expected 2-D")
    check_head_size(values.shape[1], model)
    raw = values[:, 0] if values.shape[1] == 1 else values[:, 1] - values[:, 0]
    if not normalize:
        return raw
    return np.exp(-np.logaddexp(0.0, -raw))  # the sigmoid, without overflow for large |raw|


class PairEncoderPipeline:
    """Scores several queries' candidates in shared length-sorted batches with one model.

    ``tokenizer`` is owned by the pipeline from now on (its truncation and padding are turned
    off: the pipeline truncates itself); ``forward`` runs the model on one padded batch and
    returns its logits; ``name`` names the model in errors. ``max_passage_length`` caps every
    passage before it is fitted into ``max_length`` (FlagEmbedding's LLM rerankers do). A query
    capped at ``max_query_length`` keeps the template's text after it (``query_text[1]``).
    ``max_windows`` > 1 scores a passage that does not fit as consecutive windows of the tokens
    that fit (the last one ends where the passage does) and keeps the best window's score
    (MaxP). Thread-safe: one call tokenizes and runs the model at a time.

    >>> pipeline = PairEncoderPipeline(tokenizer, forward, max_length=512, batch_size=32,
    ...     max_batch_tokens=4096, pad_id=0, normalize=False, name="my-model")  # doctest: +SKIP
    >>> pipeline.score_many([("what is DNA?", ["DNA is ...", "a cat"])])  # doctest: +SKIP
    [Scores(values=[3.1, -8.2], truncated=0, usage={'total_tokens': 14.0}, max_tokens=512)]
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        forward: Forward,
        *,
        max_length: int,
        batch_size: int,
        max_batch_tokens: int,
        pad_id: int,
        normalize: bool,
        name: str,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        max_windows: int = 1,
        template: PairTemplate | None = None,
    ) -> None:
        if max_windows < 1:
            raise ConfigurationError(f"max_windows must be at least 1, got {max_windows}")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.template = PairTemplate.from_tokenizer(tokenizer) if template is None else template
        self.max_length = max_length
        self.max_query_length = query_token_cap(
            max_query_length, max_length, self.template.reserved_tokens
        )
        self.max_passage_length = max_passage_length
        self.max_windows = max_windows
        # A capped query keeps the ids of the text after it (the prompt's "\n" before the
        # passage), cut from its own end instead.
        closing = self.template.query_text[1]
        self._query_closing = tokenizer.encode(closing, add_special_tokens=False).ids
        if len(self._query_closing) >= self.max_query_length:
            raise ConfigurationError(
                f"max_query_length={self.max_query_length} leaves no room for a query before "
                f"the prompt's {closing!r}"
            )
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.pad_id = pad_id
        self.normalize = normalize
        self.name = name
        self._tokenizer = tokenizer
        self._forward = forward
        self._lock = threading.Lock()

    @property
    def scale(self) -> str:
        """What the scores are: ``"logit"`` (log-odds), or ``"probability"`` with normalize."""
        return "probability" if self.normalize else "logit"

    def score_many(self, requests: Sequence[Request]) -> list[Scores]:
        """One :class:`Scores` per request, in input order; each distinct text is tokenized once."""
        with self._lock:
            queries = self._tokenize_queries([query for query, _ in requests])
            passages = self._tokenize(
                [text for _, texts in requests for text in texts], self.template.passage_text
            )
            reserved = self.template.reserved_tokens
            pairs: list[tuple[list[int], list[int]]] = []
            owners: list[int] = []  # the passage (flat index) of each pair
            truncated: list[bool] = []
            for query, texts in requests:
                query_ids = queries[query]
                budget = self.max_length - reserved - len(query_ids)
                for text in texts:
                    passage_ids = passages[text]
                    capped = passage_ids[: self.max_passage_length]  # a slice to None keeps all
                    kept = min(len(capped), budget * self.max_windows)
                    truncated.append(len(passage_ids) > kept)
                    for window in self._windows(capped, budget):
                        pairs.append((query_ids, window))
                        owners.append(len(truncated) - 1)
            lengths = [reserved + len(q) + len(p) for q, p in pairs]
            values = np.zeros(len(pairs), dtype=np.float64)
            for batch in length_sorted_batches(
                lengths, max_batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens
            ):
                logits = self._forward(self._pad([pairs[i] for i in batch]))
                values[batch] = head_scores(logits, normalize=self.normalize, model=self.name)
        best = np.full(len(truncated), -np.inf)
        np.maximum.at(best, owners, values)
        tokens = np.zeros(len(truncated), dtype=np.int64)
        np.add.at(tokens, owners, lengths)
        return self._scatter(requests, best.tolist(), truncated, tokens.tolist())

    def _windows(self, passage: list[int], budget: int) -> list[list[int]]:
        """The passage as it is scored (see :func:`window_starts`)."""
        starts = window_starts(len(passage), budget, self.max_windows)
        return [passage[start : start + budget] for start in starts]

    def _tokenize_queries(self, queries: list[str]) -> dict[str, list[int]]:
        before, after = self.template.query_text
        capped = {}
        for query, ids in self._tokenize(queries, self.template.query_text).items():
            if len(ids) > self.max_query_length:
                logger.warning(
                    "query truncated to max_query_length=%d tokens", self.max_query_length
                )
                if after:
                    (head,) = self._tokenize([query], (before, "")).values()
                    keep = self.max_query_length - len(self._query_closing)
                    ids = head[:keep] + self._query_closing
            capped[query] = ids[: self.max_query_length]  # a token boundary
        return capped

    def _tokenize(
        self, texts: list[str], affixes: tuple[str, str] = ("", "")
    ) -> dict[str, list[int]]:
        """Token ids of each distinct text between ``affixes``, without special tokens."""
        unique = list(dict.fromkeys(texts))
        before, after = affixes
        encodings = self._tokenizer.encode_batch_fast(
            [before + text + after for text in unique], add_special_tokens=False
        )
        return {text: encoding.ids for text, encoding in zip(unique, encodings, strict=True)}

    def _pad(self, pairs: list[tuple[list[int], list[int]]]) -> Batch:
        rows = [self.template.assemble(query, passage) for query, passage in pairs]
        width = max(len(ids) for ids, _ in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        for row, (ids, types) in enumerate(rows):
            start = 0 if self.template.padding_side == "right" else width - len(ids)
            columns = slice(start, start + len(ids))
            input_ids[row, columns] = ids
            attention_mask[row, columns] = 1
            token_type_ids[row, columns] = types
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }

    def _scatter(
        self,
        requests: Sequence[Request],
        values: list[float],
        truncated: list[bool],
        lengths: list[int],
    ) -> list[Scores]:
        scores = []
        start = 0
        for _, texts in requests:
            span = slice(start, start + len(texts))
            scores.append(
                Scores(
                    values=values[span],
                    truncated=sum(truncated[span]),
                    usage={"total_tokens": float(sum(lengths[span]))},
                    max_tokens=self.max_length,
                    windows=self.max_windows,
                )
            )
            start = span.stop
        return scores
