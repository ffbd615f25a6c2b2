"""Haystack adapter: :class:`RerankitRanker`, a ranker ``@component``.

>>> from rerankit.integrations.haystack import RerankitRanker
>>> ranker = RerankitRanker(model="BAAI/bge-reranker-v2-m3", top_k=5)   # doctest: +SKIP
>>> ranker.run(query="query", documents=docs)["documents"]             # doctest: +SKIP

Each document's ``score`` is on the scale named in ``meta["rerank_score_scale"]``. With a
listwise backend (scale ``"rank"``) it is rank-derived: ``len(documents)`` for the first down
to 1, an order rather than a relevance.
Pipelines that use it load from YAML with the rerankit module allow-listed:
``Pipeline.loads(yaml_text, allowed_modules=["rerankit.*"])``.

Image documents are ranked as images, with their ``content`` (a caption, OCR; ``None`` is
``""``) beside the image. A document is an image document when its ``blob`` is an image (MIME
type ``image/...``, or none and image bytes), or when ``meta["file_path"]`` (the key is
``file_path_meta_field``) names an image file, as ``ImageFileToDocument`` writes it; relative
paths resolve under ``root_path`` when it is set, and may not leave it. A document whose
``content`` is ``None`` and whose blob or file is not an image raises
:class:`~rerankit.errors.InvalidInputError`, as do image documents given to a reranker that ranks
text only. Other documents (``PyPDFToDocument``'s, with ``file_path`` ``"x.pdf"``) are text.
"""

from __future__ import annotations

import dataclasses
import mimetypes
from pathlib import Path
from typing import Any

from rerankit.config import ADAPTER_SETTINGS, RerankerConfig, resolve_config
from rerankit.errors import InvalidInputError, MissingDependencyError
from rerankit.images import ImageSource
from rerankit.integrations._images import is_image_mime, looks_like_image
from rerankit.reranker import Reranker
from rerankit.secrets import Secret as RerankitSecret
from rerankit.types import SCORE_SCALE_KEY, RankResult
from rerankit.types import Document as RerankitDocument

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.utils.auth import Secret, SecretType, deserialize_secrets_inplace
except ImportError as exc:
    raise MissingDependencyError("haystack", "haystack", "rerankit.integrations.haystack") from exc


@component
class RerankitRanker:
    """Rank Haystack documents by relevance to a query with any rerankit backend.

    Give a ready ``reranker`` (not serialisable), a ``config`` (``RerankerConfig`` or its dict),
    or the settings (``model``, ``backend``, ...). Every parameter round-trips through
    ``to_dict`` / ``from_dict``; ``api_key`` is a Haystack ``Secret``.

    ``file_path_meta_field`` is the metadata key that names a document's image file (``None``:
    never read images from files; blobs still count), and ``root_path`` the folder that
    relative file paths resolve under, as in Haystack's ``DocumentToImageContent``. Set
    ``root_path`` when metadata may come from untrusted input: paths that leave it are refused.
    Documents whose ``content`` was extracted from an image file (``LLMDocumentContentExtractor``
    keeps its ``file_path``) are image documents too; to rank them by that text with a text-only
    reranker, pass ``file_path_meta_field=None``.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        backend: str | None = None,
        config: RerankerConfig | dict[str, Any] | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        api_key: Secret | None = None,
        options: dict[str, Any] | None = None,
        file_path_meta_field: str | None = "file_path",
        root_path: str | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be > 0, but got {top_k}")
        self.model = model
        self.backend = backend
        self.config = config.to_dict() if isinstance(config, RerankerConfig) else config
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.normalize = normalize
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.api_key = api_key
        self.options = options
        self.file_path_meta_field = file_path_meta_field
        self.root_path = root_path
        self._reranker = reranker
        # Fail on a bad configuration now, not at warm-up.
        self._config = reranker.config if reranker is not None else self._resolve_config()

    def warm_up(self) -> None:
        """Load the model; calling it again does nothing."""
        if self._reranker is None:
            self._reranker = Reranker.from_config(self._config)

    def close(self) -> None:
        """Release the backend; a later ``run`` loads it again."""
        if self._reranker is not None:
            self._reranker.close()
            self._reranker = None

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Return ``documents`` sorted by relevance, with ``score`` set, at most ``top_k``."""
        reranker, inputs, top_k, score_threshold = self._prepare(documents, top_k, score_threshold)
        result = reranker.rank(query, inputs, top_k=top_k, score_threshold=score_threshold)
        return {"documents": _to_documents(documents, result)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`; does not block the event loop."""
        reranker, inputs, top_k, score_threshold = self._prepare(documents, top_k, score_threshold)
        result = await reranker.arank(query, inputs, top_k=top_k, score_threshold=score_threshold)
        return {"documents": _to_documents(documents, result)}

    def to_dict(self) -> dict[str, Any]:
        """Serialise every parameter; a token ``api_key`` refuses, an env-var one serialises."""
        return default_to_dict(
            self,
            model=self.model,
            backend=self.backend,
            config=self.config,
            device=self.device,
            batch_size=self.batch_size,
            max_length=self.max_length,
            normalize=self.normalize,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            api_key=self.api_key.to_dict() if self.api_key is not None else None,
            options=self.options,
            file_path_meta_field=self.file_path_meta_field,
            root_path=self.root_path,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankitRanker:
        """Inverse of :meth:`to_dict`; ``data`` itself is left unchanged."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    def _prepare(
        self, documents: list[Document], top_k: int | None, score_threshold: float | None
    ) -> tuple[Reranker, list[str | RerankitDocument], int | None, float | None]:
        top_k = self.top_k if top_k is None else top_k
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be > 0, but got {top_k}")
        inputs = [self._input(doc, position) for position, doc in enumerate(documents)]
        self.warm_up()
        assert self._reranker is not None
        threshold = self.score_threshold if score_threshold is None else score_threshold
        return self._reranker, inputs, top_k, threshold

    def _input(self, doc: Document, position: int) -> str | RerankitDocument:
        """What rerankit ranks for ``doc``: its content, as an image document if it has an image."""
        text = doc.content or ""
        image = self._image(doc, f"documents[{position}] (id {doc.id!r})")
        return text if image is None else RerankitDocument(text=text, image=image)

    def _image(self, doc: Document, what: str) -> ImageSource | None:
        """``doc``'s image: its blob's bytes or its image file, else ``None`` (a text document)."""
        if doc.blob is not None:
            mime = doc.blob.mime_type
            if is_image_mime(mime) or (not mime and looks_like_image(doc.blob.data)):
                return doc.blob.data
            if doc.content is None:
                kind = f"MIME type {mime!r}" if mime else "no MIME type and no image data"
                raise InvalidInputError(
                    f"{what} has no content and its blob ({kind}) is not an image; rerankit "
                    "ranks image and text documents, so convert it to either first"
                )
        field = self.file_path_meta_field
        file_path = None if field is None else doc.meta.get(field)
        if file_path is None or file_path == "":
            return None
        path = Path(self.root_path or "", str(file_path))
        mime = doc.meta.get("mime_type") or mimetypes.guess_type(path.name)[0]
        if is_image_mime(mime) or (mime is None and doc.content is None):
            return self._contained(path, what)
        if doc.content is None:
            raise InvalidInputError(
                f"{what} has no content and its file {str(file_path)!r} (meta[{field!r}]) is "
                f"{mime!r}, not an image; rerankit ranks image and text documents, so convert "
                "it to either first (PDF pages to images, for instance)"
            )
        return None

    def _contained(self, path: Path, what: str) -> Path:
        """``path``, checked to stay inside ``root_path`` when that is set."""
        if self.root_path:
            root = Path(self.root_path).resolve()
            if not path.resolve().is_relative_to(root):
                raise InvalidInputError(
                    f"{what} names the image file {str(path)!r}, outside root_path "
                    f"{self.root_path!r}; file paths in metadata must stay inside it"
                )
        return path

    def _resolve_config(self) -> RerankerConfig:
        settings = {name: getattr(self, name) for name in ADAPTER_SETTINGS}
        return resolve_config(self.config, api_key=_rerankit_secret(self.api_key), **settings)


def _rerankit_secret(secret: Secret | None) -> RerankitSecret | None:
    if secret is None:
        return None
    if secret.type == SecretType.ENV_VAR:
        return RerankitSecret.from_env(secret.to_dict()["env_vars"][0])
    value = secret.resolve_value()
    return RerankitSecret.from_token(value) if value else None


def _to_documents(documents: list[Document], result: RankResult) -> list[Document]:
    return [
        dataclasses.replace(
            documents[item.index],
            score=float(item.score),
            meta={**documents[item.index].meta, SCORE_SCALE_KEY: result.scale},
        )
        for item in result
    ]
