"""A local transformers chat model for listwise reranking: greedy answers to batches of chats.

Each chat is rendered with the tokenizer's chat template (or one given), left-padded into one
batch, and answered greedily (``do_sample=False``), at most the batch's largest
``max_new_tokens``. Prompt and answer tokens are counted like a chat server bills them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from rerankit.backends._device import resolve_device, resolve_dtype
from rerankit.backends.base import HUB_OPTIONS
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError

logger = logging.getLogger("rerankit")

Message = Mapping[str, str]
Completion = tuple[str, dict[str, float]]  # the answer's text and its usage figures

_GenerationConfig: Any = GenerationConfig  # untyped in transformers' stubs

# Beyond this a tokenizer's model_max_length is a placeholder ("no limit"), not the context.
_NO_LIMIT = 1_000_000


class ChatModel:
    """A causal LM with a chat template, answering chats greedily on this machine.

    >>> from rerankit import RerankerConfig
    >>> model = ChatModel(RerankerConfig(model="castorini/rank_zephyr_7b_v1_full"),
    ...                   hub={}, chat_template=None)                         # doctest: +SKIP
    >>> model.generate([([{"role": "user", "content": "[1] a [2] b"}], 16)])  # doctest: +SKIP
    [('[2] > [1]', {'prompt_tokens': 31.0, 'completion_tokens': 8.0})]

    ``hub`` holds :data:`~rerankit.backends.base.HUB_OPTIONS`; ``chat_template`` (Jinja)
    replaces or supplies the tokenizer's. Weights transformers would initialise randomly are
    refused, as for every local backend.
    """

    def __init__(
        self, config: RerankerConfig, *, hub: Mapping[str, Any], chat_template: str | None
    ) -> None:
        load = {name: hub.get(name, option.default) for name, option in HUB_OPTIONS.items()}
        self.name = config.model
        self.device = resolve_device(config.device)
        # bfloat16 on CUDA when unset: float16 overflows in some LLMs; float32 elsewhere.
        if config.dtype is None and self.device.type == "cuda":
            self.dtype = torch.bfloat16
        else:
            self.dtype = resolve_dtype(config.dtype, self.device)
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(config.model, **load)
            # (model, loading info): transformers' annotation names the model alone.
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                config.model, dtype=self.dtype, output_loading_info=True, **load
            )
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"could not load the chat model {config.model!r}: {str(exc).rstrip('.')}. Pass "
                "a local folder or a Hugging Face hub id; offline, the model must already be in "
                "the HF cache. To use a model on a server instead, pass base_url="
            ) from exc
        model, loading = loaded
        untrained = sorted(loading["missing_keys"])
        if untrained:
            raise ConfigurationError(
                f"{config.model!r} has no trained weights for {untrained}: transformers would "
                "initialise them randomly and every answer would be noise. Is it a causal LM?"
            )
        self.chat_template = chat_template or self.tokenizer.chat_template
        if not self.chat_template:
            raise ConfigurationError(
                f"{config.model!r} has no chat template; pass chat_template='...' (the Jinja "
                "template of the model's chat format), or use a chat model"
            )
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer.padding_side = "left"  # generation continues each row at its last token
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(eos if pad is None else pad)
        # Greedy, whatever sampling the checkpoint's generation_config.json asks for.
        self._greedy: dict[str, Any] = {
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": self._pad_id,
            "eos_token_id": self._stop_ids(),
        }
        self.context_size = self._context_size()
        self._lock = threading.Lock()  # one batch at a time: more would only share the cores

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens of ``messages`` in the chat template, the assistant's turn opened."""
        return len(self._encode(self._render(messages)))

    def answer_tokens(self, size: int) -> int:
        """Tokens of the full answer ``[1] > [2] > ... > [size]``, plus two for its ending."""
        answer = " > ".join(f"[{i}]" for i in range(1, size + 1))
        return len(self._encode(answer)) + 2

    def generate(self, chats: Sequence[tuple[Sequence[Message], int]]) -> list[Completion]:
        """Greedy answers to ``(messages, max_new_tokens)`` chats, in one padded batch."""
        prompts = [self._encode(self._render(messages)) for messages, _ in chats]
        longest = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), longest), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding
            input_ids[row, longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, longest - len(ids) :] = 1
        with self._lock, torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                generation_config=_GenerationConfig(
                    **self._greedy, max_new_tokens=max(tokens for _, tokens in chats)
                ),
            )
        stops = set(self._greedy["eos_token_id"])
        completions = []
        for row, (ids, (_, max_new_tokens)) in enumerate(zip(prompts, chats, strict=True)):
            answer = output[row, longest:].tolist()[:max_new_tokens]
            end = next((i for i, token in enumerate(answer) if token in stops), len(answer))
            text = self.tokenizer.decode(answer[:end], skip_special_tokens=True)
            usage = {"prompt_tokens": float(len(ids)), "completion_tokens": float(end)}
            completions.append((str(text), usage))
        return completions

    def _render(self, messages: Sequence[Message]) -> str:
        rendered = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages],
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=False,
        )
        return str(rendered)

    def _encode(self, text: str) -> list[int]:
        # The rendered template already holds the special tokens it wants (BOS, role markers).
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _stop_ids(self) -> list[int]:
        configured = self.model.generation_config.eos_token_id
        stops = list(configured) if isinstance(configured, list) else [configured]
        stops.append(self.tokenizer.eos_token_id)
        return sorted({int(i) for i in stops if i is not None})

    def _context_size(self) -> int:
        """The longest input the model takes: its position limit, or the tokenizer's."""
        limits = [
            getattr(self.model.config, "max_position_embeddings", None),
            self.tokenizer.model_max_length,
        ]
        known = [int(v) for v in limits if isinstance(v, int) and 0 < v < _NO_LIMIT]
        if not known:
            raise ConfigurationError(
                f"{self.name!r} says nothing of its context length; pass context_size="
            )
        return min(known)
