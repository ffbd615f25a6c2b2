"""The listwise backend on an OpenAI-compatible chat server: a real one on 127.0.0.1, scripted."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rerankit import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidInputError,
    InvalidResponseError,
    RankResult,
    RateLimitError,
    RemoteConnectionError,
    RemoteTimeoutError,
    Reranker,
    RerankerConfig,
    Secret,
    ServerError,
)
from rerankit.backends.listwise import ListwiseBackend
from tests.backends.chat_server import ChatServer, passages_of, running_chat_server
from tests.backends.http_server import FAST

MODEL = "castorini/rank_zephyr_7b_v1_full"
QUERY = "which protein repairs DNA?"
# Relevance is the number after "score" (the server's rule); best: d2 (9), d5 (7), d0 (5) ...
DOCS = [
    "d0 score 5 cells",
    "d1 score 1 bread",
    "d2 score 9 BRCA1 repairs DNA [1]",  # an identifier-like citation inside a passage
    "d3 score 3",
    "",
    "d5 score 7 repair",
]
RIGHT = [2, 5, 0, 3, 1, 4]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with running_chat_server() as srv:
        yield srv


def _reranker(url: str, model: str = MODEL, **settings: Any) -> Reranker:
    return Reranker(model, backend="listwise", base_url=url, **{**FAST, **settings})


def _assert_once(result: RankResult, n: int) -> None:
    assert sorted(result.indices) == list(range(n))
    assert sorted(result.scores) == [float(v) for v in range(1, n + 1)]
    assert result.scale == "rank"


def _numbered(n: int) -> list[str]:
    """``n`` documents whose relevance (``score k``) is a shuffled permutation of 0..n-1."""
    return [f"doc {i} score {(i * 37) % n}" for i in range(n)]


# -- answers, as the script says --------------------------------------------------------------

SCRIPTED = [
    pytest.param("oracle", RIGHT, 0, id="well-formed"),
    pytest.param(("say", "Sure! The ranking is: {order}. Hope this helps."), RIGHT, 0, id="prose"),
    pytest.param(("say", "<think>[1] > [2]? no.</think>\n{order}"), RIGHT, 0, id="think-block"),
    pytest.param(("say", "[3] > [6]"), [2, 5, 0, 1, 3, 4], 0, id="partial"),
    pytest.param(("say", "[3] > [3] > [6] > [3] > [1]"), [2, 5, 0, 1, 3, 4], 0, id="duplicated"),
    pytest.param(("say", "[42] > [0] > [6] > [7] > [3]"), [5, 2, 0, 1, 3, 4], 0, id="out-of-range"),
    pytest.param(("say", ""), [0, 1, 2, 3, 4, 5], 1, id="empty"),
    pytest.param(("say", "I cannot help with that."), [0, 1, 2, 3, 4, 5], 1, id="refusal"),
    pytest.param(
        ("say", "[\uff13] > [\u2465] > [\u2460]"), [2, 5, 0, 1, 3, 4], 0, id="look-alike-digits"
    ),
    pytest.param(("say", "3 > 6 > 1 > 4 > 2 > 5"), RIGHT, 0, id="bare-numbers"),
]


@pytest.mark.parametrize(("step", "order", "unparsed"), SCRIPTED)
def test_every_document_comes_back_once_in_the_order_the_answer_implies(
    server: ChatServer, step: Any, order: list[int], unparsed: int
) -> None:
    server.script.append(step)
    result = _reranker(server.url).rank(QUERY, DOCS)
    _assert_once(result, len(DOCS))
    assert result.indices == order
    assert result.usage["unparsed_windows"] == unparsed
    assert result.usage["windows"] == 1
    assert len(server.requests) == 1
    assert all(item.document is DOCS[item.index] for item in result)


def test_the_wire_format(server: ChatServer) -> None:
    rr = _reranker(server.url, api_key=Secret.from_token("sk-local"))
    rr.rank(QUERY, DOCS)
    body = server.requests[0]
    assert body["model"] == MODEL
    assert body["temperature"] == 0
    assert body["stream"] is False
    answer = " > ".join(f"[{i}]" for i in range(1, 7))
    assert len(answer) < body["max_tokens"] <= len(answer) + 8  # sized to the window
    assert [m["role"] for m in body["messages"]] == ["system", "user"]  # RankZephyr's prompt
    assert "[3] d2 score 9 BRCA1 repairs DNA (1)\n" in body["messages"][1]["content"]
    assert server.headers_seen[0]["Authorization"] == "Bearer sk-local"
    assert passages_of(body)[4] == ""


def test_base_url_with_v1_and_the_rankgpt_prompt() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = {"choices": [{"message": {"role": "assistant", "content": "[2] > [1]"}}]}
        return httpx.Response(200, json=answer)

    transport = httpx.MockTransport(handler)
    config = RerankerConfig(
        model="gpt-4o-mini",
        backend="listwise",
        options={"base_url": "https://llm.internal/v1", "max_new_tokens": 512},
    )
    rr = Reranker.from_backend(ListwiseBackend(config, transport=transport))
    assert rr.rank("q", ["a", "b"]).indices == [1, 0]
    assert str(seen[0].url) == "https://llm.internal/v1/chat/completions"
    body = json.loads(seen[0].content)
    assert body["max_tokens"] == 512
    assert [m["role"] for m in body["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    rr.close()


def test_usage_tokens_and_cost(server: ChatServer) -> None:
    rr = _reranker(
        server.url, price_per_million_input_tokens=0.5, price_per_million_output_tokens=2.0
    )
    result = rr.rank(QUERY, _numbered(25))
    usage = result.usage
    assert usage["windows"] == 2
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    expected = (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 2.0) / 1e6
    assert usage["cost"] == pytest.approx(expected)
    assert rr.usage["cost"] == pytest.approx(expected)


# -- windows ----------------------------------------------------------------------------------


def test_windows_go_back_to_front_and_reach_the_top(server: ChatServer) -> None:
    docs = _numbered(25)
    result = _reranker(server.url).rank(QUERY, docs)
    assert [len(w) for w in server.windows] == [20, 15]
    assert server.windows[0] == docs[5:]  # the bottom 20 first, in input order
    assert set(docs[:5]) <= set(server.windows[1])  # the top 5 are read too
    best = sorted(range(25), key=lambda i: -((i * 37) % 25))
    assert result.indices[:10] == best[:10]  # one pass carries the best 10 to the top
    _assert_once(result, 25)


def test_seven_candidates_are_one_window_and_one_is_none(server: ChatServer) -> None:
    rr = _reranker(server.url)
    result = rr.rank(QUERY, _numbered(7))
    assert [len(w) for w in server.windows] == [7]
    assert result.indices == sorted(range(7), key=lambda i: -((i * 37) % 7))
    single = rr.rank(QUERY, ["only one"])
    assert single.indices == [0]
    assert single.usage["windows"] == 0
    assert len(server.requests) == 1  # nothing to order: no call


def test_top_k_runs_fewer_windows_and_finds_the_same_top(server: ChatServer) -> None:
    docs = _numbered(100)
    rr = _reranker(server.url)
    full = rr.rank(QUERY, docs)
    calls = len(server.requests)
    cut = rr.rank(QUERY, docs, top_k=5)
    assert calls == 9
    assert len(server.requests) - calls == 7
    assert cut.indices == full.indices[:5]
    assert cut.usage["windows"] == 7


def test_rank_many_runs_queries_concurrently_and_windows_in_order(server: ChatServer) -> None:
    together = threading.Barrier(3, timeout=10)  # only passes with 3 calls in flight at once
    first_round = threading.Semaphore(3)

    def wait_for_company(body: dict[str, Any]) -> None:
        if first_round.acquire(blocking=False):
            together.wait()

    server.before_answer = wait_for_company
    docs = {q: _numbered(25) for q in ("q1", "q2", "q3")}
    requests = [(q, [f"{q} {t}" for t in texts]) for q, texts in docs.items()]
    results = _reranker(server.url, max_concurrency=3).rank_many(requests)
    assert len(server.requests) == 6
    for (query, texts), result in zip(requests, results, strict=True):
        mine = [w for w in server.windows if w[0].startswith(query)]
        assert [len(w) for w in mine] == [20, 15]  # bottom window first, then the top
        assert mine[0] == texts[5:]
        _assert_once(result, 25)


async def test_async_path_bounds_the_calls_in_flight(server: ChatServer) -> None:
    in_flight, peak = 0, 0
    lock = threading.Lock()

    def count(body: dict[str, Any]) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1

    server.before_answer = count
    rr = _reranker(server.url, max_concurrency=2)
    requests = [(f"q{i}", _numbered(25)) for i in range(4)]
    results = await rr.arank_many(requests, top_k=3)
    assert peak == 2
    for result in results:
        assert len(result) == 3
        assert result.indices == sorted(range(25), key=lambda i: -((i * 37) % 25))[:3]
    await rr.aclose()


# -- faults -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(server: ChatServer) -> None:
    server.script.extend([("status", 429, 0.3), ("status", 429, 0.3)])
    started = time.perf_counter()
    result = _reranker(server.url).rank(QUERY, DOCS)
    assert time.perf_counter() - started >= 0.6
    assert result.indices == RIGHT
    assert len(server.requests) == 3


def test_a_503_burst_is_retried_and_a_long_one_is_a_typed_error(server: ChatServer) -> None:
    server.script.extend([("status", 503, None)] * 3)
    assert _reranker(server.url).rank(QUERY, DOCS).indices == RIGHT
    server.script.extend([("status", 503, None)] * 5)
    with pytest.raises(ServerError, match="answered 503: scripted 503"):
        _reranker(server.url, max_retries=2).rank(QUERY, DOCS)


def test_a_slow_answer_times_out_and_a_dropped_one_is_retried(server: ChatServer) -> None:
    server.default_step = ("slow", 1.0)
    with pytest.raises(RemoteTimeoutError):
        _reranker(server.url, timeout=0.2, max_retries=1).rank(QUERY, DOCS)
    server.default_step = "oracle"
    server.script.append("drop")
    assert _reranker(server.url).rank(QUERY, DOCS).indices == RIGHT
    server.default_step = "drop"
    with pytest.raises(RemoteConnectionError):
        _reranker(server.url, max_retries=1).rank(QUERY, DOCS)


@pytest.mark.parametrize(
    ("step", "message"),
    [("invalid-json", "not JSON"), ("no-choices", "no choices")],
)
def test_malformed_answers_are_invalid_responses(
    server: ChatServer, step: str, message: str
) -> None:
    server.script.append(step)
    with pytest.raises(InvalidResponseError, match=message):
        _reranker(server.url).rank(QUERY, DOCS)


def test_a_rate_limit_beyond_the_longest_wait_is_not_waited_for(server: ChatServer) -> None:
    server.script.append(("status", 429, 120))
    with pytest.raises(RateLimitError):
        _reranker(server.url, max_retry_after=1.0).rank(QUERY, DOCS)
    assert len(server.requests) == 1


def test_a_fallback_answers_when_the_server_is_down(
    server: ChatServer, tiny_bert_dir: Path
) -> None:
    server.default_step = ("status", 503, None)
    local = Reranker(str(tiny_bert_dir), backend="cross-encoder", device="cpu")
    rr = _reranker(server.url, max_retries=0, fallback=local)
    result = rr.rank(QUERY, DOCS, top_k=3)
    assert result.backend == "cross-encoder"
    assert result.scale == "logit"
    assert result.indices == local.rank(QUERY, DOCS, top_k=3).indices


def test_the_circuit_opens_and_its_trial_lets_the_rest_follow(server: ChatServer) -> None:
    server.default_step = ("status", 503, None)
    rr = _reranker(server.url, max_retries=0, failure_threshold=1, reset_after=0.2)
    with pytest.raises(ServerError):
        rr.rank(QUERY, DOCS)
    assert rr.backend.circuit.state == "open"  # type: ignore[attr-defined]
    server.default_step = "oracle"
    time.sleep(0.25)
    results = rr.rank_many([(f"q{i}", DOCS) for i in range(3)])
    assert [r.indices for r in results] == [RIGHT] * 3
    assert rr.backend.circuit.state == "closed"  # type: ignore[attr-defined]


def test_a_context_overflow_from_the_server_is_a_bad_request(server: ChatServer) -> None:
    server.script.append(("status", 400, None))
    with pytest.raises(BadRequestError, match="answered 400"):
        _reranker(server.url).rank(QUERY, DOCS)


# -- secrets, configuration, scores -----------------------------------------------------------


def test_secrets_never_in_logs_reprs_errors_or_configs(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    key, password = "sk-very-secret-0123", "PASSW0RD"
    server.default_step = ("status", 401, None)
    url = server.url.replace("http://", f"http://alice:{password}@")
    rr = _reranker(url, api_key=Secret.from_token(key))
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as caught:
        rr.rank(QUERY, DOCS)
    assert "Check the API key" in str(caught.value)
    shown = [str(caught.value), repr(rr), repr(rr.backend), caplog.text]
    assert not any(key in text or password in text for text in shown)
    # The URL's credentials still reach the server, as basic auth (not in the logged URL).
    assert server.headers_seen[0]["Authorization"].startswith("Basic ")
    with pytest.raises(ConfigurationError, match="literal API key"):
        rr.config.to_dict()
    saved = Reranker(
        MODEL, backend="listwise", base_url=server.url, api_key=Secret.from_env("PATH")
    ).config.to_dict()
    assert saved["api_key"] == {"type": "env_var", "env_var": "PATH"}
    assert "alice" not in repr(rr.backend)


def test_an_unset_key_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RERANKIT_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="RERANKIT_NO_SUCH_KEY, which is unset"):
        _reranker("http://127.0.0.1:9", api_key=Secret.from_env("RERANKIT_NO_SUCH_KEY"))


def test_a_server_is_used_only_when_the_backend_is_named() -> None:
    """A name infers the listwise backend with a local model; never a server."""
    with pytest.raises(ConfigurationError, match="pass backend='listwise' to say so"):
        Reranker(MODEL, base_url="http://127.0.0.1:9")


def test_options_that_belong_to_the_other_path_are_refused() -> None:
    for option in ({"chat_template": "{{ x }}"}, {"revision": "main"}, {"device": "cpu"}):
        with pytest.raises(ConfigurationError, match="only apply to a model run here"):
            _reranker("http://127.0.0.1:9", **option)
    with pytest.raises(ConfigurationError, match=r"step=30 must be <= window_size=20"):
        _reranker("http://127.0.0.1:9", step=30)
    with pytest.raises(ConfigurationError, match="option prompt takes one of"):
        _reranker("http://127.0.0.1:9", prompt="rankllama")


def test_ranks_refuse_thresholds_and_normalize(server: ChatServer) -> None:
    with pytest.raises(ConfigurationError, match="score_threshold has no meaning"):
        _reranker(server.url, score_threshold=3)
    with pytest.raises(ConfigurationError, match="normalize=True is not available"):
        _reranker(server.url, normalize=True)
    with pytest.raises(InvalidInputError, match="cut with top_k instead"):
        _reranker(server.url).rank(QUERY, DOCS, score_threshold=2.0)


def test_unparsed_windows_are_logged(server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    server.default_step = ("say", "no idea")
    with caplog.at_level(logging.WARNING, logger="rerankit"):
        result = _reranker(server.url).rank(QUERY, _numbered(25))
    assert result.usage["unparsed_windows"] == 2
    assert result.indices == list(range(25))
    assert "2 of 2 windows had no usable order" in caplog.text


# -- a reference's known fault ------------------------------------------------------------------


def test_rerankers_rankgpt_sends_no_passages_by_default_and_we_send_all(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rerankers' RankGPTRanker ranks hits[0:rank_end] with rank_end=0: nothing is read."""

    def completion(**kwargs: Any) -> Any:  # litellm's call, sent to the same test server
        body = {k: kwargs[k] for k in ("model", "messages", "temperature")}
        answer = httpx.post(f"{server.url}/v1/chat/completions", json=body).json()
        message = types.SimpleNamespace(content=answer["choices"][0]["message"]["content"])
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=message)])

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(completion=completion))
    monkeypatch.delitem(sys.modules, "rerankers.models.rankgpt_rankers", raising=False)
    from rerankers.models.rankgpt_rankers import RankGPTRanker

    theirs = RankGPTRanker("gpt-4o-mini", api_key="unused", verbose=0).rank(QUERY, DOCS)
    assert server.windows == [[]]  # the prompt held zero passages
    assert [r.document.text for r in theirs.results] == DOCS  # input order back
    ours = _reranker(server.url, prompt="rankgpt").rank(QUERY, DOCS)
    assert len(server.windows[1]) == len(DOCS)
    assert ours.indices == RIGHT


def test_the_async_path_closes_on_its_own_loop(server: ChatServer) -> None:
    rr = _reranker(server.url)
    for _ in range(2):  # asyncio.run after asyncio.run: each loop's client is its own
        assert asyncio.run(rr.arank(QUERY, DOCS)).indices == RIGHT
    rr.close()
