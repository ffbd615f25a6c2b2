"""Image documents through ``rerankit serve`` over real HTTP on 127.0.0.1.

The served model is :func:`tests.image_backend.red_images` (score: mean red + query words), a
text-only backend beside it, and clients both raw (httpx) and rerankit's own ``jina`` backend.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import httpx
import pytest

from rerankit import Document, Reranker, RerankerConfig, Secret
from rerankit.backends.base import Backend
from rerankit.images import ImagePassage, ImagePolicy, read_image
from rerankit.serve.app import ServeSettings
from rerankit.types import Scores
from tests.backends.http_server import serving as serving_http
from tests.image_backend import RedImages, png, red_images
from tests.serve.conftest import serving

QUERY = "red cells"
RED, DARK, BLUE = png((240, 0, 0)), png((90, 10, 10)), png((0, 0, 250))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Words(Backend):
    """A text-only backend: the number of query words in the text."""

    name: ClassVar[str] = "words"
    scale = "logit"

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        words = query.lower().split()
        return Scores(values=[float(sum(w in t.lower().split() for w in words)) for t in texts])


@pytest.fixture
def red() -> Reranker:
    return red_images()


@pytest.fixture
def words() -> Reranker:
    return Reranker.from_backend(Words(RerankerConfig(model="words")))


@pytest.fixture
def url(red: Reranker, words: Reranker) -> Iterator[str]:
    with serving({"red": red, "words": words}, ServeSettings(max_wait_ms=20)) as base:
        yield base


def _post(url: str, body: dict[str, Any], path: str = "/v1/rerank") -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30)


def test_image_documents_rank_as_in_process(url: str, red: Reranker) -> None:
    sent = [
        "red pages",
        {"text": "cells"},
        {"image": b64(RED), "text": "red cells"},
        {"image": f"data:image/png;base64,{b64(BLUE)}"},
        {"image": b64(DARK)},
        {"image": "\n".join(b64(DARK)[i : i + 76] for i in range(0, len(b64(DARK)), 76))},
    ]
    response = _post(url, {"model": "red", "query": QUERY, "documents": sent})
    assert response.status_code == 200, response.text
    answer = response.json()
    want = red.rank(
        QUERY,
        [
            "red pages",
            "cells",
            Document(image=RED, text="red cells"),
            Document(image=BLUE),
            Document(image=DARK),
            Document(image=DARK),
        ],
    )
    assert [r["index"] for r in answer["results"]] == want.indices == [2, 4, 5, 0, 1, 3]
    assert [r["relevance_score"] for r in answer["results"]] == pytest.approx(want.scores)
    assert answer["score_scale"] == "logit"
    documents = {r["index"]: r["document"] for r in answer["results"]}  # /v1: echoed
    assert documents == {
        0: {"text": "red pages"},
        1: {"text": "cells"},
        2: {"text": "red cells", "image_bytes": len(RED)},
        3: {"text": "", "image_bytes": len(BLUE)},
        4: {"text": "", "image_bytes": len(DARK)},
        5: {"text": "", "image_bytes": len(DARK)},
    }
    assert b64(RED)[:24] not in response.text  # no payload comes back
    top = _post(url, {"model": "red", "query": QUERY, "documents": sent, "top_n": 2}, "/v2/rerank")
    assert [r["index"] for r in top.json()["results"]] == [2, 4]
    assert all("document" not in r for r in top.json()["results"])


def test_the_jina_backend_sends_images_to_rerankit_serve(url: str, red: Reranker) -> None:
    client = Reranker("red", backend="jina", base_url=url, api_key=Secret.from_token("unused"))
    docs: list[str | Document] = [
        Document(image=BLUE, text="cells"),
        "red",
        Document(image=RED),
        Document(image=f"data:image/png;base64,{b64(DARK)}", text="red cells"),
    ]
    got, want = client.rank(QUERY, docs), red.rank(QUERY, docs)
    assert got.indices == want.indices
    assert got.scores == pytest.approx(want.scores)
    assert all(item.document is docs[item.index] for item in got)


def test_concurrent_image_requests_are_batched_and_exact(url: str, red: Reranker) -> None:
    bodies = [
        {"model": "red", "query": f"red {i}", "documents": [{"image": b64(c)} for c in colours]}
        for i, colours in enumerate([(RED, BLUE), (BLUE, DARK, RED), (DARK,), (BLUE, RED)] * 3)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: _post(url, body), bodies))
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        images = [Document(image=base64.b64decode(d["image"])) for d in body["documents"]]
        want = red.rank(body["query"], images)
        assert [r["index"] for r in answer.json()["results"]] == want.indices
        scores = [r["relevance_score"] for r in answer.json()["results"]]
        assert scores == pytest.approx(want.scores)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'rerankit_requests_total{model="red",status="200"} 12.0' in metrics


def test_a_text_only_model_refuses_image_documents(url: str) -> None:
    body = {"model": "words", "query": QUERY, "documents": ["red", {"image": b64(RED)}]}
    response = _post(url, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "documents[1] is an image document" in detail
    assert "'words' backend ranks text only" in detail
    text = _post(url, {"model": "words", "query": QUERY, "documents": ["red", {"text": "cells"}]})
    assert [r["index"] for r in text.json()["results"]] == [0, 1]


@pytest.mark.parametrize(
    ("document", "status", "detail"),
    [
        ({"image": "not base64 at all!"}, 422, "documents[1].image is not an http(s) URL"),
        ({"image": "data:image/png;base64,@@@"}, 422, "valid base64"),
        ({"image": b64(b"plain text, not a picture")}, 422, "25 bytes that are not an image"),
        ({"image": b64(RED[:-30])}, 422, "could not be decoded"),  # a header, then garbage
        ({"image": "   "}, 422, "documents[1].image is empty"),
        ({"image": b64(png((1, 2, 3), (300, 300)) + b"\0" * 4000)}, 413, "4000-byte limit"),
        ({}, 422, "needs 'text' or 'image'"),
        ({"image": 5}, 422, "documents"),
        ({"image": "https://images.example.invalid/p.png"}, 422, "fetch_images=True"),
    ],
    ids=[
        "bad-base64",
        "bad-data-uri",
        "not-an-image",
        "truncated",
        "empty",
        "too-big",
        "no-text-nor-image",
        "not-a-string",
        "url-not-fetched",
    ],
)
def test_bad_images_are_4xx_with_a_message(
    red: Reranker, document: dict[str, Any], status: int, detail: str
) -> None:
    with serving({"red": red}, ServeSettings(max_image_bytes=4000)) as base:
        body = {"query": QUERY, "documents": [{"image": b64(RED)}, document]}
        response = _post(base, body)
        assert response.status_code == status, response.text
        assert detail in response.json()["detail"]
        assert _post(base, {"query": QUERY, "documents": [{"image": b64(RED)}]}).status_code == 200


def test_a_server_file_path_is_never_read(red: Reranker, tmp_path: Any) -> None:
    page = tmp_path / "page.png"
    page.write_bytes(RED)
    with serving({"red": red}, ServeSettings()) as base:
        response = _post(base, {"query": QUERY, "documents": [{"image": str(page)}]})
    assert response.status_code == 422
    assert "not an http(s) URL, a data URI or valid base64" in response.json()["detail"]
    backend = red.backend
    assert isinstance(backend, RedImages)
    assert not any(isinstance(p, ImagePassage) for call in backend.seen for p in call)


def test_one_bad_image_in_a_merged_batch_fails_alone(red: Reranker) -> None:
    good = {"query": QUERY, "documents": [{"image": b64(RED)}, {"image": b64(BLUE)}]}
    bad = {"query": QUERY, "documents": [{"image": b64(RED[:-30])}]}
    with (
        serving({"red": red}, ServeSettings(max_wait_ms=200)) as base,
        ThreadPoolExecutor(4) as pool,
    ):
        answers = list(pool.map(lambda body: _post(base, body), [good, bad, good, good]))
    assert [a.status_code for a in answers] == [200, 422, 200, 200]
    assert all([r["index"] for r in a.json()["results"]] == [0, 1] for a in answers[::2])


class FetchingRedImages(RedImages):
    """:class:`RedImages` built with ``fetch_images=True``: it downloads image URLs."""

    def score(self, query: str, texts: Sequence[Any]) -> Scores:
        self.seen.append(list(texts))
        values = []
        for passage in texts:
            if isinstance(passage, ImagePassage):
                image = read_image(passage.image, ImagePolicy(allow_urls=True))
                values.append(sum(image.tobytes()[0::3]) / (image.width * image.height))
            else:
                values.append(0.0)
        return Scores(values=values)


def test_urls_reach_a_model_that_fetches_images() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Pages(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            data = {"/red.png": RED, "/blue.png": BLUE}.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

    fetching = Reranker.from_backend(FetchingRedImages(RerankerConfig(model="fetching")))
    with serving_http(ThreadingHTTPServer(("127.0.0.1", 0), Pages)) as pages:
        host = f"http://127.0.0.1:{pages.server_address[1]}"
        with serving({"fetching": fetching}, ServeSettings()) as base:
            documents = [{"image": f"{host}/blue.png"}, {"image": f"{host}/red.png", "text": "x"}]
            response = _post(base, {"query": QUERY, "documents": documents})
            missing = _post(base, {"query": QUERY, "documents": [{"image": f"{host}/no.png"}]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [1, 0]
    assert results[0]["document"] == {"text": "x", "image": f"{host}/red.png"}  # URLs echoed
    assert missing.status_code == 422
    assert "could not be fetched" in missing.json()["detail"]
    assert json.dumps(results).count("image") == 2
