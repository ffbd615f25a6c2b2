"""Image documents through the remote backend, against a real HTTP server on 127.0.0.1.

The server records every request body: these tests pin the exact JSON sent for each form an
image may be given in, and that dialects without images refuse before anything is sent.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rerankit import Document, InvalidInputError, Reranker
from rerankit.backends.jina import IMAGE_TOKENS
from tests.backends.rerank_server import (
    RerankServer,
    jina_reranker,
    relevance,
    running_server,
)
from tests.image_backend import png

QUERY = "red pages about cells"
RED = png((250, 10, 10))
RED_B64 = base64.b64encode(RED).decode("ascii")
URL = "https://images.example.invalid/pages/7.png?size=large"  # never fetched here


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with running_server() as srv:
        yield srv


def _reranker(server_url: str, **options: object) -> Reranker:
    return jina_reranker(server_url, "jina-reranker-m0", **options)


def _pil() -> Image.Image:
    return Image.new("RGB", (20, 10), (200, 30, 40))


def _png_of(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _noisy_png() -> bytes:
    """A PNG that compresses badly (a few kilobytes), so its base64 is long."""
    pixels = bytes((i * 7919) % 251 for i in range(48 * 32 * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (48, 32), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _wrapped(text: str, width: int = 76) -> str:
    """Base64 as MIME wraps it: lines of ``width`` characters."""
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


# (name, how to make the image from a tmp folder, what must be sent as "image")
FORMS: list[tuple[str, Callable[[Path], Any], str]] = [
    ("bytes", lambda tmp: RED, RED_B64),
    ("path", lambda tmp: _file(tmp), RED_B64),
    ("path-as-str", lambda tmp: str(_file(tmp)), RED_B64),
    ("raw-base64", lambda tmp: RED_B64, RED_B64),
    ("wrapped-base64", lambda tmp: _wrapped(RED_B64), RED_B64),
    ("data-uri", lambda tmp: f"data:image/png;base64,{RED_B64}", RED_B64),
    ("url", lambda tmp: URL, URL),
    ("pil", lambda tmp: _pil(), _png_of(_pil())),
]


def _file(tmp: Path) -> Path:
    path = tmp / "page.png"
    path.write_bytes(RED)
    return path


@pytest.mark.parametrize(
    ("make", "sent"), [(m, s) for _, m, s in FORMS], ids=[n for n, *_ in FORMS]
)
def test_each_image_form_is_sent_as_a_url_or_raw_base64(
    server: RerankServer, tmp_path: Path, make: Callable[[Path], Any], sent: str
) -> None:
    rr = _reranker(server.url)
    result = rr.rank(QUERY, [Document(image=make(tmp_path))])
    assert server.requests == [
        {
            "model": "jina-reranker-m0",
            "query": QUERY,
            "documents": [{"image": sent}],
            "top_n": 1,
            "return_documents": False,
        }
    ]
    assert result.indices == [0]
    assert result.scale == "service"


def test_mixed_text_and_image_documents_keep_order_and_indices(server: RerankServer) -> None:
    docs: list[str | Document] = [
        "a page about bread",
        Document(image=RED, text="red cells under a microscope", id="fig-1"),
        Document(text="cells divide", id="t-2"),
        Document(image=URL),
        "pages",
    ]
    rr = _reranker(server.url)
    result = rr.rank(QUERY, docs)
    assert server.requests[0]["documents"] == [
        {"text": "a page about bread"},
        {"image": RED_B64, "text": "red cells under a microscope"},
        {"text": "cells divide"},
        {"image": URL},
        {"text": "pages"},
    ]
    texts = ["a page about bread", "red cells under a microscope", "cells divide", "", "pages"]
    assert sorted(result.indices) == list(range(len(docs)))
    for item in result:
        assert item.document is docs[item.index]
        assert item.score == pytest.approx(relevance(QUERY, texts[item.index]))
    assert result.indices[0] == 1  # the captioned figure shares the most words
    assert result.usage["requests"] == 1
    assert result.usage["total_tokens"] > 0

    rr.rank(QUERY, ["a page about bread", Document(text="cells divide")])
    assert server.requests[1]["documents"] == ["a page about bread", "cells divide"]  # as before


def test_chunks_send_objects_only_where_a_chunk_holds_an_image(server: RerankServer) -> None:
    docs: list[str | Document] = ["red", Document(image=RED), "cells", "pages", Document(image=URL)]
    result = _reranker(server.url, max_documents_per_request=2).rank(QUERY, docs)
    sent = sorted((r["documents"] for r in server.requests), key=len, reverse=True)
    assert sorted(map(str, sent)) == sorted(
        map(
            str,
            [[{"text": "red"}, {"image": RED_B64}], ["cells", "pages"], [{"image": URL}]],
        )
    )
    assert sorted(result.indices) == list(range(5))
    assert result.usage["requests"] == 3


def test_an_image_counts_against_the_request_token_budget(server: RerankServer) -> None:
    docs = [Document(image=RED, text="red"), Document(image=URL), Document(image=RED)]
    result = _reranker(server.url, max_request_tokens=IMAGE_TOKENS + 10).rank(QUERY, docs)
    assert result.usage["requests"] == 3  # one image per call, whatever its payload's size
    assert all(len(r["documents"]) == 1 for r in server.requests)
    assert _reranker(server.url).rank(QUERY, docs).usage["requests"] == 1


@pytest.mark.parametrize("dialect", ["infinity", "cohere", "vllm", "tei"])
def test_dialects_without_images_refuse_before_sending(server: RerankServer, dialect: str) -> None:
    rr = _reranker(server.url, dialect=dialect)
    with pytest.raises(InvalidInputError, match=rf"documents\[1\].*the '{dialect}' dialect") as e:
        rr.rank(QUERY, ["text first", Document(image=RED), Document(image=URL)])
    assert "dialect='jina'" in str(e.value)
    assert server.requests == []


async def test_async_refusal_and_async_images(server: RerankServer, tmp_path: Path) -> None:
    refusing = _reranker(server.url, dialect="tei")
    with pytest.raises(InvalidInputError, match="'tei' dialect"):
        await refusing.arank(QUERY, [Document(image=RED)])
    assert server.requests == []
    rr = _reranker(server.url)
    result = await rr.arank(QUERY, [Document(image=_file(tmp_path), text="red"), "cells"])
    assert server.requests[0]["documents"] == [{"image": RED_B64, "text": "red"}, {"text": "cells"}]
    assert result.indices == [0, 1]
    await rr.aclose()


def test_images_over_max_image_bytes_are_refused_before_sending(
    server: RerankServer, tmp_path: Path
) -> None:
    noisy = _noisy_png()
    encoded = base64.b64encode(noisy).decode("ascii")
    path = tmp_path / "noisy.png"
    path.write_bytes(noisy)
    rr = _reranker(server.url, max_image_bytes=len(noisy) - 1)
    for source in (noisy, path, f"data:image/png;base64,{encoded}", encoded, Image.open(path)):
        with pytest.raises(InvalidInputError, match="max_image_bytes") as error:
            rr.rank(QUERY, ["fine", Document(image=source)])
        assert encoded[:40] not in str(error.value)  # described, never dumped
    assert server.requests == []
    rr = _reranker(server.url, max_image_bytes=len(noisy))
    rr.rank(QUERY, [Document(image=noisy), Document(image=URL)])  # a URL is never read here
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [("no-such-page.png", "not an existing file"), ("data:image/png;base64,@@@@", "not valid")],
)
def test_unreadable_images_are_typed_errors_before_sending(
    server: RerankServer, source: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        _reranker(server.url).rank(QUERY, [Document(image=source)])
    assert server.requests == []


def test_retries_resend_the_same_body_and_logs_never_hold_the_image(
    server: RerankServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.extend([("status", 503, None), ("status", 429, 0)])
    caplog.set_level(logging.DEBUG)
    rr = _reranker(server.url, max_retries=3)
    result = rr.rank(QUERY, [Document(image=RED, text="red cells"), "bread"])
    assert len(server.requests) == 3
    assert server.requests[0] == server.requests[1] == server.requests[2]
    assert result.indices == [0, 1]
    assert result.usage["total_tokens"] == server_tokens(server.requests[-1])
    assert rr.usage["total_tokens"] == result.usage["total_tokens"]
    assert "retrying" in caplog.text
    assert RED_B64[:40] not in caplog.text


def server_tokens(body: dict[str, Any]) -> float:
    """The usage the test server reports for ``body`` (see ``rerank_server``)."""
    docs = [d if isinstance(d, str) else d.get("text", "") for d in body["documents"]]
    return float(sum(len(d.split()) for d in docs) + len(docs) * len(body["query"].split()))


def test_one_image_used_twice_is_read_once(
    server: RerankServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rerankit.backends import jina

    reads: list[object] = []
    real = jina.image_payload

    def counting(source: Any, policy: Any) -> str:
        reads.append(source)
        return real(source, policy)

    monkeypatch.setattr(jina, "image_payload", counting)
    page = _file(tmp_path)
    rr = _reranker(server.url)
    rr.rank_many([(QUERY, [Document(image=page)]), ("cells", [Document(image=page), "x"])])
    assert reads == [page]
    bodies = sorted(server.requests, key=lambda b: len(b["documents"]))
    assert bodies[0]["documents"] == [{"image": RED_B64}]
    assert bodies[1]["documents"] == [{"image": RED_B64}, {"text": "x"}]
