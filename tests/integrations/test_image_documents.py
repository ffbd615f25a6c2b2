"""Image documents through the LangChain, LlamaIndex and Haystack adapters.

:func:`tests.image_backend.red_images` scores an image by its mean red (0-255) plus the query
words in its text, so the reddest image must win and text documents (query words only) come
last; each framework's own image forms must reach rerankit as images.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from rerankit import Reranker, RerankerConfig
from rerankit.errors import InvalidInputError
from rerankit.images import ImagePassage
from tests.image_backend import RedImages, png, red_images

QUERY = "red apple"
# Mean red value of each image; the text documents score 1 or 2 (their query words).
REDS = {"base64": 200, "path": 230, "bytes": 255, "data-uri": 120, "resource": 90}


def _b64(red: int) -> str:
    return base64.b64encode(png((red, 0, 0))).decode("ascii")


def _data_uri(red: int) -> str:
    return f"data:image/png;base64,{_b64(red)}"


def _file(folder: Path, name: str, red: int) -> Path:
    path = folder / name
    path.write_bytes(png((red, 0, 0)))
    return path


def _recording() -> tuple[Reranker, RedImages]:
    backend = RedImages(RerankerConfig(model="red-images"))
    return Reranker.from_backend(backend), backend


def _text_only(tiny_bert_dir: Path) -> Reranker:
    return Reranker(str(tiny_bert_dir), backend="cross-encoder", device="cpu")


# --- LangChain ---------------------------------------------------------------------------------


def _langchain_docs(folder: Path) -> list:  # type: ignore[type-arg]
    from langchain_core.documents import Document

    return [
        Document(page_content="a red apple", metadata={"n": 0}, id="text-2"),
        Document(page_content="", metadata={"n": 1, "image": _b64(REDS["base64"])}, id="base64"),
        Document(
            page_content="an apple",
            metadata={"n": 2, "image": str(_file(folder, "p.png", REDS["path"]))},
            id="path",
        ),
        Document(page_content="", metadata={"n": 3, "image": png((255, 0, 0))}, id="bytes"),
        Document(
            page_content="", metadata={"n": 4, "image": _data_uri(REDS["data-uri"])}, id="data-uri"
        ),
        Document(
            page_content="",
            metadata={"n": 5, "image": _file(folder, "q.png", REDS["resource"])},
            id="pathlike",
        ),
        Document(page_content="apple", metadata={"n": 6}, id="text-1"),
    ]


def test_langchain_ranks_image_documents(tmp_path: Path) -> None:
    from rerankit.integrations.langchain import RerankitCompressor

    docs = _langchain_docs(tmp_path)
    before = [(d.id, d.page_content, dict(d.metadata)) for d in docs]
    reranker, backend = _recording()
    out = RerankitCompressor(reranker=reranker, top_n=len(docs)).compress_documents(docs, QUERY)
    assert [d.id for d in out] == [
        "bytes", "path", "base64", "data-uri", "pathlike", "text-2", "text-1"
    ]  # fmt: skip
    assert out[1].metadata["relevance_score"] == REDS["path"] + 1  # "an apple": one query word
    for doc in out:
        source = docs[doc.metadata["n"]]
        assert doc is not source
        assert (doc.id, doc.page_content) == (source.id, source.page_content)
        assert doc.metadata == {
            **source.metadata,
            "relevance_score": doc.metadata["relevance_score"],
            "rerank_score_scale": "logit",
        }
    assert [(d.id, d.page_content, dict(d.metadata)) for d in docs] == before
    (passages,) = backend.seen
    assert passages[0] == "a red apple"
    assert passages[6] == "apple"
    assert passages[1] == ImagePassage(docs[1].metadata["image"], "")
    assert passages[2] == ImagePassage(docs[2].metadata["image"], "an apple")


async def test_langchain_cuts_and_async_match(tmp_path: Path) -> None:
    from rerankit.integrations.langchain import RerankitCompressor

    docs = _langchain_docs(tmp_path)
    compressor = RerankitCompressor(reranker=red_images(), top_n=2)
    sync = compressor.compress_documents(docs, QUERY)
    assert [d.id for d in sync] == ["bytes", "path"]
    assert await compressor.acompress_documents(docs, QUERY) == sync
    kept = RerankitCompressor(reranker=red_images(), top_n=10, score_threshold=150.0)
    assert [d.id for d in kept.compress_documents(docs, QUERY)] == ["bytes", "path", "base64"]


def test_langchain_image_key(tmp_path: Path) -> None:
    from langchain_core.documents import Document

    from rerankit.integrations.langchain import RerankitCompressor

    docs = [
        Document(page_content="apple", metadata={"picture": png((250, 0, 0))}, id="pic"),
        Document(page_content="red apple", metadata={"image": png((255, 0, 0))}, id="other"),
    ]
    by_picture = RerankitCompressor(reranker=red_images(), image_key="picture")
    assert [d.id for d in by_picture.compress_documents(docs, QUERY)] == ["pic", "other"]
    text_only = RerankitCompressor(reranker=red_images(), image_key=None)
    assert [d.id for d in text_only.compress_documents(docs, QUERY)] == ["other", "pic"]
    bad = [Document(page_content="", metadata={"image": 42}, id="bad")]
    with pytest.raises(InvalidInputError, match=r"metadata\['image'\] \(id 'bad'\)"):
        RerankitCompressor(reranker=red_images()).compress_documents(bad, QUERY)


async def test_langchain_text_reranker_refuses_images(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from rerankit.integrations.langchain import RerankitCompressor

    compressor = RerankitCompressor(reranker=_text_only(tiny_bert_dir))
    docs = _langchain_docs(tmp_path)
    with pytest.raises(InvalidInputError, match="image document"):
        compressor.compress_documents(docs, QUERY)
    with pytest.raises(InvalidInputError, match="image document"):
        await compressor.acompress_documents(docs[1:2], QUERY)
    assert len(compressor.compress_documents([docs[0], docs[6]], QUERY)) == 2


# --- LlamaIndex --------------------------------------------------------------------------------


def _llama_nodes(folder: Path) -> list:  # type: ignore[type-arg]
    from llama_index.core.schema import (
        ImageDocument,
        ImageNode,
        MediaResource,
        Node,
        NodeWithScore,
        TextNode,
    )

    nodes = [
        TextNode(text="a red apple", id_="text-2", metadata={"n": 0}),
        ImageNode(image=_b64(REDS["base64"]), id_="base64", metadata={"n": 1}),
        ImageNode(
            image_path=str(_file(folder, "p.png", REDS["path"])),
            text="an apple",
            id_="path",
            metadata={"n": 2},
        ),
        Node(image_resource=MediaResource(data=png((255, 0, 0))), id_="bytes", metadata={"n": 3}),
        ImageNode(image_url=_data_uri(REDS["data-uri"]), id_="data-uri", metadata={"n": 4}),
        ImageDocument(image=_b64(REDS["resource"]), id_="resource", metadata={"n": 5}),
        TextNode(text="apple", id_="text-1", metadata={"n": 6}),
        ImageDocument(
            image_path=str(_file(folder, "d.png", 20)),
            text="caption",
            id_="doc-path",
            metadata={"n": 7},
        ),
    ]
    return [NodeWithScore(node=node, score=0.5) for node in nodes]


def test_llama_index_ranks_image_nodes(tmp_path: Path) -> None:
    from rerankit.integrations.llama_index import RerankitPostprocessor

    nodes = _llama_nodes(tmp_path)
    before = [n.node.model_dump() for n in nodes]
    reranker, backend = _recording()
    post = RerankitPostprocessor(reranker=reranker, top_n=len(nodes), keep_retrieval_score=True)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [
        "bytes", "path", "base64", "data-uri", "resource", "doc-path", "text-2", "text-1"
    ]  # fmt: skip
    for ranked in out:
        source = nodes[ranked.node.metadata["n"]].node
        assert ranked.node is not source
        assert type(ranked.node) is type(source)
        assert ranked.node.metadata == {
            **source.metadata,
            "rerank_score_scale": "logit",
            "retrieval_score": 0.5,
        }
        scored = {"metadata", "excluded_llm_metadata_keys", "excluded_embed_metadata_keys"}
        # The image, text, id and relations, unchanged.
        assert ranked.node.model_dump(exclude=scored) == source.model_dump(exclude=scored)
    assert [n.node.model_dump() for n in nodes] == before
    (passages,) = backend.seen
    assert passages[1] == ImagePassage(nodes[1].node.image, "n: 1")  # base64 as given
    assert passages[2] == ImagePassage(Path(nodes[2].node.image_path), "n: 2\n\nan apple")
    assert passages[3] == ImagePassage(png((255, 0, 0)), "")  # resource data, decoded
    assert passages[5] == ImagePassage(base64.b64decode(_b64(REDS["resource"])), "")
    assert passages[7].image == Path(nodes[7].node.image_path)
    assert isinstance(passages[0], str)


async def test_llama_index_cuts_async_and_urls(tmp_path: Path) -> None:
    from llama_index.core.schema import MediaResource, Node, NodeWithScore

    from rerankit.integrations.llama_index import RerankitPostprocessor

    nodes = _llama_nodes(tmp_path)
    post = RerankitPostprocessor(reranker=red_images(), top_n=2)
    sync = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in sync] == ["bytes", "path"]
    again = await post.apostprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in again] == [(n.node.node_id, n.score) for n in sync]
    cut = RerankitPostprocessor(reranker=red_images(), top_n=10, score_threshold=150.0)
    assert len(cut.postprocess_nodes(nodes, query_str=QUERY)) == 3
    # A URL goes to rerankit as the URL: fetched only where the reranker allows it.
    url = "https://example.com/page.png"
    reranker, backend = _recording()
    web = [NodeWithScore(node=Node(image_resource=MediaResource(url=url)), score=None)]
    with pytest.raises(InvalidInputError, match="fetching images is off"):
        RerankitPostprocessor(reranker=reranker).postprocess_nodes(web, query_str=QUERY)
    assert backend.seen[0][0] == ImagePassage(url, "")


def test_llama_index_refusals(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from llama_index.core.schema import ImageNode, NodeWithScore

    from rerankit.integrations.llama_index import RerankitPostprocessor

    nodes = _llama_nodes(tmp_path)
    text_only = RerankitPostprocessor(reranker=_text_only(tiny_bert_dir))
    for node in nodes[1:6]:
        with pytest.raises(InvalidInputError, match="image document"):
            text_only.postprocess_nodes([nodes[0], node], query_str=QUERY)
    assert len(text_only.postprocess_nodes([nodes[0], nodes[6]], query_str=QUERY)) == 2
    pdf = NodeWithScore(node=ImageNode(image_path="report.pdf", id_="pdf"))
    with pytest.raises(InvalidInputError, match=r"'pdf'.*application/pdf"):
        RerankitPostprocessor(reranker=red_images()).postprocess_nodes([pdf], query_str=QUERY)


# --- Haystack ----------------------------------------------------------------------------------


def _haystack_docs(folder: Path) -> list:  # type: ignore[type-arg]
    from haystack import Document
    from haystack.dataclasses import ByteStream

    _file(folder, "red.png", REDS["path"])
    _file(folder, "pale.png", REDS["resource"])
    return [
        Document(id="text-2", content="a red apple", meta={"n": 0}, score=0.1),
        Document(
            id="bytes",
            content="an apple",
            blob=ByteStream(data=png((255, 0, 0)), mime_type="image/png"),
            meta={"n": 1},
        ),
        Document(id="sniffed", blob=ByteStream(data=png((200, 0, 0))), meta={"n": 2}),
        Document(id="path", content=None, meta={"n": 3, "file_path": "red.png"}),
        Document(id="absolute", content=None, meta={"n": 4, "file_path": str(folder / "pale.png")}),
        Document(id="pdf-text", content="apple", meta={"n": 5, "file_path": "paper.pdf"}),
        Document(
            id="pdf-blob",
            content="",
            blob=ByteStream(data=b"%PDF-1.7", mime_type="application/pdf"),
            meta={"n": 6},
        ),
    ]


def test_haystack_ranks_image_documents(tmp_path: Path) -> None:
    from rerankit.integrations.haystack import RerankitRanker

    docs = _haystack_docs(tmp_path)
    reranker, backend = _recording()
    ranker = RerankitRanker(reranker=reranker, top_k=None, root_path=str(tmp_path))
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out] == [
        "bytes", "path", "sniffed", "absolute", "text-2", "pdf-text", "pdf-blob"
    ]  # fmt: skip
    assert out[0].score == 256.0  # 255 red + "apple"
    for doc in out:
        source = docs[doc.meta["n"]]
        assert doc is not source
        assert (doc.id, doc.content, doc.blob) == (source.id, source.content, source.blob)
        assert doc.meta == {**source.meta, "rerank_score_scale": "logit"}
    assert docs[0].score == 0.1
    assert "rerank_score_scale" not in docs[0].meta
    (passages,) = backend.seen
    assert passages[1] == ImagePassage(png((255, 0, 0)), "an apple")
    assert passages[3] == ImagePassage(tmp_path / "red.png", "")
    assert passages[4] == ImagePassage(tmp_path / "pale.png", "")
    assert passages[5:] == ["apple", ""]  # a PDF's text and a text document with a PDF blob


async def test_haystack_cuts_async_and_paths(tmp_path: Path) -> None:
    from haystack import Document
    from haystack.dataclasses import ByteStream

    from rerankit.integrations.haystack import RerankitRanker

    docs = _haystack_docs(tmp_path)
    ranker = RerankitRanker(reranker=red_images(), top_k=2, root_path=str(tmp_path))
    sync = ranker.run(query=QUERY, documents=docs)
    assert [d.id for d in sync["documents"]] == ["bytes", "path"]
    assert await ranker.run_async(query=QUERY, documents=docs) == sync
    kept = ranker.run(query=QUERY, documents=docs, top_k=10, score_threshold=150.0)
    assert [d.id for d in kept["documents"]] == ["bytes", "path", "sniffed"]
    # Outside root_path, a content-less non-image blob or file, and no file_path field.
    escape = Document(id="escape", meta={"file_path": "../secret.png"})
    with pytest.raises(InvalidInputError, match=r"'escape'.*outside root_path"):
        ranker.run(query=QUERY, documents=[escape])
    blob = Document(id="zip", blob=ByteStream(data=b"PK\x03\x04", mime_type="application/zip"))
    with pytest.raises(InvalidInputError, match=r"'zip'.*no content.*'application/zip'"):
        ranker.run(query=QUERY, documents=[blob])
    untyped = Document(id="raw", blob=ByteStream(data=b"not an image"))
    with pytest.raises(InvalidInputError, match=r"'raw'.*no MIME type and no image data"):
        ranker.run(query=QUERY, documents=[untyped])
    pdf = Document(id="pdf", meta={"file_path": "scan.pdf"})
    with pytest.raises(InvalidInputError, match=r"'pdf'.*'application/pdf', not an image"):
        ranker.run(query=QUERY, documents=[pdf])
    no_files = RerankitRanker(reranker=red_images(), top_k=None, file_path_meta_field=None)
    out = no_files.run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out][:2] == ["bytes", "sniffed"]  # blobs still count, files not
    assert {d.id: d.score for d in out}["path"] == 0.0


def test_haystack_text_reranker_refuses_images(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from haystack import Document

    from rerankit.integrations.haystack import RerankitRanker

    docs = _haystack_docs(tmp_path)
    ranker = RerankitRanker(reranker=_text_only(tiny_bert_dir), root_path=str(tmp_path))
    for doc in docs[1:5]:
        with pytest.raises(InvalidInputError, match="image document"):
            ranker.run(query=QUERY, documents=[docs[0], doc])
    texts = ranker.run(query=QUERY, documents=[docs[0], docs[5], docs[6]])["documents"]
    assert sorted(d.id for d in texts) == ["pdf-blob", "pdf-text", "text-2"]
    # Text extracted from an image (LLMDocumentContentExtractor keeps its file_path): an image
    # document, unless file paths are switched off to rank that text.
    extracted = Document(id="ocr", content="red apple", meta={"file_path": "red.png"})
    with pytest.raises(InvalidInputError, match="image document"):
        ranker.run(query=QUERY, documents=[extracted])
    by_text = RerankitRanker(reranker=_text_only(tiny_bert_dir), file_path_meta_field=None)
    assert by_text.run(query=QUERY, documents=[extracted])["documents"][0].id == "ocr"
    vlm = RerankitRanker(reranker=red_images(), root_path=str(tmp_path))
    assert vlm.run(query=QUERY, documents=[extracted])["documents"][0].score == 232.0


def test_haystack_pipeline_yaml_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from haystack import Document, Pipeline

    from rerankit import registry
    from rerankit.integrations.haystack import RerankitRanker

    spec = registry.BackendSpec("red-images", "tests.image_backend", "RedImages", "", ())
    monkeypatch.setattr(registry, "_plugins", lambda: {"red-images": spec})
    _file(tmp_path, "red.png", 255)
    _file(tmp_path, "dark.png", 40)
    docs = [
        Document(id="dark", meta={"image": "dark.png"}),
        Document(id="text", content="red apple"),
        Document(id="red", meta={"image": "red.png"}),
    ]
    ranker = RerankitRanker(
        model="red-images",
        backend="red-images",
        top_k=2,
        file_path_meta_field="image",
        root_path=str(tmp_path),
    )
    params = ranker.to_dict()["init_parameters"]
    assert (params["file_path_meta_field"], params["root_path"]) == ("image", str(tmp_path))
    pipe = Pipeline()
    pipe.add_component("ranker", ranker)
    inputs = {"ranker": {"query": QUERY, "documents": docs}}
    direct = pipe.run(inputs)["ranker"]["documents"]
    assert [d.id for d in direct] == ["red", "dark"]
    yaml_text = pipe.dumps()
    assert "file_path_meta_field: image" in yaml_text
    loaded = Pipeline.loads(yaml_text, allowed_modules=["rerankit.*"])
    again = loaded.get_component("ranker")
    assert again.to_dict() == ranker.to_dict()
    assert [(d.id, d.score) for d in loaded.run(inputs)["ranker"]["documents"]] == [
        (d.id, d.score) for d in direct
    ]
