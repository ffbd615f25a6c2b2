"""Causal-LM backend: pointwise LLM rerankers scored by the logits of answer tokens.

Qwen3-Reranker (``family="qwen3"``), bge-reranker-v2-gemma (``"bge-gemma"``) and
mxbai-rerank-v2 (``"mxbai-v2"``), each prompted and scored exactly as its authors do. The
family is inferred from the model's name and always overridable; prompts, answer tokens and
truncation rules are presets in :mod:`rerankit.pipelines.generative`, batching is the
pair-encoder pipeline's. Scores are ``logit(yes) - logit(no)`` (bge-gemma: ``logit("Yes")``),
or their sigmoid with ``normalize=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rerankit.backends.base import HUB_OPTIONS, Backend, Request
from rerankit.config import RerankerConfig
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.generative import CAUSAL_LM_FAMILIES, GenerativeModel, choose_family
from rerankit.types import Scores


class LLMBackend(Backend):
    """Score (query, passage) pairs with a causal LM's answer-token logits at the last token.

    >>> from rerankit import Reranker
    >>> rr = Reranker("Qwen/Qwen3-Reranker-0.6B", instruction="Find the answer")  # doctest: +SKIP
    >>> rr.score("what is DNA?", ["DNA is a molecule", "a cat"])  # doctest: +SKIP

    Options: ``family``, ``instruction``, ``max_query_length``, ``max_batch_tokens``,
    ``revision``, ``cache_dir``, ``trust_remote_code`` (``rerankit info`` describes them).
    """

    name: ClassVar[str] = "llm"
    options_schema: ClassVar[OptionSchema] = {
        "family": Option(
            "enum",
            None,
            "prompt and scoring rule; inferred from the model name when unset",
            choices=tuple(CAUSAL_LM_FAMILIES),
        ),
        "instruction": Option(
            "str",
            None,
            "task instruction in the prompt (qwen3: the model card's web-search one when unset; "
            "mxbai-v2: none when unset; bge-gemma takes none)",
        ),
        "max_query_length": Option(
            "int",
            None,
            "query tokens at most, prompt labels included; qwen3: max_length // 2, "
            "bge-gemma and mxbai-v2: max_length * 3 // 4 when unset",
            minimum=1,
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
        family = choose_family(config.model, given, CAUSAL_LM_FAMILIES)
        self.model = GenerativeModel(
            config,
            family,
            seq2seq=False,
            inferred=given is None,
            hub=self.options,
            instruction=self.options["instruction"],
            max_query_length=self.options["max_query_length"],
            max_batch_tokens=self.options["max_batch_tokens"],
        )
        self.scale = self.model.pipeline.scale

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.model.pipeline.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        return self.model.pipeline.score_many(requests)
