"""Long documents in training, cut the way a reranker with ``max_windows`` reads them.

A reranker with ``max_windows=N`` scores a document that does not fit beside the query in
``max_length`` as up to N windows and keeps the best window's score. A model trained on each
document's first ``max_length`` tokens only never learns from the rest: for a SciFact claim the
evidence is usually in an abstract's results, past the first 128 tokens. With ``max_windows`` > 1,
training and validation pairs use, for each (query, document), the one window of those N with
the largest sum of the IDF (among the documents in training) of the query tokens it contains;
a teacher, if any, scores each document as its own reranker reads it. Validation reads the
picked window too: a cheaper stand-in for the reranker's read, which scores every window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rerankit.backends.base import query_token_cap
from rerankit.errors import ConfigurationError
from rerankit.pipelines.pair_encoder import window_starts


def check_tokenizer(tokenizer: Any, max_length: int, max_windows: int) -> None:
    """Refuse, before anything is written, windows that cannot be cut: a model without a fast
    tokenizer (its offsets cut the text), or a ``max_length`` with no room for a query."""
    if max_windows == 1:
        return
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigurationError(
            "--max-windows needs the model's fast tokenizer (tokenizer.json) to cut documents "
            "into windows; this model has a slow one: train with --max-windows 1"
        )
    query_token_cap(None, max_length, tokenizer.num_special_tokens_to_add(pair=True))


IDF_BATCH = 1024  # documents tokenized at a time for the term weights


class WindowPicker:
    """Picks the window of each long document that a query's terms point to.

    ``tokenizer`` is the trained model's (a ``transformers`` fast tokenizer); ``documents`` are
    the texts training will see, for the term weights.
    """

    def __init__(
        self, tokenizer: Any, documents: Iterable[str], *, max_length: int, max_windows: int
    ) -> None:
        check_tokenizer(tokenizer, max_length, max_windows)
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.max_windows = max_windows
        if max_windows == 1:  # nothing to pick
            return
        self._reserved = tokenizer.num_special_tokens_to_add(pair=True)
        self._max_query = query_token_cap(None, max_length, self._reserved)
        texts = list(dict.fromkeys(documents))
        frequency: Counter[int] = Counter()
        for start in range(0, len(texts), IDF_BATCH):
            batch = texts[start : start + IDF_BATCH]
            for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
                frequency.update(set(ids))
        self._idf = {t: math.log(1 + len(texts) / n) for t, n in frequency.items()}
        self._unseen = math.log(1 + len(texts))

    def pick(self, query: str, document: str) -> str:
        """``document`` itself when it fits beside ``query`` (or when one window is read), else
        the text of its window with the highest IDF-weighted overlap with the query's terms
        (the first such window on a tie)."""
        if self.max_windows == 1:
            return document
        query_ids = self._tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"]
        budget = self.max_length - self._reserved - min(len(query_ids), self._max_query)
        encoded = self._tokenizer(
            document, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        starts = window_starts(len(ids), budget, self.max_windows)
        if len(starts) == 1:
            return document
        terms = set(query_ids)

        def overlap(start: int) -> float:
            shared = terms.intersection(ids[start : start + budget])
            return sum(self._idf.get(t, self._unseen) for t in shared)

        best = max(starts, key=overlap)  # max keeps the first of equals
        end = min(best + budget, len(ids)) - 1
        return document[offsets[best][0] : offsets[end][1]]
