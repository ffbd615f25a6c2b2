"""The listwise pipeline without a model: windows, prompts, reading and repairing answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerankit import InvalidInputError
from rerankit.pipelines.listwise import (
    RANKGPT,
    RANKZEPHYR,
    Prompter,
    WindowedRanking,
    choose_style,
    escape_identifiers,
    normalize_digits,
    read_order,
    window_schedule,
)

# Written from the algorithm (window 20, step 10; each window ends `step` above the last, the
# last one starts at the top), not from the code under test.
GOLDEN = {
    1: [],
    2: [(0, 2)],
    7: [(0, 7)],
    20: [(0, 20)],
    21: [(1, 21), (0, 11)],
    25: [(5, 25), (0, 15)],
    100: [
        (80, 100),
        (70, 90),
        (60, 80),
        (50, 70),
        (40, 60),
        (30, 50),
        (20, 40),
        (10, 30),
        (0, 20),
    ],
}


@pytest.mark.parametrize(("n", "windows"), GOLDEN.items())
def test_window_schedule_matches_the_golden_sequences(
    n: int, windows: list[tuple[int, int]]
) -> None:
    assert window_schedule(n, 20, 10) == windows


def _rankgpt_original_windows(n: int, window_size: int = 20, step: int = 10) -> list[range]:
    """RankGPT's published sliding_windows loop (rank_start=0, rank_end=n), as it runs."""
    windows = []
    end_pos, start_pos = n, n - window_size
    while start_pos >= 0:
        start_pos = max(start_pos, 0)
        windows.append(range(start_pos, end_pos))
        end_pos, start_pos = end_pos - step, start_pos - step
    return windows


def test_the_reference_loop_faults_are_not_ours() -> None:
    """RankGPT's loop never reads the top 5 of 25 and makes no call below 20 candidates."""
    original = _rankgpt_original_windows(25)
    assert [(w.start, w.stop) for w in original] == [(5, 25)]
    assert not set(range(5)) & {i for w in original for i in w}
    assert _rankgpt_original_windows(7) == []
    ours = window_schedule(25, 20, 10)
    assert {i for start, end in ours for i in range(start, end)} == set(range(25))
    assert window_schedule(7, 20, 10) == [(0, 7)]


def test_top_k_widens_the_step_and_saves_windows() -> None:
    """Carrying more than top_k up the list cannot change the top_k: fewer windows run."""
    assert window_schedule(100, 20, 10, top_k=5) == [
        (80, 100),
        (65, 85),
        (50, 70),
        (35, 55),
        (20, 40),
        (5, 25),
        (0, 10),
    ]
    assert window_schedule(100, 20, 10, top_k=10) == GOLDEN[100]  # carry 10 already
    assert window_schedule(100, 20, 10, top_k=100) == GOLDEN[100]
    assert window_schedule(7, 20, 10, top_k=1) == [(0, 7)]


@pytest.mark.parametrize("top_k", [1, 3, 5, 10])
@pytest.mark.parametrize("n", [7, 25, 60, 100])
def test_with_a_consistent_judge_the_top_k_is_exact(n: int, top_k: int) -> None:
    """Under a judge that always orders by the same relevance, one pass finds the top_k."""
    relevance = [(i * 37) % n for i in range(n)]  # a permutation, unrelated to input order
    texts = [str(r) for r in relevance]
    ranking = WindowedRanking("q", texts, window_schedule(n, 20, 10, top_k=top_k))
    while (window := ranking.next_window()) is not None:
        passages = ranking.passages(window)
        best = sorted(range(len(passages)), key=lambda i: -int(passages[i]))
        ranking.apply(" > ".join(f"[{i + 1}]" for i in best))
    want = sorted(range(n), key=lambda i: -relevance[i])[:top_k]
    assert ranking.order[:top_k] == want
    assert sorted(ranking.order) == list(range(n))


@pytest.mark.parametrize(
    ("answer", "order", "named"),
    [
        ("[3] > [1] > [2] > [4]", [2, 0, 1, 3], True),
        ("Sure! Here is the ranking: [2] > [4] > [1] > [3]. Hope it helps.", [1, 3, 0, 2], True),
        ("3 > 1 > 4 > 2", [2, 0, 3, 1], True),
        ("[3, 1, 4, 2]", [2, 0, 3, 1], True),
        ("<think>[1] > [2] seems wrong</think>\n[4] > [3] > [2] > [1]", [3, 2, 1, 0], True),
        ("<think>I believe [2] is best but let me", [0, 1, 2, 3], False),
        ("[3] > [3] > [1] > [1]", [2, 0, 1, 3], True),  # duplicates keep their first place
        ("[9] > [0] > [2] > [-1] > [4]", [1, 3, 0, 2], True),  # out of range dropped
        ("[4]", [3, 0, 1, 2], True),  # missing ones follow in window order
        ("", [0, 1, 2, 3], False),
        ("I cannot rank these passages.", [0, 1, 2, 3], False),
        ("[\uff14] > [\u2462] > [\u00b2] > [\u2081]", [3, 2, 1, 0], True),  # look-alikes
        ("\uff3b4\uff3d > \u30102\u3011", [3, 1, 0, 2], True),  # fullwidth, lenticular brackets
        ("Passage [2] answers it; the 4 others do not. [2] > [1]", [1, 0, 2, 3], True),
    ],
)
def test_answers_are_read_and_repaired(answer: str, order: list[int], named: bool) -> None:
    assert read_order(answer, 4) == (order, named)


def test_circled_numbers_above_nine_and_superscript_runs() -> None:
    assert read_order("[\u246b] > [\u00b9\u00b9] > [\u2460\u2461]", 12) == (
        [11, 10, *range(10)],
        True,
    )
    assert normalize_digits("\u00bd and \u4e09 stay") == "\u00bd and \u4e09 stay"


@given(st.text(), st.integers(min_value=1, max_value=30))
def test_any_answer_is_a_permutation_of_the_window(answer: str, size: int) -> None:
    order, _ = read_order(answer, size)
    assert sorted(order) == list(range(size))


@given(st.lists(st.text(), max_size=8), st.integers(min_value=0, max_value=45))
def test_every_document_comes_back_exactly_once(answers: list[str], n: int) -> None:
    ranking = WindowedRanking("q", [f"d{i}" for i in range(n)], window_schedule(n, 20, 10))
    replies = iter(answers)
    while ranking.next_window() is not None:
        ranking.apply(next(replies, ""))
    assert sorted(ranking.order) == list(range(n))
    assert sorted(ranking.values()) == [float(v) for v in range(1, n + 1)]


def test_unparsed_windows_keep_their_order_and_are_counted() -> None:
    ranking = WindowedRanking("q", [f"d{i}" for i in range(25)], window_schedule(25, 20, 10))
    ranking.apply("nothing useful")
    ranking.apply("[15] > [1]")
    assert ranking.unparsed == 1
    assert ranking.order == [14, *range(14), *range(15, 25)]
    assert ranking.values()[14] == 25.0


def _words(messages: object) -> int:
    return sum(len(m["content"].split()) for m in messages)  # type: ignore[attr-defined]


def test_rankzephyr_prompt_is_one_turn_and_rankgpt_one_turn_per_passage() -> None:
    zephyr = RANKZEPHYR.messages("q", ["alpha", "beta"])
    assert [m["role"] for m in zephyr] == ["system", "user"]
    assert "[1] alpha\n[2] beta\n" in zephyr[1]["content"]
    assert zephyr[1]["content"].startswith("I will provide you with 2 passages")
    gpt = RANKGPT.messages("q", ["alpha", "beta"])
    roles = [m["role"] for m in gpt]
    assert roles == ["system", "user", "assistant", *["user", "assistant"] * 2, "user"]
    assert gpt[3]["content"] == "[1] alpha"
    assert gpt[6]["content"] == "Received passage [2]."
    assert "Rank the 2 passages above" in gpt[-1]["content"]


def test_style_follows_the_model_unless_given() -> None:
    assert choose_style("castorini/rank_zephyr_7b_v1_full", None) is RANKZEPHYR
    assert choose_style("castorini/rank_vicuna_7b_v1", None) is RANKZEPHYR
    assert choose_style("gpt-4o-mini", None) is RANKGPT
    assert choose_style("castorini/rank_zephyr_7b_v1_full", "rankgpt") is RANKGPT


def test_identifiers_in_passages_and_the_query_are_escaped() -> None:
    assert escape_identifiers("see [3] and [ 12 ] but not [a]") == "see (3) and (12) but not [a]"
    prompter = Prompter(
        RANKZEPHYR,
        max_passage_words=300,
        context_size=10_000,
        count_tokens=_words,
        answer_tokens=lambda size: 5 * size,
    )
    prompt = prompter.window("why [1]?", ["cites [2] twice [2]", "plain"])
    content = prompt.messages[1]["content"]
    assert "[1] cites (2) twice (2)\n[2] plain\n" in content
    assert "query: why (1)?" in content
    assert prompt.cut == frozenset()


def test_passages_shrink_until_the_window_fits() -> None:
    long = " ".join(["word"] * 400)
    prompter = Prompter(
        RANKGPT,
        max_passage_words=300,
        context_size=600,
        count_tokens=_words,
        answer_tokens=lambda size: 50,
    )
    prompt = prompter.window("q", [long, "short text", long])
    assert _words(prompt.messages) <= 550
    lengths = [len(m["content"].split()) - 1 for m in prompt.messages[3:9:2]]  # minus "[i]"
    assert lengths[1] == 2
    assert 100 < lengths[0] == lengths[2] < 300  # shrunk below the budget, not emptied
    assert prompt.cut == frozenset({0, 2})
    assert prompt.max_new_tokens == 50
    more = " ".join(["word"] * (lengths[0] + 1))  # the largest budget that fits: one more won't
    assert _words(RANKGPT.messages("q", [more, "short text", more])) > 550

    def characters(messages: object) -> int:
        return sum(len(m["content"]) for m in messages)  # type: ignore[attr-defined]

    by_characters = Prompter(
        RANKZEPHYR,
        max_passage_words=300,
        context_size=1500,
        count_tokens=characters,
        answer_tokens=lambda size: 50,
    )
    unspaced = by_characters.window("q", ["\u6587" * 5000])  # no spaces: shrinks all the same
    assert 1000 < characters(unspaced.messages) <= 1450


def test_a_window_that_cannot_fit_is_a_typed_error() -> None:
    prompter = Prompter(
        RANKGPT,
        max_passage_words=300,
        context_size=60,
        count_tokens=_words,
        answer_tokens=lambda size: 10,
    )
    with pytest.raises(InvalidInputError, match="does not fit context_size=60"):
        prompter.window("q", ["a b c"] * 20)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("[" + "9" * 5000 + "] > [2]", ([1, 0, 2], True)),
        ("1" * 5000, ([0, 1, 2], False)),
        ("[2] > [" + "0" * 9000 + "1]", ([1, 0, 2], True)),
    ],
)
def test_a_degenerate_run_of_digits_is_skipped(
    answer: str, expected: tuple[list[int], bool]
) -> None:
    assert read_order(answer, 3) == expected
