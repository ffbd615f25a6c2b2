"""LlamaIndex adapter: :class:`RerankitPostprocessor`, a ``BaseNodePostprocessor``.

>>> from rerankit.integrations.llama_index import RerankitPostprocessor
>>> rerank = RerankitPostprocessor(model="BAAI/bge-reranker-v2-m3", top_n=3)   # doctest: +SKIP
>>> index.as_query_engine(node_postprocessors=[rerank])                       # doctest: +SKIP

Each node's ``score`` is on the scale named in its ``metadata["rerank_score_scale"]`` (kept out
of the LLM and embedding text). With a listwise backend (scale ``"rank"``) the score is
rank-derived: ``len(nodes)`` for the first node down to 1, an order rather than a relevance.

Image nodes are ranked as images: an ``ImageNode`` (its base64 ``image``, ``image_path`` or
``image_url``) and any node with an ``image_resource`` (an ``ImageDocument``: its ``data``,
``path`` or ``url``), with the node's text (a caption, OCR; ``""`` when none) beside the image.
Only rerankers that take images (``backend="vlm"``, the Jina API with jina-reranker-m0) rank
them; the others raise :class:`~rerankit.errors.InvalidInputError`. A URL is fetched only where
the reranker allows it. Image nodes come back as text nodes do: copies, their image unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerankit.config import ADAPTER_SETTINGS, RerankerConfig, resolve_config
from rerankit.errors import MissingDependencyError
from rerankit.images import ImageSource
from rerankit.integrations._images import check_image_mime, decode_base64
from rerankit.reranker import Reranker
from rerankit.secrets import Secret
from rerankit.types import SCORE_SCALE_KEY, RankResult
from rerankit.types import Document as RerankitDocument

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, SecretStr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.callbacks.base import EventContext as CBEvent
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import (
        BaseNode,
        ImageNode,
        MetadataMode,
        Node,
        NodeWithScore,
        QueryBundle,
    )
    from llama_index_instrumentation import get_dispatcher  # what llama_index.core re-exports
except ImportError as exc:
    raise MissingDependencyError(
        "llama_index.core", "llama-index", "rerankit.integrations.llama_index"
    ) from exc

dispatcher = get_dispatcher(__name__)


class RerankitPostprocessor(BaseNodePostprocessor):
    """Rerank LlamaIndex nodes with any rerankit backend.

    Give a ready ``reranker``, a ``config`` (``RerankerConfig`` or its dict), or the settings
    (``model``, ``backend``, ...). Returns new ``NodeWithScore`` objects, best first.
    """

    model: str | None = Field(default=None, description="Model name, hub id or folder.")
    backend: str | None = Field(default=None, description="Backend; inferred when None.")
    config: dict[str, Any] | None = Field(default=None, description="A RerankerConfig dict.")
    device: str | None = Field(default=None, description="Device; best available when None.")
    batch_size: int | None = Field(default=None, description="Pairs per batch.")
    max_length: int | None = Field(default=None, description="Tokens per pair.")
    normalize: bool | None = Field(
        default=None, description="Probabilities in [0, 1] instead of raw scores."
    )
    top_n: int = Field(default=2, gt=0, description="Number of nodes to return.")
    score_threshold: float | None = Field(default=None, description="Drop nodes below it.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retrieval score in metadata['retrieval_score']."
    )
    api_key: SecretStr | None = Field(default=None, exclude=True)
    options: dict[str, Any] | None = Field(default=None, description="Backend settings.")

    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        *,
        reranker: Reranker | None = None,
        config: RerankerConfig | dict[str, Any] | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        **data: Any,
    ) -> None:
        if isinstance(config, RerankerConfig):
            config = config.to_dict()
        data.update(config=config, api_key=api_key)
        super().__init__(**data)
        if reranker is None:
            secret = Secret.from_token(api_key) if api_key else None
            if api_key_env is not None:
                secret = Secret.from_env(api_key_env)
            settings = {name: getattr(self, name) for name in ADAPTER_SETTINGS}
            reranker = Reranker.from_config(resolve_config(config, api_key=secret, **settings))
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "RerankitPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, inputs = self._start(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            result = self._reranker.rank(
                query, inputs, top_k=self.top_n, score_threshold=self.score_threshold
            )
            return self._finish(nodes, result, event)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, inputs = self._start(nodes, query_bundle)
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query)
        ) as event:
            result = await self._reranker.arank(
                query, inputs, top_k=self.top_n, score_threshold=self.score_threshold
            )
            return self._finish(nodes, result, event)

    def _start(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str | RerankitDocument]]:
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle,
                nodes=nodes,
                top_n=self.top_n,
                model_name=self._reranker.config.model,
            )
        )
        return query_bundle.query_str, [_input(n.node, i) for i, n in enumerate(nodes)]

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self._reranker.config.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _finish(
        self, nodes: list[NodeWithScore], result: RankResult, event: CBEvent
    ) -> list[NodeWithScore]:
        ranked = self._to_nodes(nodes, result)
        event.on_end(payload={EventPayload.NODES: ranked})
        dispatcher.event(ReRankEndEvent(nodes=ranked))
        return ranked

    def _to_nodes(self, nodes: list[NodeWithScore], result: RankResult) -> list[NodeWithScore]:
        ranked = []
        for item in result:
            source = nodes[item.index]
            node = source.node
            metadata = {**node.metadata, SCORE_SCALE_KEY: result.scale}
            if self.keep_retrieval_score:
                metadata["retrieval_score"] = source.score
            # What the score is, for the caller; never text for the LLM or the embedder.
            node = node.model_copy(
                update={
                    "metadata": metadata,
                    "excluded_llm_metadata_keys": _hidden(node.excluded_llm_metadata_keys),
                    "excluded_embed_metadata_keys": _hidden(node.excluded_embed_metadata_keys),
                }
            )
            ranked.append(NodeWithScore(node=node, score=item.score))
        return ranked


def _input(node: BaseNode, position: int) -> str | RerankitDocument:
    """What rerankit ranks for ``node``: its embed text, as an image document if it has an image."""
    text = node.get_content(metadata_mode=MetadataMode.EMBED)
    image = _image(node, f"nodes[{position}] (id {node.node_id!r})")
    return text if image is None else RerankitDocument(text=text, image=image)


def _image(node: BaseNode, what: str) -> ImageSource | None:
    """``node``'s image as rerankit takes it, or ``None`` for a text node.

    The first one given, in LlamaIndex's own order: the data, then the file, then the URL.
    """
    if isinstance(node, ImageNode):
        path = Path(node.image_path) if node.image_path else None
        found: list[ImageSource | None] = [node.image or None, path, node.image_url or None]
        mimetype = node.image_mimetype
    elif isinstance(node, Node) and node.image_resource is not None:
        resource = node.image_resource
        data = decode_base64(resource.data, f"{what}'s image") if resource.data else None
        found = [data, resource.path, str(resource.url) if resource.url else None]
        mimetype = resource.mimetype
    else:
        return None
    image = next((source for source in found if source is not None), None)
    if image is not None:
        check_image_mime(mimetype, f"{what}'s image")
    return image


def _hidden(excluded: list[str]) -> list[str]:
    """``excluded`` metadata keys plus the score-scale key, once (nodes may be reranked twice)."""
    return excluded if SCORE_SCALE_KEY in excluded else [*excluded, SCORE_SCALE_KEY]
