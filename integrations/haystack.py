"""Haystack adapter: :class:`RerankitRanker`, a ranker ``@component``.

>>> from rerankit.integrations.haystack import RerankitRanker
>>> ranker = RerankitRanker(model="BAAI/bge-reranker-v2-m3", top_k=5)   # doctest: +SKIP
>>> ranker.run(query="query", documents=docs)["documents"]             # doctest: +SKIP

Each document's ``score`` is on the scale named in ``meta["rerank_score_scale"]``. With a
listwise backend (scale ``"rank"``) it is rank-derived: ``len(documents)`` for the first down
to 1, an order rather than a relevance.
Pipelines that use it load from YAML with the rerankit module allow-listed:
``Pipeline.loads(yaml_text, allowed_modules=["rerankit.*"])``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rerankit.config import ADAPTER_SETTINGS, RerankerConfig, resolve_config
from rerankit.errors import MissingDependencyError
from rerankit.reranker import Reranker
from rerankit.secrets import Secret as RerankitSecret
from rerankit.types import SCORE_SCALE_KEY, RankResult

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
        reranker, texts, top_k, score_threshold = self._prepare(documents, top_k, score_threshold)
        result = reranker.rank(query, texts, top_k=top_k, score_threshold=score_threshold)
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
        reranker, texts, top_k, score_threshold = self._prepare(documents, top_k, score_threshold)
        result = await reranker.arank(query, texts, top_k=top_k, score_threshold=score_threshold)
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
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankitRanker:
        """Inverse of :meth:`to_dict`; ``data`` itself is left unchanged."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    def _prepare(
        self, documents: list[Document], top_k: int | None, score_threshold: float | None
    ) -> tuple[Reranker, list[str], int | None, float | None]:
        top_k = self.top_k if top_k is None else top_k
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be > 0, but got {top_k}")
        self.warm_up()
        assert self._reranker is not None
        texts = [doc.content or "" for doc in documents]
        threshold = self.score_threshold if score_threshold is None else score_threshold
        return self._reranker, texts, top_k, threshold

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
