"""``rerankit serve`` with a listwise model: rank-derived relevance scores, top_n as the hint."""

from __future__ import annotations

import httpx

from rerankit import Reranker
from rerankit.serve.app import ServeSettings
from tests.backends.chat_server import running_chat_server
from tests.serve.conftest import serving

DOCS = [f"passage {i} score {(i * 37) % 100}" for i in range(100)]
BEST = sorted(range(100), key=lambda i: -((i * 37) % 100))


def test_serve_answers_with_ranks_and_passes_top_n_on() -> None:
    with running_chat_server() as chat:
        zephyr = Reranker("rank-zephyr", backend="listwise", base_url=chat.url)
        with serving({"zephyr": zephyr}, ServeSettings()) as url:
            assert chat.requests == [], "a server-backed model is not warmed up with a call"
            full = httpx.post(
                f"{url}/v1/rerank", json={"query": "q", "documents": DOCS}, timeout=30
            ).json()
            windows = len(chat.requests)
            cut = httpx.post(
                f"{url}/v2/rerank", json={"query": "q", "documents": DOCS, "top_n": 3}, timeout=30
            ).json()
    assert full["score_scale"] == "rank"
    assert sorted(r["index"] for r in full["results"]) == list(range(100))
    assert [r["relevance_score"] for r in full["results"]] == [float(v) for v in range(100, 0, -1)]
    assert [r["index"] for r in full["results"][:10]] == BEST[:10]
    assert full["usage"]["total_tokens"] > 0
    assert windows == 9
    assert [r["index"] for r in cut["results"]] == BEST[:3]
    assert [r["relevance_score"] for r in cut["results"]] == [100.0, 99.0, 98.0]
    assert len(chat.requests) - windows == 6  # top_n reached the backend: fewer windows
