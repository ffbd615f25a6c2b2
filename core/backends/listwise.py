"""Listwise backend: a chat LLM orders windows of passages (RankGPT, RankZephyr, RankVicuna).

Two ways to reach the model, chosen by ``base_url``:

* ``base_url`` given: an OpenAI-compatible ``POST /v1/chat/completions`` server (vLLM, Ollama,
  llama.cpp, LM Studio, OpenAI, ...) through the shared remote transport (retries with
  ``Retry-After``, circuit breaker, fallback, usage and cost). Needs ``rerankit[jina]`` (httpx,
  tenacity: the remote transport's extra). Documents leave the machine, so ``backend="listwise"``
  must be named: a model name never sends them anywhere.
* no ``base_url``: the model runs here with transformers, greedily, for air-gapped use. Needs
  ``rerankit[transformers]``.

The algorithm is :mod:`rerankit.pipelines.listwise`'s: windows back to front, prompts fitted to
the context, answers repaired so every document comes back exactly once. Values are ranks
(scale ``"rank"``): ``len(documents)`` for the first down to 1, not scores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from rerankit._optional import require
from rerankit.backends.base import HUB_OPTIONS, Backend, Request
from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.listwise import (
    PROMPT_STYLES,
    Prompter,
    WindowedRanking,
    WindowPrompt,
    choose_style,
    window_schedule,
)
from rerankit.remote import TRANSPORT_OPTIONS
from rerankit.remote.usage import cost
from rerankit.types import Scores

if TYPE_CHECKING:
    import httpx

    from rerankit.pipelines.chat_model import ChatModel
    from rerankit.remote.chat import ChatCompletions
    from rerankit.remote.circuit import CircuitBreaker

logger = logging.getLogger("rerankit")

# The context prompts are fitted to when context_size is unset: RankZephyr's (it was trained on
# 4096-token prompts, as rank_llm runs it), or a local model's own when that is smaller. Raise
# it for long-context models.
DEFAULT_CONTEXT = 4096

_PRICES = ("price_per_million_input_tokens", "price_per_million_output_tokens")
_REMOTE_ONLY = frozenset({*TRANSPORT_OPTIONS, *_PRICES})
_LOCAL_ONLY = frozenset({"chat_template", *HUB_OPTIONS})


class ListwiseBackend(Backend):
    """Order documents with a chat LLM, window by window (RankGPT's sliding windows, corrected).

    >>> from rerankit import Reranker
    >>> rr = Reranker("castorini/rank_zephyr_7b_v1_full", backend="listwise",
    ...               base_url="http://localhost:8000")                     # doctest: +SKIP
    >>> result = rr.rank("what is DNA?", ["a cat", "DNA is a molecule"], top_k=1)  # doctest: +SKIP
    >>> result.scale, result.usage["unparsed_windows"]                      # doctest: +SKIP
    ('rank', 0.0)

    ``prompt`` is ``"rankgpt"`` (multi-turn) or ``"rankzephyr"`` (single-turn, also RankVicuna's;
    the default for those models). ``window_size`` and ``step`` set the windows; ``top_k`` on
    ``rank`` lets fewer windows run. ``usage`` holds prompt and completion tokens, ``windows``,
    ``unparsed_windows`` (answers with no usable order, kept as they were),
    ``truncated_passages`` and, with prices, ``cost``. ``normalize`` and ``score_threshold``
    are refused: the values are an order.
    """

    name: ClassVar[str] = "listwise"
    scale = "rank"
    options_schema: ClassVar[OptionSchema] = {
        "base_url": Option(
            "str",
            None,
            "OpenAI-compatible server (POST /v1/chat/completions); unset: run the model here",
        ),
        "prompt": Option(
            "enum",
            None,
            "rankgpt (multi-turn) or rankzephyr (single-turn); rankzephyr for RankZephyr and "
            "RankVicuna models when unset, else rankgpt",
            choices=tuple(PROMPT_STYLES),
        ),
        "window_size": Option("int", 20, "passages the model orders at once", minimum=2),
        "step": Option(
            "int", 10, "how far each window moves up the list (<= window_size)", minimum=1
        ),
        "max_passage_words": Option(
            "int", 300, "words a passage keeps; fewer when a window must fit", minimum=1
        ),
        "context_size": Option(
            "int",
            None,
            f"tokens of prompt and answer at most; {DEFAULT_CONTEXT} when unset (a local "
            "model's own context when smaller)",
            minimum=16,
        ),
        "max_new_tokens": Option(
            "int",
            None,
            "answer tokens; sized to the window when unset (raise it for reasoning models)",
            minimum=1,
        ),
        "price_per_million_input_tokens": Option(
            "float", None, "server only: adds usage['cost'] from the prompt tokens", minimum=0
        ),
        "price_per_million_output_tokens": Option(
            "float", None, "server only: adds usage['cost'] from the answer tokens", minimum=0
        ),
        **{
            name: replace(o, help=f"server only: {o.help}") for name, o in TRANSPORT_OPTIONS.items()
        },
        "chat_template": Option(
            "str", None, "local only: Jinja chat template, for a tokenizer that has none"
        ),
        **{name: replace(o, help=f"local only: {o.help}") for name, o in HUB_OPTIONS.items()},
    }

    def __init__(
        self,
        config: RerankerConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config)
        self.refuse_normalize("its values are an order (ranks), not scores")
        options = self.options
        if options["step"] > options["window_size"]:
            raise ConfigurationError(
                f"step={options['step']} must be <= window_size={options['window_size']}: a "
                "longer step leaves documents between windows that are never compared"
            )
        self.style = choose_style(config.model, options["prompt"])
        self.chat: ChatCompletions | None = None
        self.chat_model: ChatModel | None = None
        given = {name for name, value in config.options.items() if value is not None}
        if options["base_url"] is None:
            self._refuse(given & _REMOTE_ONLY, "only apply to a server (base_url=...)")
            self._start_local()
        else:
            self._refuse(given & _LOCAL_ONLY, "only apply to a model run here (no base_url)")
            self._start_remote(options["base_url"], transport, async_transport)

    def _start_local(self) -> None:
        purpose = "The 'listwise' backend with a local model (no base_url)"
        require("torch", extra="transformers", purpose=purpose)
        require("transformers", extra="transformers", purpose=purpose)
        # Imported here: the server path must not need torch, nor the local path httpx.
        from rerankit.pipelines.chat_model import ChatModel

        template = self.options["chat_template"]
        model = ChatModel(self.config, hub=self.options, chat_template=template)
        self.chat_model = model
        self.prompter = Prompter(
            self.style,
            max_passage_words=self.options["max_passage_words"],
            context_size=self.options["context_size"] or min(DEFAULT_CONTEXT, model.context_size),
            count_tokens=model.count_tokens,
            answer_tokens=model.answer_tokens,
        )

    def _start_remote(
        self,
        base_url: str,
        transport: httpx.BaseTransport | None,
        async_transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        purpose = "The 'listwise' backend on a server (base_url=...)"
        require("httpx", extra="jina", purpose=purpose)
        require("tenacity", extra="jina", purpose=purpose)
        from rerankit.remote.chat import ChatCompletions, approximate_tokens
        from rerankit.remote.transport import HTTPTransport, without_credentials

        safe_url = without_credentials(base_url)
        if self.config.backend is None:
            raise ConfigurationError(
                f"base_url={safe_url!r} would send the documents to a server, but the backend "
                f"was inferred from the name {self.config.model!r}; pass backend='listwise' to "
                "say so"
            )
        placed = [name for name in ("device", "dtype") if getattr(self.config, name) is not None]
        self._refuse(set(placed), "only apply to a model run here (no base_url)")
        secret = self.config.api_key
        key = None if secret is None else secret.resolve()
        if secret is not None and key is None:
            raise ConfigurationError(
                f"api_key reads the environment variable {secret.env_var}, which is unset or "
                "empty; set it, or pass no api_key for a server that needs none"
            )
        self.remote = True
        self.chat = ChatCompletions(
            HTTPTransport(
                base_url,
                api_key=key,
                options=self.options,
                owner=f"this {self.name!r} backend",
                transport=transport,
                async_transport=async_transport,
            ),
            self.config.model,
        )
        self.prompter = Prompter(
            self.style,
            max_passage_words=self.options["max_passage_words"],
            context_size=self.options["context_size"] or DEFAULT_CONTEXT,
            count_tokens=approximate_tokens,
            answer_tokens=_answer_characters,
        )

    def _refuse(self, names: set[str] | frozenset[str], why: str) -> None:
        if names:
            raise ConfigurationError(
                f"the 'listwise' backend's {sorted(names)} {why}; leave them out"
            )

    @property
    def circuit(self) -> CircuitBreaker:
        """The circuit breaker of the server's transport (server path only)."""
        return self._server().transport.circuit

    def __repr__(self) -> str:
        where = "local" if self.chat is None else self.chat.transport.safe_url
        return (
            f"ListwiseBackend(model={self.config.model!r}, prompt={self.style.name!r}, "
            f"where={where!r})"
        )

    # -- scoring -------------------------------------------------------------------------------

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        """Each request's order; queries concurrently, each query's windows in order.

        A local model orders the next window of every query in one batch (``batch_size``
        windows at most); a server gets each query's calls from its own worker, at most
        ``max_concurrency`` in flight.
        """
        rankings = self._rankings(requests, top_k)
        if self.chat_model is not None:
            self._run_local(self.chat_model, rankings)
        else:
            self._run_remote(rankings)
        return [self._scores(ranking) for ranking in rankings]

    async def ascore_many(
        self, requests: Sequence[Request], *, top_k: int | None = None
    ) -> list[Scores]:
        """Async :meth:`score_many`: a server natively, a local model on its worker thread."""
        if self.chat_model is not None:
            return await super().ascore_many(requests, top_k=top_k)
        chat = self._server()
        rankings = self._rankings(requests, top_k)
        limit = asyncio.Semaphore(self.options["max_concurrency"])

        async def step(ranking: WindowedRanking) -> None:
            prompt = self._prompt(ranking)
            async with limit:
                answer, usage = await chat.acomplete(prompt.messages, prompt.max_new_tokens)
            ranking.apply(answer, usage)

        async def order(ranking: WindowedRanking) -> None:
            while ranking.next_window() is not None:
                await step(ranking)

        chat.transport.check_open()
        busy = [r for r in rankings if r.next_window() is not None]
        if busy and self.circuit.state != "closed":  # one trial call decides first
            await step(busy[0])
        tasks = [asyncio.ensure_future(order(ranking)) for ranking in busy]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # the requests fail: stop the calls still waiting or in flight
            for task in tasks:
                task.cancel()
            raise
        return [self._scores(ranking) for ranking in rankings]

    def close(self) -> None:
        if self.chat is not None:
            self.chat.transport.close()
        super().close()

    async def aclose(self) -> None:
        if self.chat is not None:
            await self.chat.transport.aclose()
        super().close()

    # -- the two paths -------------------------------------------------------------------------

    def _rankings(self, requests: Sequence[Request], top_k: int | None) -> list[WindowedRanking]:
        size, step = self.options["window_size"], self.options["step"]
        return [
            WindowedRanking(query, texts, window_schedule(len(texts), size, step, top_k))
            for query, texts in requests
        ]

    def _run_local(self, model: ChatModel, rankings: list[WindowedRanking]) -> None:
        """Rounds: the next window of every unfinished query, ``batch_size`` to a batch."""
        while due := [r for r in rankings if r.next_window() is not None]:
            for start in range(0, len(due), self.config.batch_size):
                batch = due[start : start + self.config.batch_size]
                prompts = [self._prompt(ranking) for ranking in batch]
                answers = model.generate([(p.messages, p.max_new_tokens) for p in prompts])
                for ranking, (answer, usage) in zip(batch, answers, strict=True):
                    ranking.apply(answer, usage)

    def _run_remote(self, rankings: list[WindowedRanking]) -> None:
        chat = self._server()

        def step(ranking: WindowedRanking) -> None:
            prompt = self._prompt(ranking)
            ranking.apply(*chat.complete(prompt.messages, prompt.max_new_tokens))

        def order(ranking: WindowedRanking) -> None:
            while ranking.next_window() is not None:
                step(ranking)

        chat.transport.check_open()
        busy = [r for r in rankings if r.next_window() is not None]
        if busy and self.circuit.state != "closed":  # one trial call decides first
            step(busy[0])
        if len(busy) <= 1:
            for ranking in busy:
                order(ranking)
            return
        with ThreadPoolExecutor(min(self.options["max_concurrency"], len(busy))) as pool:
            futures = [pool.submit(order, ranking) for ranking in busy]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # the requests fail: do not start the queries still queued
                for future in futures:
                    future.cancel()
                raise

    def _prompt(self, ranking: WindowedRanking) -> WindowPrompt:
        window = ranking.next_window()
        assert window is not None
        prompt = self.prompter.window(
            ranking.query, ranking.passages(window), self.options["max_new_tokens"]
        )
        ranking.note_cut(window, prompt.cut)
        return prompt

    def _server(self) -> ChatCompletions:
        if self.chat is None:
            raise ConfigurationError("this 'listwise' backend runs its model here: no server")
        return self.chat

    def _scores(self, ranking: WindowedRanking) -> Scores:
        usage = dict(ranking.usage)
        if "prompt_tokens" in usage or "completion_tokens" in usage:
            usage["total_tokens"] = usage.get("prompt_tokens", 0.0) + usage.get(
                "completion_tokens", 0.0
            )
        prices = dict(zip(("prompt_tokens", "completion_tokens"), _PRICES, strict=True))
        priced = cost(usage, {figure: self.options[name] for figure, name in prices.items()})
        if priced is not None:
            usage["cost"] = priced
        usage["windows"] = float(ranking.windows)
        usage["unparsed_windows"] = float(ranking.unparsed)
        usage["truncated_passages"] = float(len(ranking.cut))
        if ranking.unparsed:
            logger.warning(
                "%s: %d of %d windows had no usable order in the model's answer; they kept "
                "their order",
                self.config.model,
                ranking.unparsed,
                ranking.windows,
            )
        return Scores(values=ranking.values(), usage=usage)


def _answer_characters(size: int) -> int:
    """Characters of ``[1] > [2] > ... > [size]`` and a margin: no fewer than its tokens."""
    return len(" > ".join(f"[{i}]" for i in range(1, size + 1))) + 8
