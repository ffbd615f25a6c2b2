"""Cross-encoder backend: any ``AutoModelForSequenceClassification`` reranker (BGE, ms-marco).

Tokenizing, truncation, batching and the score head are the pair-encoder pipeline's
(:mod:`rerankit.pipelines.pair_encoder`); this module loads the model and runs one padded batch
under ``torch.inference_mode()``. Scores are the raw relevance log-odds (one-logit heads: the
logit; two-logit heads: ``logit[1] - logit[0]``), or their sigmoid with ``normalize=True``.

Checkpoints that would score noise are refused: a plain encoder or any checkpoint whose
classification head (or other weights) transformers would initialise randomly (unless
``allow_untrained_head=True``), and causal-LM / T5 rerankers, which are not classifiers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rerankit.backends._device import resolve_device, resolve_dtype
from rerankit.backends.base import HUB_OPTIONS, WINDOW_OPTIONS, Backend, Request
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.pair_encoder import (
    INPUT_NAMES,
    Batch,
    PairEncoderPipeline,
    check_head_size,
)
from rerankit.registry import GENERATIVE_KINDS, generative_kind
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

# Padded tokens per batch. Small batches measured faster on CPU (cache-friendly; see
# benchmarks/cross_encoder_throughput.py); accelerators want large ones.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 4096}
DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR = 16384


class CrossEncoderBackend(Backend):
    """Score (query, passage) pairs jointly with a sequence-classification model.

    >>> from rerankit import Reranker
    >>> rr = Reranker("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> rr.score("what is DNA?", ["DNA is a molecule", "a cat"])  # doctest: +SKIP

    Options: ``max_query_length``, ``max_batch_tokens``, ``allow_untrained_head``,
    ``max_windows``, ``revision``, ``cache_dir``, ``trust_remote_code`` (``rerankit info``
    describes them).
    """

    name: ClassVar[str] = "cross-encoder"
    options_schema: ClassVar[OptionSchema] = {
        "max_query_length": Option(
            "int", None, "query tokens at most; max_length // 2 when unset", minimum=1
        ),
        "max_batch_tokens": Option(
            "int",
            None,
            "padded tokens per batch; 4096 on CPU and 16384 on accelerators when unset",
            minimum=1,
        ),
        "allow_untrained_head": Option(
            "bool",
            False,
            "load a checkpoint whose head would be randomly initialised (scores are noise; "
            "for tests and benchmarks)",
        ),
        **WINDOW_OPTIONS,
        **HUB_OPTIONS,
    }

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        refuse_generative(config.model)
        load_kwargs = {name: self.options[name] for name in HUB_OPTIONS}
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, **load_kwargs)
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                config.model, output_loading_info=True, **load_kwargs
            )
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"could not load cross-encoder {config.model!r}: {exc}. Pass a local folder "
                "or a Hugging Face hub id; offline, the model must already be in the HF cache."
            ) from exc
        self._check_trained(config.model, sorted(loading["missing_keys"]))
        check_head_size(int(model.config.num_labels), config.model)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        fast = getattr(self.tokenizer, "backend_tokenizer", None)
        if not isinstance(fast, Tokenizer):
            raise BackendError(
                f"{config.model!r} has no fast tokenizer (tokenizer.json); the cross-encoder "
                "backend needs one"
            )
        # Only the inputs the tokenizer gives the model (XLM-R takes no token_type_ids).
        self.input_names = [n for n in INPUT_NAMES if n in self.tokenizer.model_input_names]
        max_batch_tokens = self.options["max_batch_tokens"]
        if max_batch_tokens is None:
            max_batch_tokens = DEFAULT_MAX_BATCH_TOKENS.get(
                self.device.type, DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR
            )
        pad_id = self.tokenizer.pad_token_id
        self.pipeline = PairEncoderPipeline(
            # A copy: calls to self.tokenizer change its backend's truncation and padding.
            Tokenizer.from_str(fast.to_str()),
            self._forward,
            max_length=self._effective_max_length(config.max_length),
            max_query_length=self.options["max_query_length"],
            batch_size=config.batch_size,
            max_batch_tokens=max_batch_tokens,
            pad_id=0 if pad_id is None else int(pad_id),  # padding is masked: any id works
            normalize=config.normalize,
            name=config.model,
            max_windows=self.options["max_windows"],
        )
        self.scale = self.pipeline.scale

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.pipeline.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        return self.pipeline.score_many(requests)

    def _forward(self, batch: Batch) -> npt.NDArray[np.float32]:
        inputs = {name: torch.from_numpy(batch[name]).to(self.device) for name in self.input_names}
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        result: npt.NDArray[np.float32] = logits.float().cpu().numpy()
        return result

    def _check_trained(self, model: str, untrained: list[str]) -> None:
        """Refuse weights transformers had to initialise: they would make every score noise."""
        if not untrained:
            return
        if not self.options["allow_untrained_head"]:
            raise untrained_error(
                model,
                untrained,
                fix="Use a reranker checkpoint (e.g. cross-encoder/ms-marco-MiniLM-L6-v2), or "
                "pass allow_untrained_head=True to load it anyway (tests and benchmarks only).",
            )
        logger.warning(
            "%s: %s are randomly initialised (allow_untrained_head=True); scores are noise",
            model,
            untrained,
        )

    def _effective_max_length(self, requested: int) -> int:
        limit: Any = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < requested:
            return limit
        return requested


# The backend that runs each generative kind ("vlm" has none yet: inference refuses it).
def refuse_generative(model: str) -> None:
    """Raise when the folder ``model`` holds a causal-LM, T5 or vision-language reranker.

    A hub id is judged by its weights when it loads instead: a sequence-classification
    conversion of a generative reranker (``...-seq-cls``) is a real cross-encoder, and the
    original's missing head is refused by the untrained-weights check.
    """
    kind = generative_kind(model) if Path(model).expanduser().is_dir() else None
    if kind is not None:
        raise ConfigurationError(
            f"{model!r} is {GENERATIVE_KINDS[kind]}, which the cross-encoder backend cannot run "
            "(nor rerankit export): loaded as a sequence classifier it gets a randomly "
            f"initialised head and scores noise. Use backend={kind!r} (or leave backend= unset)."
        )


def untrained_error(model: str, untrained: Sequence[str], *, fix: str) -> ConfigurationError:
    """The error for weights transformers would initialise randomly, naming them."""
    kind = generative_kind(model)
    if kind is not None:
        fix = f"Its name says it is {GENERATIVE_KINDS[kind]}, not a classifier. {fix}"
    return ConfigurationError(
        f"{model!r} has no trained weights for {list(untrained)}: transformers would initialise "
        "them randomly and every score would be noise. It is not a cross-encoder (a plain "
        "encoder such as all-MiniLM-L6-v2, or a checkpoint saved without its classification "
        f"head). {fix} To make an encoder a reranker, train it: rerankit train."
    )
