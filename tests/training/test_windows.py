"""Long documents in training: the window a reranker with ``max_windows`` reads, picked by the
query's terms, in the training rows and the validation lists."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

from transformers import AutoTokenizer, TrainerCallback

from rerankit.errors import ConfigurationError
from rerankit.pipelines.pair_encoder import window_starts
from rerankit.training import TrainSettings, load_training_data, train
from rerankit.training.windows import WindowPicker
from tests import model_factory

FILLER = "the cohort was followed for several years and outcomes were recorded in detail . "


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(model_factory.minilm_dir())


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return ids


def test_a_long_document_is_read_at_the_window_the_query_points_to(tokenizer: Any) -> None:
    query = "does vitamin d deficiency raise tuberculosis risk?"
    document = FILLER * 12 + "vitamin d deficiency raised the tuberculosis risk . " + FILLER * 2
    background = [FILLER * 3, "vitamin c and colds . " * 4, document]
    picker = WindowPicker(tokenizer, background, max_length=64, max_windows=4)
    picked = picker.pick(query, document)
    ids = _ids(tokenizer, document)
    budget = 64 - 3 - len(_ids(tokenizer, query))
    starts = window_starts(len(ids), budget, 4)
    assert len(starts) == 4
    assert "tuberculosis" in picked
    assert picked in document
    # the text re-tokenizes to exactly one of the windows the reranker reads, not the first
    windows = [ids[s : s + budget] for s in starts]
    assert _ids(tokenizer, picked) in windows[1:]
    assert "tuberculosis" not in tokenizer.decode(windows[0])


def test_documents_that_fit_or_one_window_stay_whole_and_ties_keep_the_first(
    tokenizer: Any,
) -> None:
    query = "tuberculosis"
    short = "tuberculosis in mice ."
    long = FILLER * 10
    picker = WindowPicker(tokenizer, [short, long], max_length=64, max_windows=3)
    assert picker.pick(query, short) == short
    no_match = picker.pick(query, long)  # every window scores 0: the first one
    budget = 64 - 3 - len(_ids(tokenizer, query))
    assert _ids(tokenizer, no_match) == _ids(tokenizer, long)[:budget]
    one = WindowPicker(tokenizer, [long], max_length=64, max_windows=1)
    assert one.pick(query, long + " tuberculosis") == long + " tuberculosis"


class _Rows(TrainerCallback):  # type: ignore[misc]
    """Keeps the training rows the trainer was given."""

    rows: list[dict[str, Any]]

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.rows = list(kwargs["train_dataloader"].dataset)


@pytest.mark.parametrize("loss", ["bce", "lambda"])
def test_training_rows_read_long_documents_as_picked_windows(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path, loss: str
) -> None:
    settings = TrainSettings(
        loss=loss,
        base=str(tiny_encoder_dir),
        out=str(tmp_path / "m"),
        negatives=3,
        mine_depth=10,
        epochs=1,
        batch_size=8,
        max_length=64,
        max_windows=3,
        validation_queries=4,
        seed=7,
        device="cpu",
    )
    spy = _Rows()
    outcome = train(train_set, settings, callbacks=[spy])
    data = load_training_data(train_set)
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    later = 0
    texts = [
        (row["query"], text)
        for row in spy.rows
        for text in (row["documents"] if loss == "lambda" else [row["document"]])
    ]
    assert len(texts) >= 20 * 4  # every training query's positives and 3 negatives, no loss
    for query, text in texts:
        budget = 64 - 3 - min(len(_ids(tokenizer, query)), 32)
        read = [_reads(tokenizer, d, budget) for d in data.corpus.values() if text in d]
        assert any(text in windows for windows in read), "a text that is no document's window"
        later += all(windows[0] != text for windows in read)
    assert later > 0, "no long document trained on a later window: the test could not fail"
    assert outcome.steps > 0
    card = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert "max_length=64, max_windows=3)" in card  # read as it learned
    assert "max_length=64,max_windows=3" in card


def _reads(tokenizer: Any, document: str, budget: int) -> list[str]:
    """The texts of the windows a reader with max_windows=3 scores (the document if it fits)."""
    encoded = tokenizer(
        document, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    starts = window_starts(len(ids), budget, 3)
    if len(starts) == 1:
        return [document]
    ends = [min(s + budget, len(ids)) - 1 for s in starts]
    return [document[offsets[s][0] : offsets[e][1]] for s, e in zip(starts, ends, strict=True)]


def test_runs_from_before_max_windows_resume_and_other_windows_are_refused(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    import json
    from dataclasses import asdict

    from rerankit.training.trainer import _check_output

    out = tmp_path / "run"
    (out / "training").mkdir(parents=True)
    settings = TrainSettings(base=str(tiny_encoder_dir), out=str(out))
    older = {k: v for k, v in asdict(settings).items() if k != "max_windows"}
    (out / "training" / "settings.json").write_text(json.dumps(older), encoding="utf-8")
    _check_output(out, settings, [], resume=True, overwrite=False)  # the default it ran with
    windowed = TrainSettings(base=str(tiny_encoder_dir), out=str(out), max_windows=3)
    with pytest.raises(ConfigurationError, match=r"\['max_windows'\]"):
        _check_output(out, windowed, [], resume=True, overwrite=False)


def test_max_windows_must_be_a_positive_count_and_needs_a_fast_tokenizer(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="max_windows must be a positive integer"):
        TrainSettings(base=str(tiny_encoder_dir), out=str(tmp_path / "m"), max_windows=0)
    slow = SimpleNamespace(is_fast=False, num_special_tokens_to_add=lambda pair: 3)  # no offsets
    with pytest.raises(ConfigurationError, match="needs the model's fast tokenizer"):
        WindowPicker(slow, ["a document"], max_length=64, max_windows=2)
    assert WindowPicker(slow, [], max_length=64, max_windows=1).pick("q", "d") == "d"
    fast = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    with pytest.raises(ConfigurationError, match="no room for a query"):
        WindowPicker(fast, ["a document"], max_length=4, max_windows=2)
