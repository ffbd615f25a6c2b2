"""The cross-encoder backend against sentence-transformers' CrossEncoder on the same weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder

from rerankit import BackendError, ConfigurationError, Reranker

QUERY = "Which proteins are involved in DNA repair?"


def _reference(model_dir: Path, docs: list[str], *, max_length: int = 512) -> np.ndarray:
    ce = CrossEncoder(str(model_dir), device="cpu", max_length=max_length)
    return np.asarray(
        ce.predict([(QUERY, d) for d in docs], activation_fn=torch.nn.Identity(), batch_size=8)
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_xlmr_dir", "minilm_reranker_dir"])
def test_raw_scores_equal_sentence_transformers(
    fixture: str, request: pytest.FixtureRequest, scifact_texts: list[str]
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    docs = [*scifact_texts[:30], "", "DNA repair"]
    reference = _reference(model_dir, docs)
    scores = Reranker(str(model_dir), batch_size=8).score(QUERY, docs)
    assert scores == pytest.approx(reference.tolist(), abs=1e-4)
    assert np.ptp(reference) > 1e-4, "reference scores are all equal: the test could not fail"


def test_normalize_gives_the_sigmoid(minilm_reranker_dir: Path, scifact_texts: list[str]) -> None:
    docs = scifact_texts[:10]
    raw = np.asarray(_reference(minilm_reranker_dir, docs))
    normalized = Reranker(str(minilm_reranker_dir), normalize=True).score(QUERY, docs)
    assert normalized == pytest.approx((1 / (1 + np.exp(-raw))).tolist(), abs=1e-5)


def test_two_logit_head_uses_softmax_of_positive_class(
    tiny_bert_two_label_dir: Path, scifact_texts: list[str]
) -> None:
    docs = scifact_texts[:10]
    logits = np.asarray(
        CrossEncoder(str(tiny_bert_two_label_dir), device="cpu").predict(
            [(QUERY, d) for d in docs], activation_fn=torch.nn.Identity()
        )
    )
    expected = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert Reranker(str(tiny_bert_two_label_dir)).score(QUERY, docs) == pytest.approx(
        expected.tolist(), abs=1e-5
    )


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
        scores = rr.score("a very long query " * 50, ["passage one", "passage two " * 40])
    assert len(scores) == 2
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
    ("option", "value"),
    [("max_batch_tokens", "abc"), ("max_batch_tokens", 0), ("max_query_length", 2.5)],
)
def test_malformed_numeric_options_say_what_is_expected(
    tiny_bert_dir: Path, option: str, value: object
) -> None:
    with pytest.raises(
        ConfigurationError, match=f"option {option} must be an integer >= 1, got {value!r}"
    ):
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
