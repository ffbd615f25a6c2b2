"""Against the real Jina API; runs only where JINA_API_KEY is set and the network is reachable."""

from __future__ import annotations

import os

import pytest

from rerankit import Reranker

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not os.environ.get("JINA_API_KEY"), reason="needs JINA_API_KEY"),
]


def test_real_jina_api_ranks_the_relevant_document_first() -> None:
    docs = ["The cat sat on the mat.", "Paris is the capital of France.", "Bread needs yeast."]
    with Reranker("jina-reranker-v2-base-multilingual") as rr:
        result = rr.rank("What is the capital of France?", docs)
    assert result.indices[0] == 1
    assert sorted(result.indices) == [0, 1, 2]
    assert result.usage["total_tokens"] > 0
