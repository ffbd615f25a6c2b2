"""The remote backend with httpx.MockTransport: wire format, chunking, retries, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from rerankit import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    InvalidResponseError,
    RateLimitError,
    Reranker,
    RerankerConfig,
    Secret,
    ServerError,
)
from rerankit.backends.jina import JinaBackend

KEY = "jina_test_key_0123456789abcdef"
Handler = Callable[[httpx.Request], httpx.Response]
AsyncHandler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def _scores_response(request: httpx.Request, field: str = "documents") -> httpx.Response:
    body = json.loads(request.content)
    docs = body[field]
    results = [{"index": i, "relevance_score": float(len(d))} for i, d in enumerate(docs)]
    return httpx.Response(
        200, json={"usage": {"total_tokens": 10 * len(docs)}, "results": results[::-1]}
    )


def _reranker(
    handler: Handler | AsyncHandler, calls: list[httpx.Request] | None = None, **options: Any
) -> Reranker:
    seen = calls if calls is not None else []

    def record(request: httpx.Request) -> Any:  # a Response, or a coroutine of one (async)
        seen.append(request)
        return handler(request)

    api_key = options.pop("api_key", Secret.from_token(KEY))
    normalize = options.pop("normalize", False)
    config = RerankerConfig(
        model="jina-reranker-v2-base-multilingual",
        backend="jina",
        api_key=api_key,
        normalize=normalize,
        options=options,
    )
    transport = httpx.MockTransport(record)
    return Reranker.from_backend(
        JinaBackend(config, transport=transport, async_transport=transport)
    )


def test_jina_wire_format() -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(_scores_response, calls)
    result = rr.rank("q", ["a", "ccc", "bb"], top_k=2)
    assert result.indices == [1, 2]
    (request,) = calls
    assert request.url == "https://api.jina.ai/v1/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "jina-reranker-v2-base-multilingual",
        "query": "q",
        "documents": ["a", "ccc", "bb"],
        "top_n": 3,
        "return_documents": False,
    }
    assert result.usage["total_tokens"] == 30


@pytest.mark.parametrize(
    ("dialect", "url", "expected_body"),
    [
        (
            "infinity",
            "http://svc:7997/rerank",
            {"model", "query", "documents", "top_n", "return_documents", "raw_scores"},
        ),
        ("cohere", "http://svc:7997/v2/rerank", {"model", "query", "documents", "top_n"}),
        ("tei", "http://svc:7997/rerank", {"query", "texts", "raw_scores", "return_text"}),
    ],
)
def test_dialects(dialect: str, url: str, expected_body: set[str]) -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(
        _dialect_response(dialect), calls, dialect=dialect, base_url="http://svc:7997", api_key=None
    )
    assert rr.rank("q", ["x", "y", "z"]).indices == [2, 1, 0]
    body = json.loads(calls[0].content)
    assert str(calls[0].url) == url
    assert set(body) == expected_body
    assert "top_k" not in body
    assert "authorization" not in calls[0].headers
    if dialect == "cohere":
        assert rr.usage["search_units"] == 1


def _dialect_response(dialect: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if dialect == "tei":
            return httpx.Response(
                200, json=[{"index": i, "score": 0.1 * i} for i in range(len(body["texts"]))]
            )
        results = [
            {"index": i, "relevance_score": 0.1 * i, "document": d}
            for i, d in enumerate(body["documents"])
        ]
        meta = {"billed_units": {"search_units": 1}}
        return httpx.Response(
            200, json={"results": results, "meta": meta, "usage": {"total_tokens": 7}}
        )

    return handler


@pytest.mark.parametrize(
    ("dialect", "normalize", "raw_scores", "scale"),
    [
        ("tei", False, True, "logit"),  # the model's logit, as every local pair encoder gives
        ("tei", True, False, "probability"),  # TEI's sigmoid of it
        ("infinity", False, True, "logit"),
        ("infinity", True, False, "probability"),
        ("cohere", False, None, "service"),  # no raw form: the service's relevance_score
        ("cohere", True, None, "probability"),  # documented as normalised to [0, 1]
        ("jina", False, None, "service"),
    ],
)
def test_normalize_means_the_same_on_every_dialect(
    dialect: str, normalize: bool, raw_scores: bool | None, scale: str
) -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(
        _dialect_response(dialect),
        calls,
        dialect=dialect,
        base_url="http://svc:7997",
        api_key=Secret.from_token(KEY),
        normalize=normalize,
    )
    result = rr.rank("q", ["x", "y"])
    assert result.scale == scale
    assert rr.backend.scale == scale
    assert json.loads(calls[0].content).get("raw_scores") == raw_scores
    assert asyncio.run(rr.arank("q", ["x", "y"])).scale == scale
    assert json.loads(calls[1].content).get("raw_scores") == raw_scores


def test_normalize_is_refused_where_the_service_has_no_probability() -> None:
    # The Jina API returns each model's own relevance_score: a cosine in [-1, 1] for
    # jina-reranker-v3, a late-interaction sum for jina-colbert-v2; no switch makes it one.
    with pytest.raises(ConfigurationError, match="normalize=True is not available on the 'jina'"):
        _reranker(_scores_response, normalize=True)


def test_chunks_are_merged_in_input_order_and_top_n_applies_after() -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(_scores_response, calls, max_documents_per_request=3, max_concurrency=2)
    docs = [f"doc {'x' * n}" for n in (5, 1, 9, 3, 7, 2, 8, 0, 6, 4)]
    result = rr.rank("q", docs, top_k=4)
    assert len(calls) == 4
    assert sorted(len(json.loads(c.content)["documents"]) for c in calls) == [1, 3, 3, 3]
    full = rr.rank("q", docs)
    assert sorted(full.indices) == list(range(10))
    assert full.scores == sorted((float(len(d)) for d in docs), reverse=True)
    assert result.indices == full.indices[:4]
    assert result.usage["total_tokens"] == 100
    assert result.usage["requests"] == 4


def test_token_budget_splits_requests_and_long_documents_are_truncated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(_scores_response, calls, max_request_tokens=60, max_document_tokens=25)
    docs = ["w" * 80, "short", "é" * 200, "w" * 80]
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = rr.rank("q", docs)
    assert result.truncated == 1
    assert "1 of 4 documents were truncated" in caplog.text
    sent = [d for c in calls for d in json.loads(c.content)["documents"]]
    assert len(sent[2].encode()) <= 100
    assert len(calls) >= 2
    assert sorted(result.indices) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (422, BadRequestError),
    ],
)
def test_client_errors_are_never_retried(status: int, error: type[Exception]) -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(
        lambda r: httpx.Response(status, json={"detail": "bad thing"}), calls, backoff_initial=0
    )
    with pytest.raises(error, match="bad thing") as info:
        rr.rank("q", ["a"])
    assert len(calls) == 1
    assert info.value.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_errors_are_retried(status: int) -> None:
    calls: list[httpx.Request] = []
    answers = iter([httpx.Response(status, json={"detail": "busy"})] * 2)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or _scores_response(request)

    rr = _reranker(handler, calls, backoff_initial=0.001, backoff_max=0.01)
    assert rr.rank("q", ["a", "bb"]).indices == [1, 0]
    assert len(calls) == 3


def test_retries_give_up_with_a_typed_error() -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(
        lambda r: httpx.Response(503, json={"detail": "down"}),
        calls,
        max_retries=2,
        backoff_initial=0.001,
    )
    with pytest.raises(ServerError, match="503: down"):
        rr.rank("q", ["a"])
    assert len(calls) == 3
    too_long = _reranker(
        lambda r: httpx.Response(429, headers={"Retry-After": "120"}, json={"detail": "slow down"}),
        calls := [],
    )
    with pytest.raises(RateLimitError) as info:
        too_long.rank("q", ["a"])
    assert info.value.retry_after == 120
    assert len(calls) == 1, "a Retry-After beyond max_retry_after is not waited for"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"results": [{"index": 0, "relevance_score": 1.0}]}, r"indices \[1\] are missing"),
        (
            {
                "results": [
                    {"index": 0, "relevance_score": 1.0},
                    {"index": 0, "relevance_score": 2.0},
                ]
            },
            r"\[1\] are missing and \[0\] are repeated",
        ),
        ({"results": [{"index": 5, "relevance_score": 1.0}]}, "not in range"),
        ({"results": [{"index": "0", "relevance_score": 1.0}]}, "not in range"),
        (
            {
                "results": [
                    {"index": 0, "relevance_score": None},
                    {"index": 1, "relevance_score": 1},
                ]
            },
            "finite",
        ),
        ({"data": []}, "no list of results"),
    ],
)
def test_malformed_responses_are_errors(payload: dict[str, Any], message: str) -> None:
    rr = _reranker(lambda r: httpx.Response(200, json=payload))
    with pytest.raises(InvalidResponseError, match=message):
        rr.rank("q", ["a", "b"])


def test_nan_scores_and_non_json_are_errors() -> None:
    nan = b'{"results": [{"index": 0, "relevance_score": NaN}]}'
    with pytest.raises(InvalidResponseError, match="finite"):
        _reranker(lambda r: httpx.Response(200, content=nan)).rank("q", ["a"])
    with pytest.raises(InvalidResponseError, match="not JSON"):
        _reranker(lambda r: httpx.Response(200, content=b"<html>")).rank("q", ["a"])


def test_a_body_that_cannot_be_decoded_is_an_invalid_response() -> None:
    def garbled(request: httpx.Request) -> httpx.Response:
        gzip = {"Content-Encoding": "gzip"}
        return httpx.Response(200, headers=gzip, stream=httpx.ByteStream(b"not gzip"))

    with pytest.raises(InvalidResponseError, match="could not be decoded"):
        _reranker(garbled).rank("q", ["a"])


def test_key_never_appears_in_reprs_errors_logs_or_configs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"detail": f"invalid key {request.headers['authorization']}"}
        )

    rr = _reranker(echo)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        rr.rank("q", ["a"])
    for text in (
        str(info.value),
        repr(info.value),
        info.value.detail or "",
        caplog.text,
        repr(rr),
        repr(rr.backend),
        repr(rr.config),
    ):
        assert KEY not in text
    assert "JINA_API_KEY" in str(info.value)
    with pytest.raises(ConfigurationError, match="Refusing to serialise"):
        rr.config.to_dict()
    monkeypatch.setenv("MY_JINA_KEY", KEY)
    by_env = RerankerConfig(
        model="jina-reranker-v3", backend="jina", api_key=Secret.from_env("MY_JINA_KEY")
    )
    assert KEY not in json.dumps(by_env.to_dict())


def test_missing_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="JINA_API_KEY"):
        Reranker("jina-reranker-v2-base-multilingual")
    monkeypatch.setenv("JINA_API_KEY", KEY)
    rr = Reranker("jina-reranker-v2-base-multilingual")
    assert rr.backend_name == "jina"
    assert KEY not in repr(rr)
    rr.close()


async def test_async_path_and_running_usage_totals() -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(
        _scores_response, calls, max_documents_per_request=2, price_per_million_tokens=20.0
    )
    docs = ["a", "bbb", "cc", "dddd", "e"]
    result = await rr.arank("q", docs, top_k=3)
    assert result.indices == [3, 1, 2]
    assert len(calls) == 3
    assert result.usage["total_tokens"] == 50
    assert result.usage["cost"] == pytest.approx(50 * 20 / 1e6)
    await rr.arank("q", docs)
    assert rr.usage["total_tokens"] == 100
    await rr.aclose()


def test_circuit_breaker_opens_and_half_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[httpx.Request] = []
    healthy = False

    def handler(request: httpx.Request) -> httpx.Response:
        return (
            _scores_response(request) if healthy else httpx.Response(503, json={"detail": "down"})
        )

    rr = _reranker(handler, calls, max_retries=0, failure_threshold=2, reset_after=60.0)
    for _ in range(2):
        with pytest.raises(ServerError):
            rr.rank("q", ["a"])
    with pytest.raises(CircuitOpenError, match="circuit open"):
        rr.rank("q", ["a"])
    assert len(calls) == 2, "an open circuit does not call the service"
    circuit = rr.backend.circuit  # type: ignore[attr-defined]
    monkeypatch.setattr(circuit, "_clock", lambda: 1e12)  # the cool-down has passed
    assert circuit.state == "half-open"
    healthy = True
    assert rr.rank("q", ["a"]).indices == [0]
    assert circuit.state == "closed"


def test_fallback_answers_when_the_service_is_unavailable(tiny_bert_dir: object) -> None:
    local = Reranker(str(tiny_bert_dir), device="cpu")
    calls: list[httpx.Request] = []
    remote = _reranker(lambda r: httpx.Response(503, json={"detail": "down"}), calls, max_retries=0)
    rr = Reranker.from_backend(remote.backend, fallback=local)
    docs = ["alpha", "beta gamma", "delta"]
    result = rr.rank("q", docs)
    assert result.backend == "cross-encoder"
    assert result.scores == local.rank("q", docs).scores
    assert sorted(result.indices) == [0, 1, 2]
    auth = _reranker(lambda r: httpx.Response(401, json={"detail": "no"}))
    with pytest.raises(AuthenticationError):  # a wrong key is not hidden behind the fallback
        Reranker.from_backend(auth.backend, fallback=local).rank("q", docs)


def test_unknown_options_and_dialects_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="does not accept the options"):
        _reranker(_scores_response, retries=3)
    with pytest.raises(
        ConfigurationError,
        match=r"option dialect takes one of \[.*'vllm'\], got 'nope'",
    ):
        _reranker(_scores_response, dialect="nope")
    with pytest.raises(ConfigurationError, match="base_url"):
        _reranker(_scores_response, dialect="tei", api_key=None)
    with pytest.raises(ConfigurationError, match="option timeout takes a finite number, got '30s'"):
        _reranker(_scores_response, timeout="30s")
    with pytest.raises(ConfigurationError, match=r"option timeout must be >= 0\.001, got 0\.0"):
        _reranker(_scores_response, timeout=0)
    with pytest.raises(ConfigurationError, match="option max_retries must be >= 0, got -1"):
        _reranker(_scores_response, max_retries=-1)
    with pytest.raises(ConfigurationError, match="option max_concurrency takes an int, got True"):
        _reranker(_scores_response, max_concurrency=True)
    with pytest.raises(ConfigurationError, match="option price_per_million_tokens must be >= 0"):
        _reranker(_scores_response, price_per_million_tokens=-1)


def test_options_given_as_text_are_parsed_by_type() -> None:
    """A command line (``rerankit serve --option max_retries=2``) gives every value as text."""
    calls: list[httpx.Request] = []
    rr = Reranker(
        "jina-reranker-v2-base-multilingual",
        backend="jina",
        api_key=Secret.from_token(KEY),
        max_retries="2",
        backoff_initial="0.001",
        dialect="Cohere",
        base_url="http://svc:7997",
    )
    backend = rr.backend
    assert backend.options["max_retries"] == 2
    assert backend.dialect.name == "cohere"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="option max_retries takes an int, got 'two'"):
        Reranker("m", backend="jina", api_key=Secret.from_token(KEY), max_retries="two")
    # The parsed number is the one used: 2 retries, 3 calls.
    down = _reranker(
        lambda r: httpx.Response(503, json={"detail": "down"}),
        calls,
        max_retries="2",
        backoff_initial="0",
    )
    with pytest.raises(ServerError):
        down.rank("q", ["a"])
    assert len(calls) == 3


def test_rank_many_sends_the_requests_concurrently() -> None:
    together = threading.Barrier(3, timeout=10)  # fails unless 3 calls are in flight at once

    def handler(request: httpx.Request) -> httpx.Response:
        together.wait()
        return _scores_response(request)

    calls: list[httpx.Request] = []
    reranker = _reranker(handler, calls, max_concurrency=3)
    requests = [("q1", ["a", "bb"]), ("q2", ["ccc"]), ("q3", ["dddd", "e", "ff"])]
    results = reranker.rank_many(requests)
    assert len(calls) == 3
    assert sorted(json.loads(c.content)["query"] for c in calls) == ["q1", "q2", "q3"]
    for (_, docs), result in zip(requests, results, strict=True):
        want = sorted(range(len(docs)), key=lambda i: (-len(docs[i]), i))
        assert result.indices == want
        assert result.scores == [float(len(docs[i])) for i in want]


def test_score_many_takes_the_top_k_hint() -> None:
    calls: list[httpx.Request] = []
    backend = _reranker(_scores_response, calls).backend
    scores = backend.score_many([("q", ["a", "bbb"]), ("q2", ["cc"])], top_k=1)
    assert [s.values for s in scores] == [[1.0, 3.0], [2.0]]  # every document is still scored
    assert len(calls) == 2


async def test_arank_many_sends_every_chunk_concurrently_within_max_concurrency() -> None:
    in_flight, peak = 0, 0
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak == 3:
            release.set()  # only reached if three calls are in flight together
        await asyncio.wait_for(release.wait(), timeout=5)
        in_flight -= 1
        return _scores_response(request)

    calls: list[httpx.Request] = []
    rr = _reranker(handler, calls, max_concurrency=3, max_documents_per_request=2)
    requests = [("q1", ["a", "bb", "ccc"]), ("q2", ["dddd"]), ("q3", ["e", "ff", "ggg", "h"])]
    results = await rr.arank_many(requests)
    assert len(calls) == 5  # 2 + 1 + 2 chunks
    assert peak == 3, "the chunks were not sent concurrently, or beyond max_concurrency"
    for (_, docs), result in zip(requests, results, strict=True):
        assert result.indices == sorted(range(len(docs)), key=lambda i: (-len(docs[i]), i))
        assert result.usage["requests"] == (len(docs) + 1) // 2
    await rr.aclose()


class _ClosingTransport(httpx.MockTransport):
    """A MockTransport that counts how often an AsyncClient using it was closed."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.async_closes = 0

    async def aclose(self) -> None:
        self.async_closes += 1


def _with_transport(transport: httpx.MockTransport) -> Reranker:
    config = RerankerConfig(
        model="jina-reranker-v2-base-multilingual", backend="jina", api_key=Secret.from_token(KEY)
    )
    return Reranker.from_backend(
        JinaBackend(config, transport=transport, async_transport=transport)
    )


def test_each_event_loops_client_is_closed_with_its_loop() -> None:
    transport = _ClosingTransport(_scores_response)
    rr = _with_transport(transport)
    for run in (1, 2):  # a script or a notebook cell: asyncio.run after asyncio.run
        assert asyncio.run(rr.arank("q", ["a", "bb"])).indices == [1, 0]
        assert transport.async_closes == run, "the loop's AsyncClient was left open"

    async def twice_then_close() -> None:
        await rr.arank("q", ["a"])
        await rr.arank("q", ["b"])  # the same loop keeps its client
        await rr.aclose()

    asyncio.run(twice_then_close())
    assert transport.async_closes == 3


def test_close_closes_a_client_on_a_loop_running_in_another_thread() -> None:
    transport = _ClosingTransport(_scores_response)
    rr = _with_transport(transport)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ranked = asyncio.run_coroutine_threadsafe(rr.arank("q", ["a", "bb"]), loop).result(5)
        assert ranked.indices == [1, 0]
        rr.close()  # from this thread: the client's close is scheduled on its own loop
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)
        assert transport.async_closes == 1
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _down_then(after: Handler, calls: list[httpx.Request], failures: int = 2) -> Handler:
    """503 for the first ``failures`` calls (opening the circuit), then ``after``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if len(calls) <= failures:
            return httpx.Response(503, json={"detail": "down"})
        return after(request)

    return handler


def _open_circuit(rr: Reranker) -> None:
    for _ in range(2):
        with pytest.raises(ServerError):
            rr.rank("q", ["a"])
    with pytest.raises(CircuitOpenError, match=r"circuit open after 2 consecutive failures"):
        rr.rank("q", ["a"])
    time.sleep(0.35)  # reset_after: the next call is the half-open trial


BREAKER: dict[str, Any] = {"max_retries": 0, "failure_threshold": 2, "reset_after": 0.3}


def _raises_once(exc: Exception) -> Handler:
    raised: list[Exception] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if not raised:
            raised.append(exc)
            raise exc
        return _scores_response(request)

    return handler


TRIAL_ENDINGS = [
    pytest.param(lambda r: httpx.Response(401, json={"detail": "bad key"}), id="401"),
    pytest.param(lambda r: httpx.Response(403, json={"detail": "forbidden"}), id="403"),
    pytest.param(lambda r: httpx.Response(422, json={"detail": "bad body"}), id="422"),
    pytest.param(lambda r: httpx.Response(400, json={"detail": "bad"}), id="400"),
]


@pytest.mark.parametrize("refusal", TRIAL_ENDINGS)
def test_a_trial_the_service_refuses_closes_the_circuit(refusal: Handler) -> None:
    """A 4xx means the service is up: the circuit closes, the next call goes out."""
    calls: list[httpx.Request] = []
    answers = iter([refusal])
    rr = _reranker(
        _down_then(lambda r: next(answers, _scores_response)(r), calls), calls, **BREAKER
    )
    _open_circuit(rr)
    with pytest.raises((AuthenticationError, BadRequestError)):
        rr.rank("q", ["a"])
    assert rr.backend.circuit.state == "closed"  # type: ignore[attr-defined]
    assert rr.rank("q", ["a", "bb"]).indices == [1, 0]
    assert len(calls) == 4


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RuntimeError("a bug in a transport"), id="unmapped-exception"),
        pytest.param(
            httpx.TooManyRedirects("redirected", request=httpx.Request("POST", "http://x")),
            id="unmapped-httpx-error",
        ),
    ],
)
def test_a_trial_that_raises_something_unmapped_releases_the_trial(error: Exception) -> None:
    calls: list[httpx.Request] = []
    rr = _reranker(_down_then(_raises_once(error), calls), calls, **BREAKER)
    _open_circuit(rr)
    with pytest.raises(type(error)):
        rr.rank("q", ["a"])
    # No verdict on the service: still half-open, but the next call may be the trial.
    assert rr.backend.circuit.state == "half-open"  # type: ignore[attr-defined]
    assert rr.rank("q", ["a", "bb"]).indices == [1, 0]
    assert rr.backend.circuit.state == "closed"  # type: ignore[attr-defined]


async def test_async_trials_release_the_circuit_too() -> None:
    calls: list[httpx.Request] = []
    answers = iter([lambda r: httpx.Response(401, json={"detail": "bad key"})])
    rr = _reranker(
        _down_then(lambda r: next(answers, _scores_response)(r), calls), calls, **BREAKER
    )
    for _ in range(2):
        with pytest.raises(ServerError):
            await rr.arank("q", ["a"])
    with pytest.raises(CircuitOpenError):
        await rr.arank("q", ["a"])
    await asyncio.sleep(0.35)
    with pytest.raises(AuthenticationError):
        await rr.arank("q", ["a"])
    assert (await rr.arank("q", ["a", "bb"])).indices == [1, 0]
    await rr.aclose()


async def test_a_cancelled_async_trial_releases_the_circuit() -> None:
    calls: list[httpx.Request] = []
    hanging = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= 2:
            return httpx.Response(503, json={"detail": "down"})
        if len(calls) == 3:  # the trial: the service hangs, and the caller gives up
            hanging.set()
            await asyncio.sleep(30)
        return _scores_response(request)

    rr = _reranker(handler, **BREAKER)
    for _ in range(2):
        with pytest.raises(ServerError):
            await rr.arank("q", ["a"])
    await asyncio.sleep(0.35)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(rr.arank("q", ["a"]), timeout=0.2)
    assert hanging.is_set()
    assert (await rr.arank("q", ["a", "bb"])).indices == [1, 0]
    assert rr.backend.circuit.state == "closed"  # type: ignore[attr-defined]
    await rr.aclose()


def test_only_the_trial_itself_ends_the_trial() -> None:
    """A call admitted before the circuit opened, failing during the trial, leaves it running."""
    slow_started, trial_started = threading.Event(), threading.Event()
    slow_may_end, trial_may_end = threading.Event(), threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)["query"]
        if query == "slow":  # in flight while the circuit opens and the trial starts
            slow_started.set()
            slow_may_end.wait(5)
            return httpx.Response(503, json={"detail": "down"})
        if query == "trial":
            trial_started.set()
            trial_may_end.wait(5)
            return _scores_response(request)
        return httpx.Response(503, json={"detail": "down"})

    rr = _reranker(handler, **BREAKER)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(rr.rank, "slow", ["a"])
        assert slow_started.wait(5)
        for _ in range(2):
            with pytest.raises(ServerError):
                rr.rank("q", ["a"])
        time.sleep(0.35)
        trial = pool.submit(rr.rank, "trial", ["a"])
        assert trial_started.wait(5)
        slow_may_end.set()
        with pytest.raises(ServerError):
            slow.result(5)
        time.sleep(0.35)  # the late failure restarted the cool-down; it is over again
        with pytest.raises(CircuitOpenError, match="a trial call is in flight"):
            rr.rank("q", ["a"])
        trial_may_end.set()
        assert trial.result(5).indices == [0]
    assert rr.backend.circuit.state == "closed"  # type: ignore[attr-defined]


@pytest.mark.parametrize("use_async", [False, True])
def test_a_half_open_trial_of_a_chunked_request_lets_the_rest_follow(
    monkeypatch: pytest.MonkeyPatch, use_async: bool
) -> None:
    calls: list[httpx.Request] = []
    healthy = False

    def handler(request: httpx.Request) -> httpx.Response:
        return (
            _scores_response(request) if healthy else httpx.Response(503, json={"detail": "down"})
        )

    rr = _reranker(
        handler,
        calls,
        max_retries=0,
        failure_threshold=1,
        reset_after=60.0,
        max_documents_per_request=10,
    )
    with pytest.raises(ServerError):
        rr.rank("q", ["a"])
    circuit = rr.backend.circuit  # type: ignore[attr-defined]
    monkeypatch.setattr(circuit, "_clock", lambda: 1e12)  # the cool-down has passed
    healthy = True
    docs = [f"doc {i}" * (i + 1) for i in range(25)]  # three chunks
    result = asyncio.run(rr.arank("q", docs)) if use_async else rr.rank("q", docs)
    assert sorted(result.indices) == list(range(25))
    assert len(calls) == 1 + 3
    assert circuit.state == "closed"


async def test_a_closed_backend_says_so_on_both_paths() -> None:
    rr = _reranker(_scores_response)
    rr.close()
    with pytest.raises(BackendError, match="was closed"):
        rr.rank("q", ["a"])
    with pytest.raises(BackendError, match="was closed"):
        await rr.arank("q", ["a"])


def test_credentials_in_the_url_never_reach_messages_or_reprs() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "down"})

    rr = _reranker(down, base_url="https://alice:S3CRETPW@tei.internal:8080", max_retries=0)
    with pytest.raises(ServerError) as caught:
        rr.rank("q", ["a"])
    assert "S3CRETPW" not in str(caught.value)
    assert "S3CRETPW" not in repr(rr.backend)
    assert "tei.internal:8080" in str(caught.value)


def test_a_key_echoed_across_the_detail_cut_never_shows_a_prefix() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"detail": "x" * 480 + f" bad key {KEY}"})

    with pytest.raises(BadRequestError) as caught:
        _reranker(echo).rank("q", ["a"])
    assert KEY[:8] not in str(caught.value)
    assert len(caught.value.detail or "") <= 500
