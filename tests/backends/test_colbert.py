"""The ColBERT backend against a reference written here from the ColBERTv2 definition."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

from rerankit import ConfigurationError, Reranker
from tests import model_factory
from tests.core.test_cli import with_remote_code

QUERY = "Which proteins repair damaged DNA?"


def _linear(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as weights:
        return weights.get_tensor("linear.weight") if "linear.weight" in weights.keys() else None  # noqa: SIM118


def reference_scores(
    folder: Path,
    query: str,
    docs: list[str],
    *,
    query_marker: str | None,
    doc_marker: str | None,
    query_length: int,
    doc_length: int,
    augment: bool,
    skip_punctuation: bool,
) -> list[float]:
    """ColBERTv2 scoring, one document at a time, no batching, no padding.

    Queries: '. ' + text, marker written over the '.', padded to query_length with [MASK]
    (attention 0) when augmenting; every query position is summed. Documents: '. ' + text,
    marker over the '.', punctuation tokens dropped. Score: sum_q max_d cos(q, d).
    """
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()
    weight = _linear(folder / "model.safetensors")
    if weight is None:
        weight = _linear(folder / "1_Dense" / "model.safetensors")

    def embed(ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        hidden = encoder(input_ids=ids, attention_mask=attention).last_hidden_state[0]
        if weight is not None:
            hidden = hidden @ weight.T
        return torch.nn.functional.normalize(hidden, dim=-1)

    def tokenize(text: str, marker: str | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if marker is None:
            enc = tokenizer(text, truncation=True, max_length=length, return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"]
        enc = tokenizer(". " + text, truncation=True, max_length=length, return_tensors="pt")
        ids = enc["input_ids"].clone()
        ids[0, 1] = tokenizer.get_vocab()[marker]
        return ids, enc["attention_mask"]

    with torch.no_grad():
        ids, attention = tokenize(query, query_marker, query_length)
        if augment:
            extra = query_length - ids.shape[1]
            ids = torch.cat([ids, torch.full((1, extra), tokenizer.mask_token_id)], dim=1)
            attention = torch.cat([attention, torch.zeros((1, extra), dtype=torch.long)], dim=1)
        q = embed(ids, attention)
        punctuation = {
            tokenizer(p, add_special_tokens=False)["input_ids"][0] for p in string.punctuation
        }
        scores = []
        for doc in docs:
            ids, attention = tokenize(doc, doc_marker, doc_length)
            d = embed(ids, attention)
            if skip_punctuation:
                d = d[torch.tensor([int(i) not in punctuation for i in ids[0]])]
            scores.append(float((q @ d.T).max(dim=1).values.sum()))
    return scores


@pytest.fixture(scope="module")
def docs(scifact_texts: list[str]) -> list[str]:
    return [*(t[:400] for t in scifact_texts[:12]), "", "DNA repair, (proteins)!"]


@pytest.mark.parametrize(
    ("fixture", "query_marker", "doc_marker"),
    [("tiny_colbert_dir", "[unused0]", "[unused1]"), ("tiny_pylate_dir", "[Q] ", "[D] ")],
)
def test_scores_equal_the_colbertv2_reference(
    fixture: str,
    query_marker: str,
    doc_marker: str,
    request: pytest.FixtureRequest,
    docs: list[str],
) -> None:
    folder: Path = request.getfixturevalue(fixture)
    rr = Reranker(str(folder), device="cpu", batch_size=4)
    assert rr.backend_name == "colbert"
    expected = reference_scores(
        folder,
        QUERY,
        docs,
        query_marker=query_marker,
        doc_marker=doc_marker,
        query_length=model_factory.COLBERT_SETTINGS["query_length"],
        doc_length=model_factory.COLBERT_SETTINGS["document_length"],
        augment=True,
        skip_punctuation=True,
    )
    assert rr.score(QUERY, docs) == pytest.approx(expected, abs=1e-4)
    assert max(expected) - min(expected) > 1e-3, (
        "reference scores are flat: the test could not fail"
    )


def test_plain_encoder_uses_raw_token_embeddings(docs: list[str]) -> None:
    folder = model_factory.minilm_dir()
    rr = Reranker(str(folder), backend="colbert", device="cpu")
    expected = reference_scores(
        folder,
        QUERY,
        docs,
        query_marker=None,
        doc_marker=None,
        query_length=64,
        doc_length=256,
        augment=False,
        skip_punctuation=False,
    )
    assert rr.score(QUERY, docs) == pytest.approx(expected, abs=1e-4)


def test_projection_size_is_read_from_the_weights(tmp_path: Path) -> None:
    folder = model_factory.tiny_colbert(tmp_path / "wide", dim=24)
    rr = Reranker(str(folder), device="cpu")
    assert rr.backend.projection.out_features == 24  # type: ignore[attr-defined]
    assert json.loads((folder / "artifact.metadata").read_text())["dim"] == 24


def test_padded_query_positions_are_never_summed(tiny_colbert_dir: Path, docs: list[str]) -> None:
    """AnswerDotAI/rerankers#75: without augmentation, padding must not count in the sum."""
    short = Reranker(str(tiny_colbert_dir), device="cpu", query_augmentation=False, query_length=16)
    long = Reranker(str(tiny_colbert_dir), device="cpu", query_augmentation=False, query_length=64)
    assert short.score("DNA repair", docs) == pytest.approx(
        long.score("DNA repair", docs), abs=1e-5
    )
    expected = reference_scores(
        tiny_colbert_dir,
        "DNA repair",
        docs,
        query_marker="[unused0]",
        doc_marker="[unused1]",
        query_length=64,
        doc_length=64,
        augment=False,
        skip_punctuation=True,
    )
    assert long.score("DNA repair", docs) == pytest.approx(expected, abs=1e-4)


def test_batching_and_padding_do_not_change_scores(tiny_colbert_dir: Path, docs: list[str]) -> None:
    rr = Reranker(str(tiny_colbert_dir), device="cpu", batch_size=5, max_batch_tokens=200)
    together = rr.score(QUERY, docs)
    alone = [rr.score(QUERY, [d])[0] for d in docs]
    assert together == pytest.approx(alone, abs=1e-5)


def test_document_cache_is_exact_and_bounded(tiny_colbert_dir: Path, docs: list[str]) -> None:
    cached = Reranker(str(tiny_colbert_dir), device="cpu", cache_size=5)
    plain = Reranker(str(tiny_colbert_dir), device="cpu")
    for query in (QUERY, "cells", QUERY):
        assert cached.score(query, docs) == pytest.approx(plain.score(query, docs), abs=1e-6)
    assert len(cached.backend._cache) == 5  # type: ignore[attr-defined]
    duplicated = [docs[0], docs[1], docs[0]]
    scores = cached.score(QUERY, duplicated)
    assert scores[0] == scores[2]


def test_truncation_is_counted_and_names_document_length(
    tiny_colbert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rr = Reranker(str(tiny_colbert_dir), device="cpu")
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = rr.rank(QUERY, ["word " * 200, "short", "word " * 10])
    assert result.truncated == 1
    length = rr.backend.document_length  # type: ignore[attr-defined]
    # max_length does not lengthen documents past document_length: the warning names the option
    assert f"truncated to {length} tokens (document_length={length})" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rerankit"):  # the cap that binds is named
        Reranker(str(tiny_colbert_dir), device="cpu", max_length=12).rank(QUERY, ["word " * 20])
    assert "truncated to 12 tokens (max_length=12)" in caplog.text


def test_document_length_past_the_encoders_positions_is_capped(
    tiny_colbert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    positions = json.loads((tiny_colbert_dir / "config.json").read_text())[
        "max_position_embeddings"
    ]
    rr = Reranker(
        str(tiny_colbert_dir), device="cpu", max_length=4 * positions, document_length=4 * positions
    )
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = rr.rank(QUERY, ["word " * (2 * positions), "short"])
    assert result.truncated == 1
    assert f"(max_position_embeddings={positions})" in caplog.text
    capped = Reranker(str(tiny_colbert_dir), device="cpu", max_length=16)
    assert capped.rank(QUERY, ["word " * 14, "short"]).truncated == 1


def test_normalize_is_refused_and_divide_by_query_length_averages(
    tiny_colbert_dir: Path, docs: list[str]
) -> None:
    """normalize=True once divided by the query length: a second meaning of one option."""
    with pytest.raises(ConfigurationError, match="use divide_by_query_length=True"):
        Reranker(str(tiny_colbert_dir), device="cpu", normalize=True)
    summed = Reranker(str(tiny_colbert_dir), device="cpu")
    averaged = Reranker(str(tiny_colbert_dir), device="cpu", divide_by_query_length="true")
    assert summed.rank(QUERY, docs).scale == "maxsim"
    assert averaged.rank(QUERY, docs).scale == "maxsim-mean"
    # Augmented queries always hold query_length tokens, each summed once.
    length = model_factory.COLBERT_SETTINGS["query_length"]
    assert averaged.score(QUERY, docs) == pytest.approx(
        [s / length for s in summed.score(QUERY, docs)], abs=1e-6
    )


def test_options_are_parsed_by_their_schema(tiny_colbert_dir: Path, docs: list[str]) -> None:
    from_text = Reranker(
        str(tiny_colbert_dir), device="cpu", query_augmentation="False", query_length="16"
    )
    typed = Reranker(str(tiny_colbert_dir), device="cpu", query_augmentation=False, query_length=16)
    assert from_text.backend.options == typed.backend.options
    assert from_text.backend.query_augmentation is False  # type: ignore[attr-defined]
    assert from_text.score(QUERY, docs) == typed.score(QUERY, docs)
    with pytest.raises(ConfigurationError, match="option cache_size must be >= 0, got -1"):
        Reranker(str(tiny_colbert_dir), device="cpu", cache_size="-1")
    with pytest.raises(ConfigurationError, match=r"valid options are .*divide_by_query_length"):
        Reranker(str(tiny_colbert_dir), device="cpu", normalise=True)


@pytest.mark.parametrize("text", ["False", "false", "0"])
def test_trust_remote_code_false_runs_no_remote_code(
    text: str, tiny_colbert_dir: Path, tmp_path: Path
) -> None:
    folder, marker = with_remote_code(tiny_colbert_dir, tmp_path / f"remote-{text}")
    rr = Reranker(str(folder), device="cpu", trust_remote_code=text)
    assert rr.backend.options["trust_remote_code"] is False
    assert not marker.exists()
    assert rr.score(QUERY, ["DNA repair"])
