"""The cross-encoder backend against sentence-transformers' CrossEncoder on the same weights."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

import rerankit.reranker
from rerankit import BackendError, ConfigurationError, Reranker
from tests import model_factory

QUERY = "Which proteins are involved in DNA repair?"


def _reference(model_dir: Path, docs: list[str], *, max_length: int = 512) -> np.ndarray:
    """sentence-transformers' raw logits (its default applies a sigmoid to one-logit models)."""
    ce = CrossEncoder(str(model_dir), device="cpu", max_length=max_length)
    return np.asarray(
        ce.predict([(QUERY, d) for d in docs], activation_fn=torch.nn.Identity(), batch_size=8)
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_xlmr_dir", "minilm_reranker_dir"])
def test_raw_scores_equal_sentence_transformers(
    fixture: str, request: pytest.FixtureRequest, scifact_texts: list[str]
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    docs = [*scifact_texts[:30], "", "DNA repair", "word " * 700]
    reference = _reference(model_dir, docs)
    scores = Reranker(str(model_dir), batch_size=8).score(QUERY, docs)
    assert scores == pytest.approx(reference.tolist(), abs=1e-4)
    assert np.ptp(reference) > 1e-4, "reference scores are all equal: the test could not fail"


def test_normalize_gives_the_sigmoid(minilm_reranker_dir: Path, scifact_texts: list[str]) -> None:
    docs = scifact_texts[:10]
    raw = _reference(minilm_reranker_dir, docs)
    normalized = Reranker(str(minilm_reranker_dir), normalize=True).score(QUERY, docs)
    assert normalized == pytest.approx((1 / (1 + np.exp(-raw))).tolist(), abs=1e-5)
    # sentence-transformers' own default for a one-logit head is that sigmoid too.
    default = CrossEncoder(str(minilm_reranker_dir), device="cpu").predict(
        [(QUERY, d) for d in docs]
    )
    assert normalized == pytest.approx(np.asarray(default).tolist(), abs=1e-5)


def test_two_logit_head_gives_log_odds_and_softmax(
    tiny_bert_two_label_dir: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:10]
    logits = np.asarray(
        CrossEncoder(str(tiny_bert_two_label_dir), device="cpu").predict(
            [(QUERY, d) for d in docs], activation_fn=torch.nn.Identity()
        )
    )
    log_odds = logits[:, 1] - logits[:, 0]
    softmax = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    raw = Reranker(str(tiny_bert_two_label_dir))
    assert raw.score(QUERY, docs) == pytest.approx(log_odds.tolist(), abs=1e-5)
    assert raw.rank(QUERY, docs).scale == "logit"
    normalized = Reranker(str(tiny_bert_two_label_dir), normalize=True).score(QUERY, docs)
    assert normalized == pytest.approx(softmax.tolist(), abs=1e-5)


def test_results_name_their_scale(tiny_bert_dir: Path) -> None:
    assert Reranker(str(tiny_bert_dir)).rank(QUERY, ["a", "b"]).scale == "logit"
    normalized = Reranker(str(tiny_bert_dir), normalize=True).rank(QUERY, ["a", "b"])
    assert normalized.scale == "probability"
    assert all(0.0 <= s <= 1.0 for s in normalized.scores)


def test_other_heads_raise(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_bert_dir)
    config.num_labels = 3
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((tiny_bert_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_bytes(
        (tiny_bert_dir / "tokenizer_config.json").read_bytes()
    )
    with pytest.raises(BackendError, match="3-label head"):
        Reranker(str(tmp_path))


def test_plain_encoder_without_head_is_refused(scifact_texts: list[str]) -> None:
    """all-MiniLM-L6-v2 is a BertModel: transformers would give it a random classifier."""
    folder = str(model_factory.minilm_dir())
    with pytest.raises(ConfigurationError) as refused:
        Reranker(folder, backend="cross-encoder")
    message = str(refused.value)
    assert "classifier.weight" in message
    assert "classifier.bias" in message
    assert "allow_untrained_head=True" in message
    allowed = Reranker(folder, backend="cross-encoder", allow_untrained_head="true")
    assert len(allowed.score(QUERY, scifact_texts[:3])) == 3


def test_causal_lm_reranker_is_refused_even_when_named(tmp_path: Path) -> None:
    folder = model_factory.tiny_qwen3_causal_lm(tmp_path / "qwen3")
    with pytest.raises(ConfigurationError, match="causal-LM reranker") as refused:
        Reranker(str(folder), backend="cross-encoder")
    assert "cross-encoder backend cannot run" in str(refused.value)
    with pytest.raises(ConfigurationError, match="causal-LM reranker"):
        Reranker(str(folder), backend="cross-encoder", allow_untrained_head=True)


def test_trust_remote_code_as_text_is_parsed(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """``trust_remote_code="False"`` (a CLI or YAML value) must not run the folder's own code."""
    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModelForSequenceClassification": "remote_model.Classifier"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "remote_model.py").write_text('raise RuntimeError("the folder\'s own code ran")\n')
    assert len(Reranker(str(folder), trust_remote_code="False").score(QUERY, ["a", "b"])) == 2
    with pytest.raises(RuntimeError, match="the folder's own code ran"):
        Reranker(str(folder), trust_remote_code="true")


def test_truncation_is_counted_and_logged(
    minilm_reranker_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = ["short passage", "word " * 600, "another " * 300, "fits"]
    rr = Reranker(str(minilm_reranker_dir), max_length=128)
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = rr.rank(QUERY, docs)
    assert result.truncated == 2
    assert "2 of 4 documents were truncated to 128 tokens" in caplog.text
    # Truncation is passage-side: the query keeps its tokens, as with only_second truncation.
    reference = _reference(minilm_reranker_dir, docs, max_length=128)
    assert rr.score(QUERY, docs) == pytest.approx(reference.tolist(), abs=1e-4)


def test_long_query_is_capped_not_an_error(
    tiny_bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rr = Reranker(str(tiny_bert_dir), max_length=64, max_query_length=16)
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = rr.rank("a very long query " * 50, ["passage one", "passage two " * 40])
    assert len(result) == 2
    assert result.truncated == 1  # 64 - 3 special - 16 query tokens leave 45 for a passage
    assert "query truncated to max_query_length=16" in caplog.text


def test_batching_does_not_change_scores(
    minilm_reranker_dir: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:24]
    one_batch = Reranker(str(minilm_reranker_dir), batch_size=64).score(QUERY, docs)
    small = Reranker(str(minilm_reranker_dir), batch_size=3, max_batch_tokens=600).score(
        QUERY, docs
    )
    assert small == pytest.approx(one_batch, abs=1e-4)


def test_unknown_option_and_bad_query_cap(tiny_bert_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not accept the options \\['max_batch'\\]"):
        Reranker(str(tiny_bert_dir), max_batch=3)
    with pytest.raises(ConfigurationError, match="max_query_length"):
        Reranker(str(tiny_bert_dir), max_length=32, max_query_length=40)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_batch_tokens", "abc", "option max_batch_tokens takes an int, got 'abc'"),
        ("max_batch_tokens", 0, "option max_batch_tokens must be >= 1, got 0"),
        ("max_query_length", 2.5, "option max_query_length takes an int, got 2.5 (float)"),
        ("allow_untrained_head", "maybe", "option allow_untrained_head takes true or false"),
    ],
)
def test_malformed_options_say_what_is_expected(
    tiny_bert_dir: Path, option: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        Reranker(str(tiny_bert_dir), **{option: value})


def test_missing_model_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="could not load cross-encoder"):
        Reranker(str(tmp_path / "nope"), backend="cross-encoder")


def test_unavailable_device_is_a_configuration_error(tiny_bert_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        Reranker(str(tiny_bert_dir), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_half_precision_agrees_with_cpu(
    minilm_reranker_dir: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:32]
    cpu = Reranker(str(minilm_reranker_dir), device="cpu").score(QUERY, docs)
    gpu = Reranker(str(minilm_reranker_dir), device="cuda")
    assert gpu.backend.dtype == torch.float16  # type: ignore[attr-defined]
    assert gpu.score(QUERY, docs) == pytest.approx(cpu, abs=2e-2)
    assert np.argsort(gpu.score(QUERY, docs))[-5:].tolist() == np.argsort(cpu)[-5:].tolist()


def test_a_small_max_length_blames_max_length_not_an_option_never_set(
    tiny_bert_dir: Path,
) -> None:
    rr = Reranker(str(tiny_bert_dir), backend="cross-encoder", max_length=6)
    assert len(rr.score("a long query with many words in it", ["a passage"])) == 1
    with pytest.raises(ConfigurationError, match="max_length=3 leaves no room"):
        Reranker(str(tiny_bert_dir), backend="cross-encoder", max_length=3)


def test_max_windows_keeps_the_best_window_as_transformers_scores_it(
    minilm_reranker_dir: Path, scifact_texts: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """MaxP: each window of a long passage read on its own by the model, without padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_reranker_dir)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_reranker_dir).eval()
    docs = [*scifact_texts[:8], "DNA repair"]
    query_ids = tokenizer(QUERY, add_special_tokens=False)["input_ids"]
    budget = 64 - 3 - len(query_ids)
    expected = []
    for doc in docs:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        starts = list(range(0, len(ids), budget))[:3]
        if len(ids) > budget and starts[-1] + budget >= len(ids):
            starts[-1] = len(ids) - budget
        window_scores = []
        for start in starts:
            window = ids[start : start + budget]
            first = [tokenizer.cls_token_id, *query_ids, tokenizer.sep_token_id]
            second = [*window, tokenizer.sep_token_id]
            with torch.no_grad():
                logits = model(
                    input_ids=torch.tensor([first + second]),
                    token_type_ids=torch.tensor([[0] * len(first) + [1] * len(second)]),
                ).logits
            window_scores.append(float(logits[0, 0]))
        expected.append(max(window_scores))
    windowed = Reranker(str(minilm_reranker_dir), max_length=64, max_windows=3, batch_size=5)
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = windowed.rank(QUERY, docs)
    assert [result.scores[result.indices.index(i)] for i in range(len(docs))] == pytest.approx(
        expected, abs=1e-4
    )
    longer = sum(
        len(tokenizer(d, add_special_tokens=False)["input_ids"]) > 3 * budget for d in docs
    )
    assert 0 < result.truncated == longer < len(docs)
    assert (
        f"{longer} of {len(docs)} documents were truncated to 3 windows of 64 tokens" in caplog.text
    )
    truncating = Reranker(str(minilm_reranker_dir), max_length=64).score(QUERY, docs)
    assert truncating[-1] == pytest.approx(expected[-1], abs=1e-4), "a short passage: one window"
    assert max(abs(a - b) for a, b in zip(truncating, expected, strict=True)) > 1e-2, (
        "no window beat the first: the test could not fail"
    )


def test_truncation_warns_once_a_minute_per_reranker(
    minilm_reranker_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = ["short passage", "word " * 600]
    rr = Reranker(str(minilm_reranker_dir), max_length=64)
    with caplog.at_level(logging.DEBUG, logger="rerankit"):
        results = [rr.rank(QUERY, docs) for _ in range(3)]
    assert [r.truncated for r in results] == [1, 1, 1]
    lines = [r for r in caplog.records if "were truncated to 64 tokens" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "truncations at DEBUG level for the next 60 s" in lines[0].getMessage()
    caplog.clear()
    later = time.monotonic() + 61  # a minute on: a long-lived reranker (a server) warns again
    monkeypatch.setattr(rerankit.reranker.time, "monotonic", lambda: later)
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        rr.rank(QUERY, docs)
    assert "were truncated" in caplog.text
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        Reranker(str(minilm_reranker_dir), max_length=64).rank(QUERY, docs)
    assert "were truncated" in caplog.text, "a new reranker warns again"
