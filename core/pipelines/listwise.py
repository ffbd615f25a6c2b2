"""Listwise reranking: a chat model orders windows of passages, back to front.

The pieces, each small and model-free (the ``listwise`` backend supplies the chat model):

* :class:`PromptStyle` presets (data, not code): the RankGPT multi-turn prompt and the
  RankZephyr / RankVicuna single-turn prompt. :class:`Prompter` fills one for a window:
  passages cut to a word budget, shrunk until the prompt and the answer fit the context, and
  ``[n]`` inside a passage or the query written ``(n)`` so it cannot pass for an identifier.
* :func:`window_schedule`: which windows, in which order (see its docstring for the loop).
* :func:`read_order`: the model's answer as a permutation of the window, repaired.
* :class:`WindowedRanking`: one query's candidates, reordered window by window; every
  document comes back exactly once, whatever the model answers.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rerankit.errors import InvalidInputError

Message = Mapping[str, str]  # {"role": ..., "content": ...}


@dataclass(frozen=True, slots=True)
class PromptStyle:
    """How one family of listwise rerankers is asked to order a window.

    ``{num}`` and ``{query}`` are filled in ``prefix`` and ``suffix``, ``{id}`` and ``{text}``
    in ``passage``. Multi-turn styles (``passage_reply`` set) send each passage as its own user
    turn, answered by the assistant turns ``prefix_reply`` and ``passage_reply``; single-turn
    styles send one user message: the prefix, every passage, the suffix.

    >>> RANKZEPHYR.multi_turn, RANKGPT.multi_turn
    (False, True)
    """

    name: str
    system: str
    prefix: str
    passage: str
    suffix: str
    prefix_reply: str | None = None
    passage_reply: str | None = None

    @property
    def multi_turn(self) -> bool:
        """Whether each passage is a turn of its own."""
        return self.passage_reply is not None

    def messages(self, query: str, passages: Sequence[str]) -> list[Message]:
        """The chat for one window; ``query`` and ``passages`` are already cut and escaped."""
        num = len(passages)
        prefix = self.prefix.format(num=num, query=query)
        suffix = self.suffix.format(num=num, query=query)
        bodies = [self.passage.format(id=i, text=text) for i, text in enumerate(passages, 1)]
        messages: list[Message] = [{"role": "system", "content": self.system}]
        if self.passage_reply is None:
            messages.append({"role": "user", "content": prefix + "".join(bodies) + suffix})
            return messages
        messages.append({"role": "user", "content": prefix})
        if self.prefix_reply is not None:
            messages.append({"role": "assistant", "content": self.prefix_reply})
        for i, body in enumerate(bodies, 1):
            messages.append({"role": "user", "content": body})
            messages.append({"role": "assistant", "content": self.passage_reply.format(id=i)})
        messages.append({"role": "user", "content": suffix})
        return messages


# RankGPT (Sun et al., 2023), as its reference code prompts gpt-3.5 and gpt-4: a system turn,
# then one user turn per passage, each acknowledged by the assistant. The example ordering is
# "[2] > [1]", which exists in every window of two or more (the original's "[20] > [19]" names
# passages that a shorter window does not have).
RANKGPT = PromptStyle(
    name="rankgpt",
    system=(
        "You are RankGPT, an intelligent assistant that can rank passages based on their "
        "relevancy to the query."
    ),
    prefix=(
        "I will provide you with {num} passages, each indicated by number identifier []. \n"
        "Rank the passages based on their relevance to query: {query}."
    ),
    prefix_reply="Okay, please provide the passages.",
    passage="[{id}] {text}",
    passage_reply="Received passage [{id}].",
    suffix=(
        "Search Query: {query}. \nRank the {num} passages above based on their relevance to "
        "the search query. The passages should be listed in descending order using "
        "identifiers. The most relevant passages should be listed first. The output format "
        "should be [] > [], e.g., [2] > [1]. Only response the ranking results, do not say "
        "any word or explain."
    ),
)

# RankZephyr and RankVicuna (Pradeep et al., 2023), as rank_llm prompts them and they were
# trained: one user message holding every passage, one per line.
RANKZEPHYR = PromptStyle(
    name="rankzephyr",
    system=(
        "You are RankLLM, an intelligent assistant that can rank passages based on their "
        "relevancy to the query"
    ),
    prefix=(
        "I will provide you with {num} passages, each indicated by a numerical identifier []. "
        "Rank the passages based on their relevance to the search query: {query}.\n"
    ),
    passage="[{id}] {text}\n",
    suffix=(
        "Search Query: {query}.\nRank the {num} passages above based on their relevance to the "
        "search query. All the passages should be included and listed using identifiers, in "
        "descending order of relevance. The output format should be [] > [], e.g., [2] > [1], "
        "Answer concisely and directly and only respond with the ranking results, do not say "
        "any word or explain."
    ),
)

PROMPT_STYLES: dict[str, PromptStyle] = {s.name: s for s in (RANKGPT, RANKZEPHYR)}

# Models trained on the single-turn prompt.
_SINGLE_TURN_MODELS = re.compile(r"rank[-_]?(zephyr|vicuna)")


def choose_style(model: str, given: str | None) -> PromptStyle:
    """``given``, else RankZephyr's prompt for RankZephyr / RankVicuna models, else RankGPT's."""
    if given is not None:
        return PROMPT_STYLES[given]
    return RANKZEPHYR if _SINGLE_TURN_MODELS.search(model.lower()) else RANKGPT


# -- prompts that fit -------------------------------------------------------------------------

# A word budget also caps characters, so text written without spaces (Chinese, Japanese, Thai)
# shrinks with it; 8 characters a word leaves space-separated text to the word limit.
CHARS_PER_WORD = 8
_IDENTIFIER_LIKE = re.compile(r"\[\s*(\d+)\s*\]")


def escape_identifiers(text: str) -> str:
    """``[3]`` written ``(3)``: a passage that cites ``[3]`` must not name passage 3."""
    return _IDENTIFIER_LIKE.sub(r"(\1)", text)


def cut_words(text: str, words: int) -> str:
    """At most ``words`` words (and ``words * CHARS_PER_WORD`` characters), spaces collapsed."""
    return " ".join(text.split()[:words])[: words * CHARS_PER_WORD]


def _word_units(text: str) -> int:
    """How many words ``text`` counts as for :func:`cut_words` (its characters count too)."""
    return max(len(text.split()), math.ceil(len(text) / CHARS_PER_WORD))


@dataclass(frozen=True, slots=True)
class WindowPrompt:
    """One window's chat, the answer's token budget, and the positions whose text was cut."""

    messages: list[Message]
    max_new_tokens: int
    cut: frozenset[int]


class Prompter:
    """Build a window's chat that fits the model's context.

    ``count_tokens`` counts a chat's prompt tokens (a tokenizer, or an estimate); the prompt
    plus ``answer_tokens(size)`` (the answer ``[1] > [2] > ... > [size]``) must fit
    ``context_size``. Passages keep at most ``max_passage_words`` words, fewer when the window
    would not fit (RankGPT and rank_llm shorten them the same way, one step at a time).

    >>> prompter = Prompter(RANKZEPHYR, max_passage_words=300, context_size=4096,
    ...                     count_tokens=lambda m: sum(len(x["content"]) for x in m) // 4,
    ...                     answer_tokens=lambda size: 6 * size)
    >>> prompt = prompter.window("what is DNA? [1]", ["DNA is a molecule [2].", "A cat."])
    >>> print(prompt.messages[1]["content"].splitlines()[1])
    [1] DNA is a molecule (2).
    """

    def __init__(
        self,
        style: PromptStyle,
        *,
        max_passage_words: int,
        context_size: int,
        count_tokens: Callable[[Sequence[Message]], int],
        answer_tokens: Callable[[int], int],
    ) -> None:
        self.style = style
        self.max_passage_words = max_passage_words
        self.context_size = context_size
        self.count_tokens = count_tokens
        self.answer_tokens = answer_tokens

    def window(
        self, query: str, passages: Sequence[str], max_new_tokens: int | None = None
    ) -> WindowPrompt:
        """The chat for ``passages`` with the largest word budget that fits.

        Prompt tokens grow with the budget, so a binary search finds it in a few counts. A
        window that does not fit even at one word a passage raises.
        """
        answer = self.answer_tokens(len(passages)) if max_new_tokens is None else max_new_tokens
        budget = self.context_size - answer
        query = escape_identifiers(" ".join(query.split()))
        texts = [escape_identifiers(" ".join(p.split())) for p in passages]

        def fitted(words: int) -> WindowPrompt | None:
            cut = [cut_words(text, words) for text in texts]
            messages = self.style.messages(query, cut)
            if self.count_tokens(messages) > budget:
                return None
            shortened = (i for i, (a, b) in enumerate(zip(texts, cut, strict=True)) if a != b)
            return WindowPrompt(messages, answer, frozenset(shortened))

        longest = max((_word_units(text) for text in texts), default=0)
        high = min(self.max_passage_words, longest)  # more words than this change nothing
        best = fitted(max(high, 1))
        if best is not None:
            return best
        low, high = 1, high - 1  # ``high`` does not fit; find the largest budget that does
        while low <= high:
            middle = (low + high) // 2
            attempt = fitted(middle)
            if attempt is None:
                high = middle - 1
            else:
                best, low = attempt, middle + 1
        if best is None:
            smallest = self.count_tokens(
                self.style.messages(query, [cut_words(t, 1) for t in texts])
            )
            raise InvalidInputError(
                f"a window of {len(passages)} passages does not fit context_size="
                f"{self.context_size} tokens even at one word a passage ({smallest} prompt "
                f"tokens + {answer} for the answer); shorten the query, lower window_size or "
                "raise context_size"
            )
        return best


# -- windows ----------------------------------------------------------------------------------


def window_schedule(
    n: int, window_size: int, step: int, top_k: int | None = None
) -> list[tuple[int, int]]:
    """The windows ``[start, end)`` to order, last first, for ``n`` candidates.

    The first window ends at the bottom of the list; each next one ends ``step`` higher, until
    one starts at the top: n = 25 (window 20, step 10) gives (5, 25) then (0, 15), and any
    n <= ``window_size`` one window (0, n). (RankGPT's loop stops before a window would start
    above the top, leaving the top 5 of 25 unread, and makes no call below 20 candidates.)

    Each window passes its best ``window_size - step`` on to the next, which is what carries a
    good document from the bottom to the top. When only the best ``top_k`` are kept and
    ``top_k`` is smaller than that, carrying more cannot change them: the step widens to
    ``window_size - top_k`` and fewer windows are ordered. A single candidate needs none.

    >>> window_schedule(25, 20, 10)
    [(5, 25), (0, 15)]
    """
    if n < 2:
        return []
    if top_k is not None and top_k < n:
        step = max(step, window_size - top_k)
    windows = []
    end = n
    while True:
        start = max(0, end - window_size)
        windows.append((start, end))
        if start == 0:
            return windows
        end -= step


# -- reading the answer -----------------------------------------------------------------------

# Brackets that models write for "[" and "]": fullwidth square, black lenticular, tortoise
# shell, white lenticular, white square, fullwidth round.
_BRACKETS = str.maketrans(
    "\uff3b\u3010\u3014\u3016\u27e6\uff08\uff3d\u3011\u3015\u3017\u27e7\uff09", "[[[[[[]]]]]]"
)
_BRACKETED = re.compile(r"\[\s*([0-9]+)\s*\]")
_NUMBER = re.compile(r"[0-9]+")


def normalize_digits(text: str) -> str:
    """Look-alike digits as ASCII: fullwidth (U+FF13), superscript ``³``, circled ``③``, ``⑫``.

    A character with a digit value (fullwidth, superscripts, subscripts, ``①``-``⑨``) becomes
    that digit, so ``¹²`` reads 12; a number sign of its own (``⑫``, ``⒇``) becomes its number
    set apart by spaces. Fractions, and numerals that are letters (CJK ``三``, Roman ``Ⅲ``),
    stay as they are.

    >>> normalize_digits("[\\uff13] > [①²] > ⑫")
    '[3] > [12] >  12 '
    """
    out = []
    for char in text:
        if char.isascii() or unicodedata.category(char) not in ("Nd", "No"):
            out.append(char)
            continue
        digit = unicodedata.digit(char, None)
        if digit is not None:
            out.append(str(digit))
            continue
        value = unicodedata.numeric(char, None)
        if (
            value is not None
            and value == int(value)
            and "FRACTION" not in unicodedata.name(char, "")
        ):
            out.append(f" {int(value)} ")
        else:
            out.append(char)
    return "".join(out)


def read_order(answer: str, size: int) -> tuple[list[int], bool]:
    """The window's new order (0-based positions) from the model's answer, and whether it named any.

    Anything before ``</think>`` is reasoning and ignored (an unclosed ``<think>`` is all
    reasoning). Identifiers are read in brackets (``[3] > [1]``), or bare (``3 > 1``, ``[3, 1]``)
    when the answer brackets none; look-alike digits count (:func:`normalize_digits`). A
    repeated identifier keeps its first position, one out of ``1..size`` is dropped, and the
    ones never named follow in their current order. An answer that names none keeps the
    window's order (``False``).

    >>> read_order("<think>[9] is best</think> [3] > [1] > [3] > [7]", 4)
    ([2, 0, 1, 3], True)
    """
    if "</think>" in answer:
        answer = answer.rsplit("</think>", 1)[1]
    elif "<think>" in answer:
        answer = answer.split("<think>", 1)[0]
    text = normalize_digits(answer).translate(_BRACKETS)
    found = _BRACKETED.findall(text) or _NUMBER.findall(text)
    order: list[int] = []
    for number in found:
        digits = number.lstrip("0") or "0"
        if len(digits) > 6:  # no window holds a million passages; int() of a 5,000-digit
            continue  # run (a degenerate answer) would raise ValueError
        position = int(digits) - 1
        if 0 <= position < size and position not in order:
            order.append(position)
    named = bool(order)
    order += [position for position in range(size) if position not in order]
    return order, named


# -- one query ---------------------------------------------------------------------------------


class WindowedRanking:
    """One query's candidates, reordered window by window in schedule order.

    ``order`` holds input positions, best first; :meth:`values` gives each input the
    rank-derived value of the contract (``len(texts)`` for the first down to 1).

    >>> ranking = WindowedRanking("q", ["a", "b", "c"], window_schedule(3, 20, 10))
    >>> ranking.next_window()
    (0, 3)
    >>> ranking.apply("[3] > [1] > [2]")
    >>> ranking.order, ranking.values()
    ([2, 0, 1], [2.0, 1.0, 3.0])
    """

    def __init__(self, query: str, texts: Sequence[str], windows: Sequence[tuple[int, int]]):
        self.query = query
        self.texts = texts
        self.order = list(range(len(texts)))
        self.unparsed = 0
        self.cut: set[int] = set()  # input positions whose text a prompt had to shorten
        self.usage: dict[str, float] = {}  # the chat model's figures, summed over windows
        self.windows = len(windows)
        self._windows = list(reversed(windows))  # popped from the end: schedule order

    def next_window(self) -> tuple[int, int] | None:
        """The next window to order, or None when the ranking is done."""
        return self._windows[-1] if self._windows else None

    def passages(self, window: tuple[int, int]) -> list[str]:
        """The texts of ``window``, in the current order."""
        start, end = window
        return [self.texts[i] for i in self.order[start:end]]

    def note_cut(self, window: tuple[int, int], positions: frozenset[int]) -> None:
        """Record that the prompt of ``window`` shortened the passages at ``positions``."""
        start, _ = window
        self.cut.update(self.order[start + p] for p in positions)

    def apply(self, answer: str, usage: Mapping[str, float] | None = None) -> None:
        """Reorder the next window as ``answer`` says (repaired: see :func:`read_order`).

        ``usage`` holds the figures of the call that answered (tokens), added to ``usage``.
        """
        for key, value in (usage or {}).items():
            self.usage[key] = self.usage.get(key, 0.0) + value
        start, end = self._windows.pop()
        permutation, named = read_order(answer, end - start)
        if not named:
            self.unparsed += 1
        segment = self.order[start:end]
        self.order[start:end] = [segment[p] for p in permutation]

    def values(self) -> list[float]:
        """Each input's rank-derived value: ``len(texts)`` for the first, down to 1."""
        values = [0.0] * len(self.order)
        for rank, position in enumerate(self.order):
            values[position] = float(len(self.order) - rank)
        return values
