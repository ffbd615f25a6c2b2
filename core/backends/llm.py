"""Causal-LM backend: pointwise LLM rerankers scored by the logits of answer tokens.

Qwen3-Reranker (``family="qwen3"``), bge-reranker-v2-gemma (``"bge-gemma"``),
bge-reranker-v2-minicpm-layerwise (``"bge-layerwise"``), bge-reranker-v2.5-gemma2-lightweight
(``"bge-lightweight"``) and mxbai-rerank-v2 (``"mxbai-v2"``), each prompted and scored exactly
as its authors do. The family is inferred from the model's name (or a folder's config) and
always overridable; prompts, answer tokens and truncation rules are presets in
:mod:`rerankit.pipelines.generative`, batching is the pair-encoder pipeline's. Scores are
``logit(yes) - logit(no)`` (bge-gemma: ``logit("Yes")``; the BAAI layer-wise models: the score
head of ``cutoff_layer``), or their sigmoid with ``normalize=True``. The layer-wise models run on
stock transformers classes (:mod:`rerankit.pipelines.bge_layerwise`): ``trust_remote_code`` is
not needed for them.
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

    >>> lw = Reranker("BAAI/bge-reranker-v2-minicpm-layerwise", cutoff_layer=28)  # doctest: +SKIP

    Options: ``family``, ``instruction``, ``max_query_length``, ``max_batch_tokens``,
    ``cutoff_layer``, ``compress_ratio``, ``compress_layers``, ``revision``, ``cache_dir``,
    ``trust_remote_code`` (``rerankit info`` describes them).
    """

    name: ClassVar[str] = "llm"
    options_schema: ClassVar[OptionSchema] = {
        "family": Option(
            "enum",
            None,
            "prompt and scoring rule; inferred from the model name (or a folder's config) when "
            "unset",
            choices=tuple(CAUSAL_LM_FAMILIES),
        ),
        "instruction": Option(
            "str",
            None,
            "task instruction in the prompt (qwen3: the model card's web-search one when unset; "
            "mxbai-v2: none when unset; the bge families take none)",
        ),
        "max_query_length": Option(
            "int",
            None,
            "query tokens at most, prompt labels included; qwen3: max_length // 2, "
            "the bge families and mxbai-v2: max_length * 3 // 4 when unset",
            minimum=1,
        ),
        "max_batch_tokens": Option(
            "int",
            None,
            "padded tokens per batch; 4096 on CPU and 16384 on accelerators when unset",
            minimum=1,
        ),
        "cutoff_layer": Option(
            "int",
            None,
            "bge-layerwise / bge-lightweight: the layer whose score head gives the score (later "
            "layers are not run); the last layer when unset",
        ),
        "compress_ratio": Option(
            "int",
            None,
            "bge-lightweight: passage tokens mean-pooled into one before each compress_layers "
            "layer; 1 (no compression) when unset",
            minimum=1,
        ),
        "compress_layers": Option(
            "int-list",
            None,
            "bge-lightweight: the layers before which passages are compressed; [8] when unset",
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
            cutoff_layer=self.options["cutoff_layer"],
            compress_ratio=self.options["compress_ratio"],
            compress_layers=self.options["compress_layers"],
        )
        self.scale = self.model.pipeline.scale

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.model.pipeline.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        return self.model.pipeline.score_many(requests)
