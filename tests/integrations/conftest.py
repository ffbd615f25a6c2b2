from __future__ import annotations

from pathlib import Path

import pytest

from rerankit import Reranker

QUERY = "Which proteins are involved in DNA repair?"


@pytest.fixture(scope="session")
def reranker(tiny_bert_dir: Path) -> Reranker:
    """One real reranker shared by the adapter tests (tiny BERT, CPU)."""
    return Reranker(str(tiny_bert_dir), backend="cross-encoder", device="cpu")


@pytest.fixture(scope="session")
def passages(scifact_texts: list[str]) -> list[str]:
    """Twelve real passages, shortened, plus a duplicate and an empty text."""
    texts = [t[:300] for t in scifact_texts[:10]]
    return [*texts, texts[3], ""]
