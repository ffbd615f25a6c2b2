"""``rerankit serve`` end to end over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from rerankit import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    Reranker,
    RerankerConfig,
    Secret,
    ServiceUnavailableError,
)
from rerankit.backends.base import Backend
from rerankit.backends.jina import JinaBackend
from rerankit.serve.app import ServeSettings
from rerankit.serve.batcher import MicroBatcher
from rerankit.types import Scores
from tests.backends.rerank_server import running_server
from tests.serve.conftest import serving

DOCS = [
    "DNA repair proteins fix broken strands",
    "a recipe for bread",
    "",
    "repair of DNA by BRCA1",
    "a recipe for bread",
]


def _client(url: str, **options: Any) -> Reranker:
    return Reranker(
        "tiny", backend="jina", base_url=url, api_key=Secret.from_token("unused"), **options
    )


def test_the_jina_backend_talks_to_rerankit_serve(local: Reranker) -> None:
    with serving({"tiny": local}, ServeSettings()) as url:
        remote = _client(url)
        got = remote.rank("which proteins repair DNA?", DOCS, top_k=4)
        want = local.rank("which proteins repair DNA?", DOCS, top_k=4)
        assert got.indices == want.indices
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
        assert got.usage["total_tokens"] > 0
        health = httpx.get(f"{url}/health").json()
        assert health == {"status": "ok", "models": ["tiny"]}
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["backend"] == "cross-encoder"


def test_concurrent_requests_are_batched_and_exact(local: Reranker) -> None:
    queries = [f"query {i} about DNA repair" for i in range(16)]
    settings = ServeSettings(max_wait_ms=50)
    with serving({"tiny": local}, settings) as url:
        remote = _client(url)
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda q: remote.rank(q, DOCS), queries))
        for query, result in zip(queries, results, strict=True):
            want = local.rank(query, DOCS)
            assert result.indices == want.indices
            assert result.scores == pytest.approx(want.scores, abs=1e-4)
        metrics = httpx.get(f"{url}/metrics").text
    batches = _metric(metrics, 'rerankit_batch_requests_count{model="tiny"}')
    assert batches < 16, "concurrent requests were not merged into shared batches"
    assert _metric(metrics, 'rerankit_requests_total{model="tiny",status="200"}') == 16
    assert _metric(metrics, 'rerankit_pairs_total{model="tiny"}') == 16 * len(DOCS)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


async def test_overload_gets_429_then_recovers(local: Reranker) -> None:
    settings = ServeSettings(max_queue_pairs=10, max_wait_ms=300)
    with serving({"tiny": local}, settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {"model": "tiny", "query": "q", "documents": DOCS}
            responses = await asyncio.gather(
                *(client.post("/v1/rerank", json=body) for _ in range(8))
            )
            codes = sorted(r.status_code for r in responses)
            assert codes.count(200) == 2, codes
            assert set(codes) == {200, 429}
            refused = next(r for r in responses if r.status_code == 429)
            assert refused.headers["Retry-After"] == "1"
            assert "queue holds" in refused.json()["detail"]
            again = await client.post("/v1/rerank", json=body)
            assert again.status_code == 200
            assert sorted(r["index"] for r in again.json()["results"]) == list(range(len(DOCS)))


@pytest.mark.parametrize(
    ("request_kwargs", "status", "detail"),
    [
        ({"content": b"{not json"}, 422, "JSON"),
        ({"json": {"documents": ["a"]}}, 422, "query"),
        ({"json": {"query": "q", "documents": ["a"], "top_n": 0}}, 422, "top_n"),
        ({"json": {"query": "q", "documents": [3]}}, 422, "documents"),
        (
            {"json": {"model": "nope", "query": "q", "documents": ["a"]}},
            404,
            "unknown model 'nope'",
        ),
        ({"json": {"query": "q", "documents": ["a"] * 6}}, 413, "at most 5"),
        ({"json": {"query": "q", "documents": ["x" * 3000]}}, 413, "over 2000 bytes"),
        ({"content": iter([b'{"query": "q", "documents": ["', b"x" * 3000])}, 413, "over 2000"),
    ],
    ids=["bad-json", "no-query", "top-n-0", "not-text", "model", "documents", "body", "chunked"],
)
def test_bad_requests(
    local: Reranker, request_kwargs: dict[str, Any], status: int, detail: str
) -> None:
    settings = ServeSettings(max_documents=5, max_body_bytes=2000)
    with serving({"tiny": local}, settings) as url:
        response = httpx.post(
            f"{url}/v1/rerank", headers={"Content-Type": "application/json"}, **request_kwargs
        )
    assert response.status_code == status
    assert detail in response.json()["detail"]


def test_cohere_v2_shape_and_documents(local: Reranker) -> None:
    with serving({"tiny": local}, ServeSettings()) as url:
        body = {
            "model": "tiny",
            "query": "DNA repair",
            "documents": [{"text": d} for d in DOCS],
            "top_n": 2,
            "return_documents": True,
            "max_tokens_per_doc": 512,
        }
        results = httpx.post(f"{url}/v2/rerank", json=body).json()["results"]
    assert len(results) == 2
    assert results[0]["document"]["text"] == DOCS[results[0]["index"]]
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]


@pytest.mark.parametrize(
    ("path", "return_documents", "returned"),
    [
        ("/v1/rerank", None, True),  # Jina's default
        ("/v1/rerank", False, False),
        ("/v2/rerank", None, False),  # Cohere v2 returns no documents
        ("/v2/rerank", True, True),
    ],
)
def test_return_documents_defaults_follow_each_api(
    local: Reranker, path: str, return_documents: bool | None, returned: bool
) -> None:
    body: dict[str, object] = {"query": "DNA repair", "documents": DOCS}
    if return_documents is not None:
        body["return_documents"] = return_documents
    with serving({"tiny": local}, ServeSettings()) as url:
        results = httpx.post(f"{url}{path}", json=body).json()["results"]
    assert len(results) == len(DOCS)
    if returned:
        assert all(r["document"]["text"] == DOCS[r["index"]] for r in results)
    else:
        assert all("document" not in r for r in results)


def test_the_cohere_sdk_talks_to_rerankit_serve(
    local: Reranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohere = pytest.importorskip("cohere")
    monkeypatch.setenv("RERANKIT_SERVE_TOKEN", "s3cret-token")
    query = "which proteins repair DNA?"
    want = local.rank(query, DOCS, top_k=3)
    with serving({"tiny": local}, ServeSettings(api_key_env="RERANKIT_SERVE_TOKEN")) as url:
        for client_class in (cohere.ClientV2, cohere.Client):  # /v2/rerank, then /v1/rerank
            client = client_class(api_key="s3cret-token", base_url=url)
            response = client.rerank(model="tiny", query=query, documents=DOCS, top_n=3)
            assert [r.index for r in response.results] == want.indices
            scores = [r.relevance_score for r in response.results]
            assert scores == pytest.approx(want.scores, abs=1e-4)
        refused = cohere.ClientV2(api_key="wrong", base_url=url)
        with pytest.raises(cohere.core.ApiError) as info:
            refused.rerank(model="tiny", query=query, documents=DOCS)
        assert info.value.status_code == 401


def test_bearer_token(local: Reranker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANKIT_SERVE_TOKEN", "s3cret-token")
    with serving({"tiny": local}, ServeSettings(api_key_env="RERANKIT_SERVE_TOKEN")) as url:
        body = {"query": "q", "documents": ["a", "b"]}
        assert httpx.post(f"{url}/v1/rerank", json=body).status_code == 401
        wrong = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["WWW-Authenticate"] == "Bearer"
        assert httpx.get(f"{url}/health").status_code == 200
        with pytest.raises(AuthenticationError):
            _client(url).rank("q", ["a"])
        ok = Reranker(
            "tiny", backend="jina", base_url=url, api_key=Secret.from_env("RERANKIT_SERVE_TOKEN")
        )
        assert sorted(ok.rank("q", ["a", "b"]).indices) == [0, 1]


class _Overlap(Backend):
    """A model-free backend for the server's own logic: shared words, shorter texts first."""

    name = "overlap"
    scale = "probability"

    def __init__(self) -> None:
        super().__init__(RerankerConfig(model="overlap"))

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        words = set(query.lower().split())
        return Scores(
            values=[
                sum(w in words for w in t.lower().split()) / 10 + 0.01 / (1 + len(t)) for t in texts
            ]
        )


class _Picky(Backend):
    """Scores like ``inner``, but fails on chosen queries (to poison a merged batch)."""

    name = "picky"

    def __init__(self, inner: Backend, failures: dict[str, Exception]) -> None:
        super().__init__(inner.config)
        self.scale = inner.scale
        self.inner = inner
        self.failures = failures
        self.queries: list[str] = []
        self.threads: set[str] = set()

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        self.queries.append(query)
        self.threads.add(threading.current_thread().name)
        if query in self.failures:
            raise self.failures[query]
        return self.inner.score(query, texts)


def test_local_models_are_warmed_up_before_serving() -> None:
    picky = _Picky(_Overlap(), {})
    remote = _client("http://127.0.0.1:9")  # a closed port: warming it up would fail
    with serving({"tiny": Reranker.from_backend(picky), "remote": remote}, ServeSettings()) as url:
        assert picky.queries == ["warm-up"]
        assert httpx.get(f"{url}/health").json()["models"] == ["tiny", "remote"]
    assert all(name.startswith("rerankit-") for name in picky.threads), picky.threads


async def test_batcher_drains_on_stop() -> None:
    picky = _Picky(_Overlap(), {})
    batcher = MicroBatcher(Reranker.from_backend(picky), max_wait_ms=20)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.submit(f"q{i}", DOCS)) for i in range(5)]
    await asyncio.sleep(0)
    await batcher.stop()
    results = await asyncio.gather(*tasks)
    assert [sorted(r.indices) for r in results] == [list(range(len(DOCS)))] * 5
    assert json.dumps(results[0].scores)
    # Scored on the backend's own worker thread, not on the event loop's default executor.
    assert picky.threads == {"rerankit-picky_0"}


async def test_an_unavailable_service_fails_the_whole_batch_without_retries() -> None:
    down = ServiceUnavailableError("upstream rerank service unreachable")
    picky = _Picky(_Overlap(), {"q0": down})
    batcher = MicroBatcher(Reranker.from_backend(picky), max_wait_ms=50)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.submit(f"q{i}", DOCS)) for i in range(4)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await batcher.stop()
    assert all(outcome is down for outcome in outcomes), outcomes
    assert picky.queries == ["q0"], "the batch was retried request by request"


async def test_a_failing_request_fails_alone_with_a_clear_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # (A ServiceUnavailableError is not a poisoned request but a dead upstream: it fails the
    # whole batch at once, see test_a_dead_upstream_fails_a_merged_batch_at_once.)
    failures: dict[str, Exception] = {
        "poison": BackendError("the model produced NaN"),
        "upstream refused": BadRequestError("upstream said 400"),
        "bug": RuntimeError("CUDA out of memory in /home/alice/secret-project"),
    }
    fake = _Overlap()
    served = Reranker.from_backend(_Picky(fake, failures))
    with (
        caplog.at_level(logging.WARNING, logger="rerankit.serve"),
        serving({"tiny": served}, ServeSettings(max_wait_ms=100)) as url,
    ):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            queries = [*failures, "good one", "good two", "good three"]
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/rerank",
                        json={"query": q, "documents": DOCS},
                        headers={"X-Request-ID": f"client-{n}"},
                    )
                    for n, q in enumerate(queries)
                )
            )
            metrics = (await client.get("/metrics")).text
    assert _metric(metrics, 'rerankit_batch_requests_count{model="tiny"}') < 6, "never merged"
    by_query = dict(zip(queries, responses, strict=True))
    for n, query in enumerate(queries):
        assert by_query[query].headers["X-Request-ID"] == f"client-{n}"
    # A 500 names only the request id; its detail is in the log, under the same id.
    for query, n, detail in (("poison", 0, "model produced NaN"), ("bug", 2, "CUDA out of")):
        assert by_query[query].status_code == 500
        assert by_query[query].json() == {"detail": f"internal error; request id client-{n}"}
        assert detail not in by_query[query].text
        logged = [m for m in caplog.messages if f"request client-{n}:" in m]
        assert len(logged) == 1, logged
        assert detail in logged[0]
    assert by_query["upstream refused"].status_code == 502
    assert by_query["upstream refused"].json()["detail"] == "BadRequestError: upstream said 400"
    want = Reranker.from_backend(fake)
    for query in ("good one", "good two", "good three"):
        body = by_query[query].json()
        assert [r["index"] for r in body["results"]] == want.rank(query, DOCS).indices
        assert body["score_scale"] == "probability"
    assert _metric(metrics, 'rerankit_requests_total{model="tiny",status="200"}') == 3
    assert _metric(metrics, 'rerankit_requests_total{model="tiny",status="500"}') == 2


def test_every_response_carries_a_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANKIT_SERVE_TOKEN", "s3cret-token")
    settings = ServeSettings(api_key_env="RERANKIT_SERVE_TOKEN", max_body_bytes=2000)
    auth = {"Authorization": "Bearer s3cret-token"}
    one = {"query": "q", "documents": ["a"]}
    with serving({"tiny": Reranker.from_backend(_Overlap())}, settings) as url:
        answers = {
            "ok": httpx.post(f"{url}/v1/rerank", json=one, headers=auth),
            "401": httpx.post(f"{url}/v1/rerank", json=one),
            "404": httpx.post(
                f"{url}/v1/rerank", json={"model": "x", "query": "q", "documents": []}, headers=auth
            ),
            "413": httpx.post(
                f"{url}/v1/rerank", json={"query": "q", "documents": ["x" * 3000]}, headers=auth
            ),
            "422": httpx.post(f"{url}/v1/rerank", json={"documents": ["a"]}, headers=auth),
            "health": httpx.get(f"{url}/health"),
        }
        kept = httpx.get(f"{url}/health", headers={"X-Request-ID": "trace-7f3a.b:c/d+e=f-g_h"})
        refused = [
            httpx.get(f"{url}/health", headers={"X-Request-ID": given})
            for given in ("two words", "x" * 129, "<script>", "")
        ]
    assert [r.status_code for r in answers.values()] == [200, 401, 404, 413, 422, 200]
    ids = [r.headers["X-Request-ID"] for r in answers.values()]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)  # uuid4().hex
    assert len(set(ids)) == len(ids)
    assert kept.headers["X-Request-ID"] == "trace-7f3a.b:c/d+e=f-g_h"
    for response in refused:
        assert len(response.headers["X-Request-ID"]) == 32


class _BrokenName(Reranker):
    """A reranker whose backend name cannot be read: a bug outside the rerank handler."""

    @property
    def backend_name(self) -> str:
        raise RuntimeError("config at /home/alice/secret-project is broken")


def test_a_500_outside_the_rerank_handler_also_hides_its_detail() -> None:
    served = _BrokenName.from_backend(_Overlap())
    with serving({"tiny": served}, ServeSettings()) as url:
        response = httpx.get(f"{url}/v1/models", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; request id abc-123"}
    assert response.headers["X-Request-ID"] == "abc-123"


def test_the_api_key_of_an_upstream_never_reaches_the_client() -> None:
    """A served remote backend whose upstream echoes the key back in its error messages."""
    key = "upstream-secret-key-0123456789"

    def echo(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        status = {"refused": 401, "down": 503, "bad": 422}[query]
        return httpx.Response(status, json={"detail": f"got {request.headers['authorization']}"})

    transport = httpx.MockTransport(echo)
    config = RerankerConfig(
        model="up",
        backend="jina",
        api_key=Secret.from_token(key),
        options={"base_url": "http://upstream", "max_retries": 0},
    )
    served = Reranker.from_backend(
        JinaBackend(config, transport=transport, async_transport=transport)
    )
    with serving({"up": served}, ServeSettings()) as url:
        answers = {
            q: httpx.post(f"{url}/v1/rerank", json={"query": q, "documents": ["a"]})
            for q in ("refused", "down", "bad")
        }
    assert {q: r.status_code for q, r in answers.items()} == {
        "refused": 502,
        "down": 503,
        "bad": 502,
    }
    assert answers["refused"].json()["detail"].startswith("AuthenticationError: ")
    assert answers["down"].json()["detail"].startswith("ServerError: ")
    for response in answers.values():
        assert key not in response.text
        assert "got Bearer ***" in response.json()["detail"]


def test_a_dead_upstream_fails_a_merged_batch_at_once() -> None:
    """Every request of a batch gets the upstream's 503, without one-by-one retries behind it."""
    with running_server() as upstream:
        upstream.default_step = ("status", 503, None)
        served = Reranker(
            "up",
            backend="jina",
            base_url=upstream.url,
            api_key=Secret.from_token("k"),
            max_retries=0,
            failure_threshold=1000,  # this test is about the batcher, not the circuit
            max_concurrency=16,
        )
        queries = [f"query {i}" for i in range(6)]
        with serving({"up": served}, ServeSettings(max_wait_ms=200)) as url:
            with ThreadPoolExecutor(len(queries)) as pool:
                responses = list(
                    pool.map(
                        lambda q: httpx.post(
                            f"{url}/v1/rerank", json={"query": q, "documents": DOCS}, timeout=30
                        ),
                        queries,
                    )
                )
            metrics = httpx.get(f"{url}/metrics").text
    assert [r.status_code for r in responses] == [503] * len(queries)
    assert all(r.json()["detail"].startswith("ServerError: ") for r in responses)
    assert all(r.headers["Retry-After"] == "1" for r in responses)
    assert _metric(metrics, 'rerankit_requests_total{model="up",status="503"}') == len(queries)
    assert _metric(metrics, 'rerankit_batch_requests_count{model="up"}') < len(queries), "no merge"
    # Each request reached the dead upstream at most once: no second pass one by one.
    assert 1 <= len(upstream.requests) <= len(queries), len(upstream.requests)


def test_responses_say_what_their_scores_are() -> None:
    with serving({"tiny": Reranker.from_backend(_Overlap())}, ServeSettings()) as url:
        body = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a", "q"]}).json()
        remote = _client(url).rank("q", ["a", "q"])
    assert body["score_scale"] == "probability"
    assert [r["index"] for r in body["results"]] == [1, 0]
    assert remote.indices == [1, 0]  # the Jina backend reads the response as before
