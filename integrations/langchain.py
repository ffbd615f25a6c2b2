"""LangChain adapter: :class:`RerankitCompressor`, a ``BaseDocumentCompressor``.

>>> from rerankit.integrations.langchain import RerankitCompressor
>>> compressor = RerankitCompressor(model="BAAI/bge-reranker-v2-m3", top_n=3)  # doctest: +SKIP
>>> compressor.compress_documents(docs, "query")                               # doctest: +SKIP

Use it in ``ContextualCompressionRetriever(base_compressor=compressor, base_retriever=...)`` or
as an LCEL step. Scores land in ``metadata["relevance_score"]`` of new documents, and what they
are (``"logit"``, ``"probability"``, ``"rank"``, ...) in ``metadata["rerank_score_scale"]``.
With a listwise backend (``"rank"``) the score is rank-derived: ``len(documents)`` for the
first document down to 1, an order rather than a relevance.

Image documents: a document whose ``metadata["image"]`` (the key is ``image_key``) holds a file
path, an ``http(s)`` URL, base64, a data URI, bytes or a PIL image is ranked as that image, with
its ``page_content`` (a caption, OCR, may be ``""``) as its text. Only rerankers that take images
(``backend="vlm"``, the Jina API with jina-reranker-m0) rank them; the others raise
:class:`~rerankit.errors.InvalidInputError`. A URL is fetched only where the reranker allows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerankit.config import ADAPTER_SETTINGS, RerankerConfig, resolve_config
from rerankit.errors import MissingDependencyError
from rerankit.images import check_source
from rerankit.reranker import Reranker
from rerankit.secrets import Secret
from rerankit.types import SCORE_SCALE_KEY, RankResult
from rerankit.types import Document as RerankitDocument

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator
except ImportError as exc:
    raise MissingDependencyError(
        "langchain_core", "langchain", "rerankit.integrations.langchain"
    ) from exc


class RerankitCompressor(BaseDocumentCompressor):
    """Rerank LangChain documents with any rerankit backend.

    Give a ready ``reranker``, a ``config`` (``RerankerConfig`` or its dict), or the settings
    (``model``, ``backend``, ...). Returns new documents, best first, at most ``top_n``.
    ``image_key`` is the metadata key that holds a document's image (``None``: text only).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Reranker | None = Field(default=None, exclude=True)
    config: RerankerConfig | dict[str, Any] | None = None
    model: str | None = None
    backend: str | None = None
    device: str | None = None
    batch_size: int | None = None
    max_length: int | None = None
    normalize: bool | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    options: dict[str, Any] | None = None
    top_n: int = Field(default=3, gt=0)
    score_threshold: float | None = None
    image_key: str | None = "image"

    _reranker: Reranker = PrivateAttr()

    @model_validator(mode="after")
    def _build_reranker(self) -> RerankitCompressor:
        if self.reranker is not None:
            self._reranker = self.reranker
            return self
        api_key = None
        if self.api_key is not None:
            api_key = Secret.from_token(self.api_key.get_secret_value())
        elif self.api_key_env is not None:
            api_key = Secret.from_env(self.api_key_env)
        settings = {name: getattr(self, name) for name in ADAPTER_SETTINGS}
        config = resolve_config(self.config, api_key=api_key, **settings)
        self._reranker = Reranker.from_config(config)
        return self

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; new documents, best first."""
        inputs = _inputs(documents, self.image_key)
        result = self._reranker.rank(
            query, inputs, top_k=self.top_n, score_threshold=self.score_threshold
        )
        return _to_documents(documents, result)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`; does not block the event loop."""
        inputs = _inputs(documents, self.image_key)
        result = await self._reranker.arank(
            query, inputs, top_k=self.top_n, score_threshold=self.score_threshold
        )
        return _to_documents(documents, result)


def _inputs(documents: Sequence[Document], image_key: str | None) -> list[str | RerankitDocument]:
    """What rerankit ranks: each ``page_content``, as an image document where it has an image."""
    inputs: list[str | RerankitDocument] = []
    for position, doc in enumerate(documents):
        image = None if image_key is None else doc.metadata.get(image_key)
        if image is None:
            inputs.append(doc.page_content)
            continue
        check_source(image, f"documents[{position}].metadata[{image_key!r}] (id {doc.id!r})")
        inputs.append(RerankitDocument(text=doc.page_content, image=image))
    return inputs


def _to_documents(documents: Sequence[Document], result: RankResult) -> list[Document]:
    ranked = []
    for item in result:
        source = documents[item.index]
        metadata = {
            **source.metadata,
            "relevance_score": item.score,
            SCORE_SCALE_KEY: result.scale,
        }
        ranked.append(Document(page_content=source.page_content, metadata=metadata, id=source.id))
    return ranked
