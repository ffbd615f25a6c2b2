"""Shared fixtures: tiny models built and saved by the tests, and the real MiniLM weights."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from tests import model_factory

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sequence-classification model (one logit) with the real MiniLM vocabulary."""
    return model_factory.tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_labels=1)


@pytest.fixture(scope="session")
def tiny_bert_two_label_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with a two-logit head (softmax of the positive class)."""
    return model_factory.tiny_bert(tmp_path_factory.mktemp("tiny-bert-2"), num_labels=2)


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny XLM-RoBERTa sequence-classification model with a freshly trained tokenizer."""
    return model_factory.tiny_xlm_roberta(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def minilm_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 encoder with a seeded one-logit classification head."""
    return model_factory.minilm_with_head(tmp_path_factory.mktemp("minilm-ce"))


@pytest.fixture(scope="session")
def scifact_texts() -> list[str]:
    """Real passages of varied length from ../shared/data/scifact (first 64 documents)."""
    return model_factory.read_corpus_texts(SHARED_DATA / "scifact", limit=64)


@pytest.fixture(scope="session")
def tiny_colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny original-ColBERT (HF_ColBERT) checkpoint."""
    return model_factory.tiny_colbert(tmp_path_factory.mktemp("tiny-colbert"))


@pytest.fixture(scope="session")
def tiny_pylate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PyLate-layout checkpoint."""
    return model_factory.tiny_pylate(tmp_path_factory.mktemp("tiny-pylate"))
