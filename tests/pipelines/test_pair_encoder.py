"""The pair-encoder pipeline: the model inputs it builds, and how scores come back."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from rerankit import BackendError, ConfigurationError
from rerankit.pipelines.pair_encoder import (
    Batch,
    PairEncoderPipeline,
    PairTemplate,
    head_scores,
)
from rerankit.types import Scores

QUERY = "Which proteins are involved in DNA repair?"


class Recorder:
    """A forward that keeps every batch and scores a row by the sum of its real token ids."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def __call__(self, batch: Batch) -> np.ndarray:
        self.batches.append(batch)
        return (batch["input_ids"] * batch["attention_mask"]).sum(axis=1).astype(np.float64)

    def rows(self) -> list[tuple[list[int], list[int]]]:
        """Every row's real input ids and type ids, in the order the model saw them."""
        found = []
        for batch in self.batches:
            for ids, mask, types in zip(
                batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], strict=True
            ):
                real = mask.astype(bool)
                found.append((ids[real].tolist(), types[real].tolist()))
        return found


def _pipeline(folder: Path, forward: Recorder, **settings: int) -> PairEncoderPipeline:
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # Truncation and padding on, as FlashRank sets them up (and MiniLM's tokenizer.json has
    # them): the pipeline must turn both off and truncate passage-side itself.
    tokenizer.enable_truncation(48)
    tokenizer.enable_padding(length=600)
    return PairEncoderPipeline(
        tokenizer,
        forward,
        pad_id=settings.pop("pad_id", 0),
        normalize=False,
        name="test-model",
        **{"max_length": 512, "batch_size": 4, "max_batch_tokens": 1024, **settings},
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_xlmr_dir"])
@pytest.mark.parametrize("max_length", [512, 64])
def test_inputs_equal_transformers_only_second_truncation(
    fixture: str, max_length: int, request: pytest.FixtureRequest, scifact_texts: list[str]
) -> None:
    folder: Path = request.getfixturevalue(fixture)
    hf = AutoTokenizer.from_pretrained(folder)
    docs = [*scifact_texts[:20], "", "DNA repair", "word " * 700, "é 检索 [SEP] </s> x"]
    recorder = Recorder()
    pipeline = _pipeline(folder, recorder, max_length=max_length, pad_id=hf.pad_token_id)
    (scores,) = pipeline.score_many([(QUERY, docs)])
    # One batched call: a single call with an empty passage encodes the query alone.
    encoded = hf(
        [QUERY] * len(docs),
        docs,
        truncation="only_second",
        max_length=max_length,
        return_token_type_ids=True,
    )
    expected = [
        {name: encoded[name][i] for name in ("input_ids", "token_type_ids")}
        for i in range(len(docs))
    ]
    rows = recorder.rows()
    assert sorted(rows) == sorted((e["input_ids"], e["token_type_ids"]) for e in expected)
    assert scores.values == [float(sum(e["input_ids"])) for e in expected]
    assert scores.truncated == sum(len(hf(QUERY, doc)["input_ids"]) > max_length for doc in docs)
    assert scores.truncated > 0
    assert scores.usage == {"total_tokens": float(sum(len(e["input_ids"]) for e in expected))}
    assert scores.max_tokens == max_length
    for batch in recorder.batches:
        widths = batch["attention_mask"].sum(axis=1)
        assert widths.max() == batch["input_ids"].shape[1], "batches are padded to their longest"
        assert len(widths) <= 4
        assert widths.max() * len(widths) <= 1024 or len(widths) == 1
        padding = batch["attention_mask"] == 0
        assert (batch["input_ids"][padding] == hf.pad_token_id).all()
        # Right padding: a row's real tokens come first.
        assert (np.diff(batch["attention_mask"], axis=1) <= 0).all()


def test_every_text_comes_back_once_in_input_order(
    tiny_bert_dir: Path, scifact_texts: list[str]
) -> None:
    hf = AutoTokenizer.from_pretrained(tiny_bert_dir)
    requests = [
        (QUERY, [scifact_texts[0], "short", scifact_texts[0], scifact_texts[5]]),
        ("another query", []),
        ("another query", ["short", *scifact_texts[1:8]]),
        (QUERY, ["short"]),
    ]
    recorder = Recorder()
    scored = _pipeline(tiny_bert_dir, recorder, batch_size=3).score_many(requests)
    assert [len(s.values) for s in scored] == [len(texts) for _, texts in requests]
    assert scored[1] == Scores(values=[], usage={"total_tokens": 0.0}, max_tokens=512)
    for (query, texts), scores in zip(requests, scored, strict=True):
        if texts:
            encoded = hf([query] * len(texts), texts, truncation="only_second", max_length=512)
            assert scores.values == [float(sum(ids)) for ids in encoded["input_ids"]]
    assert len(recorder.rows()) == sum(len(texts) for _, texts in requests)


def test_long_query_is_capped_at_a_token_boundary(tiny_bert_dir: Path) -> None:
    hf = AutoTokenizer.from_pretrained(tiny_bert_dir)
    long_query = "proteins repair damaged DNA " * 100
    recorder = Recorder()
    pipeline = _pipeline(tiny_bert_dir, recorder, max_length=64, max_query_length=10)
    (scores,) = pipeline.score_many([(long_query, ["a passage", "word " * 100])])
    query_ids = hf(long_query, add_special_tokens=False)["input_ids"][:10]
    short = hf("a passage", add_special_tokens=False)["input_ids"]
    assert recorder.rows()[-1][0] == [101, *query_ids, 102, *short, 102]
    assert [len(ids) for ids, _ in recorder.rows()] == [64, 3 + 10 + len(short)]
    assert scores.truncated == 1


def test_left_padding_puts_real_tokens_last(tiny_bert_dir: Path) -> None:
    """What a causal-LM reranker uses: its prompt pieces and left padding."""
    template = PairTemplate(prefix=(1, 2), middle=(3,), suffix=(4, 5), padding_side="left")
    recorder = Recorder()
    pipeline = _pipeline(tiny_bert_dir, recorder, template=template, pad_id=0)  # type: ignore[arg-type]
    pipeline.score_many([(QUERY, ["DNA", "a much longer passage about DNA repair"])])
    (batch,) = recorder.batches
    assert (batch["attention_mask"][:, -1] == 1).all()
    assert (np.diff(batch["attention_mask"], axis=1) >= 0).all()
    assert batch["input_ids"][:, -2:].tolist() == [[4, 5], [4, 5]]
    assert batch["input_ids"][:, :2].tolist()[0] == [1, 2], "the longest row is not padded"
    assert batch["input_ids"][1, 0] == 0, "the shorter row is padded on the left"


def test_head_scores() -> None:
    one = np.array([[2.0], [-1.0]])
    assert head_scores(one, normalize=False, model="m").tolist() == [2.0, -1.0]
    assert head_scores(one.ravel(), normalize=False, model="m").tolist() == [2.0, -1.0]
    two = np.array([[0.5, 2.0], [1.0, -3.0]], dtype=np.float32)
    raw = head_scores(two, normalize=False, model="m")
    assert raw.tolist() == pytest.approx([1.5, -4.0])
    softmax = np.exp(two[:, 1]) / np.exp(two).sum(axis=1)
    assert head_scores(two, normalize=True, model="m") == pytest.approx(softmax.tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow for large logits
        extreme = head_scores(np.array([[1000.0], [-1000.0]]), normalize=True, model="m")
    assert extreme.tolist() == [1.0, 0.0]
    with pytest.raises(BackendError, match="'m' has a 3-label head"):
        head_scores(np.zeros((2, 3)), normalize=False, model="m")


def test_template_needs_truncation_and_padding_off(tiny_bert_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json"))
    tokenizer.enable_truncation(16)
    with pytest.raises(ValueError, match="truncation and padding off"):
        PairTemplate.from_tokenizer(tokenizer)


def test_max_windows_scores_each_window_and_keeps_the_best(tiny_bert_dir: Path) -> None:
    hf = AutoTokenizer.from_pretrained(tiny_bert_dir)
    query_ids = hf(QUERY, add_special_tokens=False)["input_ids"]
    budget = 40 - 3 - len(query_ids)
    short, medium, long = "DNA repair", "protein " * 11 + "cells " * 40, "word " * 400
    recorder = Recorder()
    pipeline = _pipeline(tiny_bert_dir, recorder, max_length=40, max_windows=3)
    (scores,) = pipeline.score_many([(QUERY, [short, medium, long])])
    rows = recorder.rows()
    expected_windows = []
    for text in (short, medium, long):
        ids = hf(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            windows = [ids]
        elif len(ids) <= 3 * budget:  # the last window ends where the passage does
            starts = list(range(0, len(ids), budget))
            windows = [ids[s : s + budget] for s in starts[:-1]] + [ids[-budget:]]
        else:  # more windows than max_windows: the first three, the rest is truncated
            windows = [ids[s : s + budget] for s in range(0, 3 * budget, budget)]
        expected_windows.append(windows)
    medium_windows = expected_windows[1]
    assert 1 < len(medium_windows) <= 3
    assert len(medium_windows[-1]) == budget
    built = [
        [101, *query_ids, 102, *window, 102] for windows in expected_windows for window in windows
    ]
    assert sorted(ids for ids, _ in rows) == sorted(built), "each window once, nothing else"
    assert scores.values == [
        float(max(sum(row) for row in ([101, *query_ids, 102, *w, 102] for w in windows)))
        for windows in expected_windows
    ]
    assert scores.truncated == 1, "only the passage longer than three windows loses tokens"
    assert scores.usage["total_tokens"] == sum(len(row) for row in built)


def test_one_window_is_truncation(tiny_bert_dir: Path, scifact_texts: list[str]) -> None:
    requests = [(QUERY, scifact_texts[:10])]
    truncating = _pipeline(tiny_bert_dir, Recorder(), max_length=48).score_many(requests)
    windowed = _pipeline(tiny_bert_dir, Recorder(), max_length=48, max_windows=1)
    assert windowed.score_many(requests) == truncating
    with pytest.raises(ConfigurationError, match="max_windows must be at least 1"):
        _pipeline(tiny_bert_dir, Recorder(), max_windows=0)


def test_max_passage_length_caps_the_passage_before_windows(tiny_bert_dir: Path) -> None:
    hf = AutoTokenizer.from_pretrained(tiny_bert_dir)
    passage = "proteins repair damaged DNA in cells " * 3
    ids = hf(passage, add_special_tokens=False)["input_ids"]
    assert len(ids) > 5
    recorder = Recorder()
    pipeline = _pipeline(tiny_bert_dir, recorder, max_passage_length=5, max_windows=3)
    (scores,) = pipeline.score_many([(QUERY, [passage])])
    ((row, _),) = recorder.rows()
    assert row[-6:] == [*ids[:5], 102], "one window: the capped passage"
    assert scores.truncated == 1
