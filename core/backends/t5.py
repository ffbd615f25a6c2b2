"""T5 backend: monoT5, InRanker and mT5 rerankers, scored by one decoder step.

The input is ``"Query: {query} Document: {document} Relevant:"`` and EOS; the document is
truncated, never the ``"Relevant:"`` tail. The encoder reads the right-padded batch with its
attention mask; the decoder takes one step from its start token. Scores are
``logit(true) - logit(false)`` (mT5: yes / no), or ``P(true)`` with ``normalize=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rerankit.backends.base import HUB_OPTIONS, Backend, Request
from rerankit.config import RerankerConfig
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.generative import T5_FAMILIES, GenerativeModel, choose_family
from rerankit.types import Scores


class T5Backend(Backend):
    """Score (query, passage) pairs with a T5 reranker's true/false logits.

    >>> from rerankit import Reranker
    >>> rr = Reranker("castorini/monot5-base-msmarco-10k")  # doctest: +SKIP
    >>> rr.score("what is DNA?", ["DNA is a molecule", "a cat"])  # doctest: +SKIP

    Options: ``family``, ``max_query_length``, ``max_batch_tokens``, ``revision``,
    ``cache_dir``, ``trust_remote_code`` (``rerankit info`` describes them).
    """

    name: ClassVar[str] = "t5"
    options_schema: ClassVar[OptionSchema] = {
        "family": Option(
            "enum",
            None,
            "answer tokens: monot5 (true/false; also InRanker) or mt5 (yes/no); inferred from "
            "the model name when unset",
            choices=tuple(T5_FAMILIES),
        ),
        "max_query_length": Option(
            "int", None, "query tokens at most; max_length // 2 when unset", minimum=1
        ),
        "max_batch_tokens": Option(
            "int",
            None,
            "padded tokens per batch; 4096 on CPU and 16384 on accelerators when unset",
            minimum=1,
        ),
        **HUB_OPTIONS,
    }

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        given = self.options["family"]
        family = choose_family(config.model, given, T5_FAMILIES)
        self.model = GenerativeModel(
            config,
            family,
            seq2seq=True,
            inferred=given is None,
            hub=self.options,
            max_query_length=self.options["max_query_length"],
            max_batch_tokens=self.options["max_batch_tokens"],
        )
        self.scale = self.model.pipeline.scale

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.model.pipeline.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        return self.model.pipeline.score_many(requests)
