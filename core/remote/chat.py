"""The chat-completions wire format: an OpenAI-compatible ``POST /v1/chat/completions``.

vLLM, Ollama, llama.cpp's server, LM Studio, text-generation-inference, OpenAI and the services
compatible with it take the same body and answer in the same shape. Only greedy, non-streamed
completions are asked for (``temperature: 0``, one choice); the answer's text and its billed
``prompt_tokens`` / ``completion_tokens`` come back. Clients, retries, the breaker and typed
errors are the :class:`~rerankit.remote.transport.HTTPTransport`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rerankit.errors import InvalidResponseError
from rerankit.remote.transport import HTTPTransport

Message = Mapping[str, str]  # {"role": ..., "content": ...}
Completion = tuple[str, dict[str, float]]  # the answer's text and its usage figures

# A model-free token estimate for messages that no local tokenizer can count: UTF-8 bytes / 3
# errs on the high side for English (about 4 bytes a token) and is about right for CJK text
# (3 bytes a character), so a prompt fitted with it fits the server's context.
BYTES_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4  # the role markers a chat template puts around each message


class ChatCompletions:
    """Ask a chat model on an OpenAI-compatible server for one greedy answer.

    >>> from rerankit.remote.transport import HTTPTransport
    >>> transport = HTTPTransport("http://localhost:8000/v1", api_key=None, options={},
    ...                           owner="the 'listwise' backend")
    >>> chat = ChatCompletions(transport, "castorini/rank_zephyr_7b_v1_full")
    >>> chat.path
    '/chat/completions'
    >>> text, usage = chat.complete([{"role": "user", "content": "hi"}], 8)  # doctest: +SKIP
    >>> transport.close()

    ``base_url`` may end in ``/v1`` (as OpenAI's SDK writes it) or not (as vLLM's docs do).
    """

    def __init__(self, transport: HTTPTransport, model: str) -> None:
        self.transport = transport
        self.model = model
        versioned = transport.base_url.endswith("/v1")
        self.path = "/chat/completions" if versioned else "/v1/chat/completions"

    def complete(self, messages: Sequence[Message], max_tokens: int) -> Completion:
        """The model's answer to ``messages``, at most ``max_tokens`` tokens long."""
        return self.transport.post(self.path, self.body(messages, max_tokens), self._read)

    async def acomplete(self, messages: Sequence[Message], max_tokens: int) -> Completion:
        """Async :meth:`complete`."""
        return await self.transport.apost(self.path, self.body(messages, max_tokens), self._read)

    def body(self, messages: Sequence[Message], max_tokens: int) -> dict[str, Any]:
        """The JSON body: greedy, one choice, not streamed."""
        return {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
            "n": 1,
            "stream": False,
        }

    def _read(self, payload: Any) -> Completion:
        where = self.transport.safe_url
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise InvalidResponseError(f"{where}: the response has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise InvalidResponseError(f"{where}: the first choice has no message")
        return _text(message.get("content")), _usage(payload.get("usage"))


def approximate_tokens(messages: Sequence[Message]) -> int:
    """Tokens ``messages`` take in a prompt, estimated on the high side without a tokenizer."""
    return sum(
        math.ceil(len(message["content"].encode("utf-8")) / BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE
        for message in messages
    )


def _text(content: Any) -> str:
    """The answer's text. No content (a refusal, or a reasoning model cut short) is empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some servers return them
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _usage(usage: Any) -> dict[str, float]:
    figures: dict[str, float] = {}
    if isinstance(usage, dict):
        for name in ("prompt_tokens", "completion_tokens"):
            value = usage.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures[name] = float(value)
    return figures
