"""Cross-encoder backend: any ``AutoModelForSequenceClassification`` reranker (BGE, ms-marco).

Pairs are scored in length-sorted batches under a padded-token budget, under
``torch.inference_mode()``; long passages are truncated passage-side and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rerankit.backends._device import resolve_device, resolve_dtype
from rerankit.backends.base import Backend, int_option, query_token_cap
from rerankit.backends.pairs import FlatPairs, Request, flatten, split
from rerankit.batching import length_sorted_batches
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

# Padded tokens per batch. Small batches measured faster on CPU (cache-friendly; see
# benchmarks/cross_encoder_throughput.py); accelerators want large ones.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 4096}
DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR = 16384


class CrossEncoderBackend(Backend):
    """Score (query, passage) pairs jointly with a sequence-classification model.

    Options: ``max_query_length`` (query token cap, default ``max_length // 2``),
    ``max_batch_tokens`` (padded tokens per batch; default 4096 on CPU, 16384 elsewhere),
    ``trust_remote_code``, ``revision``, ``cache_dir``.
    """

    name: ClassVar[str] = "cross-encoder"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"max_query_length", "max_batch_tokens", "trust_remote_code", "revision", "cache_dir"}
    )

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        options = config.options
        load_kwargs: dict[str, Any] = {
            "trust_remote_code": bool(options.get("trust_remote_code", False)),
            "revision": options.get("revision"),
            "cache_dir": options.get("cache_dir"),
        }
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, **load_kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(config.model, **load_kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"could not load cross-encoder {config.model!r}: {exc}. Pass a local folder "
                "or a Hugging Face hub id; offline, the model must already be in the HF cache."
            ) from exc
        self.num_labels = int(model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise BackendError(
                f"{config.model!r} has a {self.num_labels}-label head; a reranker needs one logit "
                "(relevance) or two (softmax of the positive class)"
            )
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = self._effective_max_length(config.max_length)
        self.special_tokens = len(self.tokenizer("", "")["input_ids"])
        self.max_query_length = query_token_cap(options, self.max_length, self.special_tokens)
        default_tokens = DEFAULT_MAX_BATCH_TOKENS.get(
            self.device.type, DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR
        )
        self.max_batch_tokens = int_option(options, "max_batch_tokens", default_tokens)
        # Fast tokenizers are not safe to share between threads ("Already borrowed"),
        # and concurrent forward passes only oversubscribe the same cores.
        self._lock = threading.Lock()

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request]) -> list[Scores]:
        with self._lock:
            capped = [(self._cap_query(query), texts) for query, texts in requests]
            pairs = flatten(capped)
            unique = list(dict.fromkeys(query for query, _ in capped))
            ids = self.tokenizer(unique, add_special_tokens=False)["input_ids"] if unique else []
            query_tokens = {q: len(i) for q, i in zip(unique, ids, strict=True)}
            encoded = self.tokenizer(pairs.texts, add_special_tokens=False, verbose=False)
            budgets = [
                self.max_length - self.special_tokens - query_tokens[q] for q in pairs.queries
            ]
            text_tokens = [len(ids) for ids in encoded["input_ids"]]
            lengths = [
                self.max_length - budget + min(n, budget)
                for n, budget in zip(text_tokens, budgets, strict=True)
            ]
            values = [0.0] * len(pairs.texts)
            batches = length_sorted_batches(
                lengths,
                max_batch_size=self.config.batch_size,
                max_batch_tokens=self.max_batch_tokens,
            )
            with torch.inference_mode():
                for batch in batches:
                    for position, value in zip(batch, self._score_batch(pairs, batch), strict=True):
                        values[position] = value
        truncated = [n > budget for n, budget in zip(text_tokens, budgets, strict=True)]
        return split(pairs, values, truncated, lengths, self.max_length)

    def _score_batch(self, pairs: FlatPairs, batch: list[int]) -> list[float]:
        encoded = self.tokenizer(
            [pairs.queries[i] for i in batch],
            [pairs.texts[i] for i in batch],
            padding=True,
            truncation="only_second",
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        logits = self.model(**encoded).logits.float()
        if self.num_labels == 2:
            scores = torch.softmax(logits, dim=-1)[:, 1]
        else:
            scores = logits[:, 0]
            if self.config.normalize:
                scores = torch.sigmoid(scores)
        return [float(s) for s in scores.cpu().tolist()]

    def _cap_query(self, query: str) -> str:
        if self.tokenizer.is_fast:  # cut the text at a token boundary, keeping it verbatim
            encoded = self.tokenizer(query, add_special_tokens=False, return_offsets_mapping=True)
            if len(encoded["input_ids"]) <= self.max_query_length:
                return query
            capped = query[: encoded["offset_mapping"][self.max_query_length - 1][1]]
            logger.warning("query truncated to max_query_length=%d tokens", self.max_query_length)
            return capped
        ids = self.tokenizer(query, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_query_length:
            return query
        logger.warning("query truncated to max_query_length=%d tokens", self.max_query_length)
        return str(self.tokenizer.decode(ids[: self.max_query_length]))

    def _effective_max_length(self, requested: int) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < requested:
            return limit
        return requested
