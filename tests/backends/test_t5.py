"""The T5 backend against rerankers' ``T5Ranker`` (after InRanker) on the same tiny weights."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rerankers.models.t5ranker import T5Ranker
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from rerankit import ConfigurationError, Reranker
from rerankit.registry import infer_backend
from tests import model_factory

QUERY = "Which proteins are involved in DNA repair?"
DOCS = [
    "DNA repair involves proteins such as BRCA1 and RAD51.",
    "",
    "a cat",
    "Le modèle lit aussi le français. 检索增强生成",
    "digits 12345 and 3.14159",
    "  spaces   everywhere  ",
    "The capital of France is Paris, a city on the Seine.",
]


def reference(folder: Path, docs: list[str], *, tokens: tuple[str, str]) -> np.ndarray:
    """rerankers' scores as log-odds: its P(true), and its raw logits of both tokens."""
    false, true = tokens
    probability = T5Ranker(str(folder), token_false=false, token_true=true, verbose=0)
    logit_true = T5Ranker(str(folder), token_true=true, return_logits=True, verbose=0)
    logit_false = T5Ranker(str(folder), token_true=false, return_logits=True, verbose=0)
    p = np.asarray(probability._get_scores(QUERY, docs))
    raw = np.asarray(logit_true._get_scores(QUERY, docs)) - np.asarray(
        logit_false._get_scores(QUERY, docs)
    )
    assert 1 / (1 + np.exp(-raw)) == pytest.approx(p, abs=1e-6)
    return raw


@contextmanager
def encoder_inputs(rr: Reranker) -> Iterator[list[list[int]]]:
    """The real (unpadded) input ids the reranker's T5 encoder is given, row by row."""
    seen: list[list[int]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs["attention_mask"].bool()
        assert mask[:, 0].all(), "a row does not start with a real token (left padding?)"
        seen.extend(ids[row].tolist() for ids, row in zip(kwargs["input_ids"], mask, strict=True))

    handle = rr.backend.model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def monot5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_factory.tiny_t5_reranker(tmp_path_factory.mktemp("t5") / "monot5-tiny")


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("t5") / "mt5-tiny-msmarco"
    return model_factory.tiny_t5_reranker(folder, multilingual=True)


def test_scores_equal_rerankers(monot5_dir: Path, scifact_texts: list[str]) -> None:
    docs = [*DOCS, *(t[:300] for t in scifact_texts[:10])]
    expected = reference(monot5_dir, docs, tokens=("▁false", "▁true"))
    rr = Reranker(str(monot5_dir), batch_size=8)
    assert rr.backend_name == "t5"
    assert rr.score(QUERY, docs) == pytest.approx(expected, abs=1e-5)
    normalized = Reranker(str(monot5_dir), normalize=True)
    assert normalized.score(QUERY, docs) == pytest.approx(1 / (1 + np.exp(-expected)), abs=1e-5)
    assert np.ptp(expected) > 1e-3, "reference scores are all equal: the test could not fail"


def test_mt5_answers_yes_or_no(mt5_dir: Path) -> None:
    expected = reference(mt5_dir, DOCS, tokens=("▁no", "▁yes"))
    rr = Reranker(str(mt5_dir))
    assert rr.backend.model.family.name == "mt5"
    assert rr.score(QUERY, DOCS) == pytest.approx(expected, abs=1e-5)
    as_monot5 = Reranker(str(mt5_dir), family="monot5", normalize=True).score(QUERY, DOCS)
    assert np.abs(np.asarray(as_monot5) - 1 / (1 + np.exp(-expected))).max() > 1e-3


def test_the_reference_discriminates(monot5_dir: Path) -> None:
    """Without its attention mask, a padded row scores differently: the mask matters."""
    tokenizer = AutoTokenizer.from_pretrained(monot5_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(monot5_dir).eval()
    texts = [f"Query: {QUERY} Document: {d} Relevant:" for d in DOCS]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    start = torch.zeros((len(texts), 1), dtype=torch.long)
    with torch.no_grad():
        masked = model(**inputs, decoder_input_ids=start).logits[:, -1]
        unmasked = model(input_ids=inputs["input_ids"], decoder_input_ids=start).logits[:, -1]
    false, true = tokenizer.convert_tokens_to_ids(["▁false", "▁true"])
    with_mask = (masked[:, true] - masked[:, false]).numpy()
    without = (unmasked[:, true] - unmasked[:, false]).numpy()
    assert with_mask == pytest.approx(reference(monot5_dir, DOCS, tokens=("▁false", "▁true")))
    assert np.abs(with_mask - without).max() > 1e-3


def test_long_documents_keep_the_relevant_tail(monot5_dir: Path, scifact_texts: list[str]) -> None:
    """rerankers cuts "Relevant:" off a long input; the document is truncated here instead."""
    docs = ["short passage", " ".join(scifact_texts[:3])]
    rr = Reranker(str(monot5_dir), max_length=64)
    with encoder_inputs(rr) as seen:
        result = rr.rank(QUERY, docs)
    assert result.truncated == 1
    tokenizer = AutoTokenizer.from_pretrained(monot5_dir)
    tail = tokenizer("Relevant:")["input_ids"]  # with T5's closing </s>
    assert [len(ids) for ids in seen] == [64, len(seen[1])]
    assert all(ids[-len(tail) :] == tail for ids in seen)
    cut = tokenizer(f"Query: {QUERY} Document: {docs[1]} Relevant:", max_length=64, truncation=True)
    assert cut["input_ids"][-len(tail) :] != tail  # the reference's input lost its tail
    true, false = (
        np.asarray(
            T5Ranker(str(monot5_dir), token_true=t, return_logits=True, verbose=0)._get_scores(
                QUERY, docs, max_length=64
            )
        )
        for t in ("▁true", "▁false")
    )
    scores = rr.score(QUERY, docs)
    assert scores[0] == pytest.approx(true[0] - false[0], abs=1e-5)
    assert abs(scores[1] - (true[1] - false[1])) > 1e-3, "the long input lost its tail here too"


def test_long_query_is_capped(monot5_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    rr = Reranker(str(monot5_dir), max_length=128)
    with caplog.at_level(logging.WARNING, logger="rerankit"), encoder_inputs(rr) as seen:
        rr.score("a very long query " * 100, ["passage one", "passage two " * 60])
    assert "query truncated to max_query_length=" in caplog.text  # 64 + the "Query: " text
    tokenizer = AutoTokenizer.from_pretrained(monot5_dir)
    document = tokenizer("Document:", add_special_tokens=False)["input_ids"]
    # The query's own tokens are capped at 64; "Query: " comes on top, then the document.
    around = len(tokenizer("Query: ", add_special_tokens=False)["input_ids"])
    for ids in seen:
        assert len(ids) <= 128
        assert ids[64 + around : 64 + around + len(document)] == document


def test_batch_composition_does_not_change_scores(
    monot5_dir: Path, scifact_texts: list[str]
) -> None:
    docs = [*scifact_texts[:14], "", "x"]
    one_by_one = Reranker(str(monot5_dir), batch_size=1).score(QUERY, docs)
    together = Reranker(str(monot5_dir), batch_size=16, max_batch_tokens=100_000)
    assert together.score(QUERY, docs) == pytest.approx(one_by_one, abs=1e-5)


def test_names_and_folders_route_to_t5(monot5_dir: Path, tmp_path: Path) -> None:
    assert infer_backend("castorini/monot5-base-msmarco-10k") == "t5"
    assert infer_backend("unicamp-dl/InRanker-base") == "t5"
    assert infer_backend("unicamp-dl/mt5-base-mmarco-v2") == "t5"
    anonymous = tmp_path / "my-t5"
    anonymous.symlink_to(monot5_dir, target_is_directory=True)
    assert infer_backend(str(anonymous)) == "t5"
    with pytest.raises(ConfigurationError, match=r"pass family= one of \['monot5', 'mt5'\]"):
        Reranker(str(anonymous))
    assert len(Reranker(str(anonymous), family="monot5").score(QUERY, ["a"])) == 1
